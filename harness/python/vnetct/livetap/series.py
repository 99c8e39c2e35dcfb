"""The QEMU live-TAP series ("virtio-net: live-TAP local migration", posted
to qemu-devel from 2025 on; not in QEMU 10.0): how to find it in a QEMU and
how to drive it.

Its interface moved between revisions, so the probe reads what this QEMU
really has and the driver uses that:
- the migration parameter that switches backend transfer on: `local` (v12
  and later, a boolean) or `backend-transfer` (v8..v11; v6/v7 took a list of
  device kinds, which the probe does not accept as the boolean it drives);
- `incoming-fds` on the TAP netdev: the target skips every open() and waits
  for the fds that come with the migration stream, so the target's netdev
  names no ifname, fd or vnet_hdr (LT-CFG-02);
- a virtio-net property `backend-transfer` (v8..v11: the per-device switch of
  LT-CFG-01), set where it exists.
Both QEMUs get the parameter (the series' tests set it on both sides), and
the channel must be a unix socket (LT-CFG-04): the harness's migration URI
is one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional

from vnetct.vm.guest import VmSpec

DEVICE_PROPERTY = "backend-transfer"


def probe(vm) -> Dict[str, bool]:
    """What the QEMU behind `vm` offers of the series, from its QMP schema
    and virtio-net's properties."""
    schema = vm.qmp.execute("query-qmp-schema")
    by_name = {entity["name"]: entity for entity in schema}
    command = next((e for e in schema if e.get("meta-type") == "command" and e["name"] == "migrate-set-parameters"),
                   None)
    parameters = {}
    if command is not None:
        parameters = {m.get("name"): m.get("type") for m in by_name.get(command["arg-type"], {}).get("members", [])}
    members = {m.get("name") for e in schema for m in e.get("members", []) or []}
    properties = {p["name"] for p in vm.qmp.execute("device-list-properties", {"typename": "virtio-net-pci"})}
    found = {"migration parameter backend-transfer": parameters.get("backend-transfer") == "bool",
             "migration parameter local": parameters.get("local") == "bool",
             "tap option incoming-fds": "incoming-fds" in members,
             "virtio-net property backend-transfer": DEVICE_PROPERTY in properties}
    found["supported"] = ((found["migration parameter backend-transfer"] or found["migration parameter local"])
                          and found["tap option incoming-fds"])
    return found


def missing(found: Dict[str, bool]) -> str:
    """The skip reason of a QEMU without the series."""
    absent = ", ".join(name for name, present in found.items() if name != "supported" and not present)
    return (f"this QEMU lacks the live-TAP series: no {absent} (query-qmp-schema, device-list-properties "
            f"virtio-net-pci)")


@dataclass(frozen=True)
class Interface:
    parameter: str         # the migration parameter's name
    device_property: bool  # virtio-net has the per-device switch

    @staticmethod
    def of(found: Dict[str, bool]) -> Optional["Interface"]:
        if not found.get("supported"):
            return None
        parameter = "local" if found["migration parameter local"] else "backend-transfer"
        return Interface(parameter, found["virtio-net property backend-transfer"])

    def parameters(self, on: bool = True) -> Dict[str, bool]:
        return {self.parameter: on}

    def source_spec(self, spec: VmSpec, device_switch: bool = True) -> VmSpec:
        """`spec` with the per-device switch on every virtio-net NIC (where the
        QEMU has one; `device_switch` False leaves it off on purpose)."""
        if not self.device_property:
            return spec
        value = "on" if device_switch else "off"
        return dataclasses.replace(spec, nics=[
            dataclasses.replace(nic, properties={**nic.properties, DEVICE_PROPERTY: value})
            if nic.driver.startswith("virtio-net") else nic for nic in spec.nics])

    def target_spec(self, spec: VmSpec, device_switch: bool = True, parameter: bool = True) -> VmSpec:
        """The target of a source built from `spec`: its TAPs wait for the
        incoming fds, and it sets the parameter before it listens."""
        spec = self.source_spec(spec, device_switch)
        return dataclasses.replace(
            spec, nics=[dataclasses.replace(nic, incoming_fds=nic.tap) for nic in spec.nics],
            incoming_parameters={**spec.incoming_parameters, **self.parameters(parameter)})
