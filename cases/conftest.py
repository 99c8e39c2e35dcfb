"""Conformance cases. The vnetct plugin (harness/python/vnetct/plugin.py) is
loaded by `vnetct run` with -p vnetct.plugin; it gives the fixtures used here
(case, run_context, session_factory, vm_factory)."""
