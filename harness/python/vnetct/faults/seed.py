"""Seeds a fault into one QEMU VM before it starts: its argv rewritten, its
QMP socket behind an interposer, its stderr through a filter."""

from __future__ import annotations

from typing import List

from vnetct.core.native import vnetct_native
from vnetct.faults.catalog import Fault


def _filtered_stderr(argv: List[str], phrases: List[str]) -> List[str]:
    """QEMU run by bash with its stderr through grep -v (the lines with the
    phrases never reach the stderr file); exec keeps QEMU's pid."""
    patterns = [arg for phrase in phrases for arg in ("-e", phrase)]
    script = 'exec "$0" "$@" 2> >(exec grep --line-buffered -v -F ' + " ".join(
        f"'{p}'" for p in patterns) + " >&2)"
    return ["/bin/bash", "-c", script, *argv]


def seed(vm, fault: Fault) -> None:
    """Applies `fault` to `vm` (not started yet). Its QMP interposer stops
    with the VM (vm.closers)."""
    if fault.argv is not None:
        vm.argv = fault.argv(vm.argv)
    plan = fault.target_plan if vm.incoming else fault.source_plan
    if plan is not None:
        listen = vm.sockets / "qmp.sock"
        upstream = vm.sockets / "qmp-qemu.sock"
        vm.argv = [word.replace(f"path={listen},", f"path={upstream},") for word in vm.argv]
        # host_agent's QmpInterposer (C++): serves `listen`, relays to QEMU's socket under the plan.
        interposer = vnetct_native.QmpInterposer.start(str(listen), str(upstream), plan,
                                                       str(vm.artifacts / f"fault-{vm.name}.jsonl"))
        vm.closers.append(interposer.stop)
    if fault.stderr_drop:
        vm.argv = _filtered_stderr(vm.argv, fault.stderr_drop)
    (vm.artifacts / f"fault-{vm.name}.txt").write_text(f"{fault.name} ({fault.mechanism}): {fault.bug}\n")
