"""The QEMU live-TAP series ("virtio-net: live-TAP local migration", posted
to qemu-devel from 2025 on; queued for QEMU 11.2, in no Debian QEMU): how to
find it in a QEMU and how to drive it.

Its interface moved between revisions, so the probe reads what this QEMU
really has (query-qmp-schema, device-list-properties) and the driver uses
that:
- the migration parameter that switches backend transfer on, on both sides:
  `local` (v12 and later, a boolean) or `backend-transfer` (v8..v11; v6/v7
  took a list of device kinds, which the probe does not accept as the
  boolean it drives);
- the per-backend switch. Up to v16 a virtio-net property (`backend-transfer`
  in v8..v11, `local_migration` in a later one), set where it exists; from
  v17 on a property of the TAP netdev, `local-migration-supported`, then
  `x-local-migration-supported` (the queued interface), on the source's and
  the target's netdev;
- the target's TAP waits for the fds that come with the migration stream and
  opens nothing itself, so its netdev names no ifname, fd or vnet_hdr
  (LT-CFG-02): `incoming-fds=on` where the TAP netdev has that option; with
  the netdev property alone (upstream's functional test
  tests/functional/x86_64/test_tap_migration.py in its last revision), the
  property, script=no and downscript=no.
The channel must be a unix socket (LT-CFG-04): the harness's migration URI
is one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

from vnetct.vm.guest import VmSpec

# Newest name first: where a QEMU had both, the newer one is driven.
MIGRATION_PARAMETERS = ("local", "backend-transfer")
NETDEV_PROPERTIES = ("x-local-migration-supported", "local-migration-supported")
DEVICE_PROPERTIES = ("backend-transfer", "local_migration")
INCOMING_FDS = "incoming-fds"
SOURCES = "query-qmp-schema, device-list-properties virtio-net-pci"


def _tap_options(by_name: Dict[str, dict], problems: List[str]) -> Dict[str, str]:
    """{option: type} of netdev_add's `tap` branch, with the members every
    netdev shares (a netdev property may live there)."""
    command = by_name.get("netdev_add")
    netdev = by_name.get(command.get("arg-type", "")) if command else None
    if netdev is None:
        problems.append("query-qmp-schema has no command netdev_add with its arguments")
        return {}
    branch = next((v["type"] for v in netdev.get("variants", []) if v.get("case") == "tap"), None)
    if branch not in by_name:
        problems.append("netdev_add has no 'tap' branch in query-qmp-schema")
        return {}
    return {m["name"]: m.get("type") for m in [*netdev.get("members", []), *by_name[branch].get("members", [])]}


def _migration_parameters(by_name: Dict[str, dict], problems: List[str]) -> Dict[str, str]:
    command = by_name.get("migrate-set-parameters")
    arguments = by_name.get(command.get("arg-type", "")) if command else None
    if arguments is None:
        problems.append("query-qmp-schema has no command migrate-set-parameters with its arguments")
        return {}
    return {m["name"]: m.get("type") for m in arguments.get("members", [])}


def read(schema: List[dict], device_properties: List[dict]) -> dict:
    """What a QEMU offers of the series, from its query-qmp-schema answer and
    device-list-properties of virtio-net-pci: {"offers": {part: present},
    "schema_problems": [...], "revision": ..., "supported": ...}."""
    by_name = {entity.get("name"): entity for entity in schema}
    problems: List[str] = []
    parameters = _migration_parameters(by_name, problems)
    tap = _tap_options(by_name, problems)
    properties = {p.get("name") for p in device_properties}
    offers = {f"migration parameter {name}": parameters.get(name) == "bool" for name in MIGRATION_PARAMETERS}
    offers[f"tap option {INCOMING_FDS}"] = INCOMING_FDS in tap
    offers.update({f"netdev property {name}": tap.get(name) == "bool" for name in NETDEV_PROPERTIES})
    offers.update({f"virtio-net property {name}": name in properties for name in DEVICE_PROPERTIES})
    for name in MIGRATION_PARAMETERS:
        if name in parameters and parameters[name] != "bool":
            problems.append(f"migration parameter {name} is of type {parameters[name]}, not the boolean the "
                            f"driver sets")
    found = {"offers": offers, "schema_problems": problems}
    interface = Interface.of(found)
    found["revision"] = interface.revision if interface else None
    found["supported"] = interface is not None
    return found


def probe(vm) -> dict:
    """What the QEMU behind `vm` offers of the series (see read())."""
    return read(vm.qmp.execute("query-qmp-schema"),
                vm.qmp.execute("device-list-properties", {"typename": "virtio-net-pci"}))


def missing(found: dict) -> str:
    """The skip reason of a QEMU without (all of) the series: which of the
    parts the driver needs are absent, and what it has."""
    offers = found["offers"]
    needed = {"boolean migration parameter": [f"migration parameter {n}" for n in MIGRATION_PARAMETERS],
              "way for a target TAP to wait for the source's fds": [
                  f"tap option {INCOMING_FDS}", *(f"netdev property {n}" for n in NETDEV_PROPERTIES)]}
    absent = " and no ".join(f"{what} ({' or '.join(parts)})" for what, parts in needed.items()
                             if not any(offers[part] for part in parts))
    present = [part for part, there in offers.items() if there]
    reason = (f"this QEMU lacks the live-TAP series: it has no {absent}" if not present else
              f"this QEMU has part of the live-TAP series ({', '.join(present)}) but no {absent}")
    problems = "; ".join(found.get("schema_problems", []))
    return f"{reason}{' [' + problems + ']' if problems else ''} ({SOURCES})"


@dataclass(frozen=True)
class Interface:
    parameter: str                         # the migration parameter's name
    incoming_fds: bool                     # the TAP netdev has incoming-fds
    netdev_property: Optional[str] = None  # the TAP netdev's switch (v17 on)
    device_property: Optional[str] = None  # virtio-net's switch (up to v16)

    @staticmethod
    def of(found: dict) -> Optional["Interface"]:
        offers = found["offers"]
        parameter = next((n for n in MIGRATION_PARAMETERS if offers[f"migration parameter {n}"]), None)
        netdev_property = next((n for n in NETDEV_PROPERTIES if offers[f"netdev property {n}"]), None)
        incoming_fds = offers[f"tap option {INCOMING_FDS}"]
        if parameter is None or not (incoming_fds or netdev_property):
            return None
        device_property = next((n for n in DEVICE_PROPERTIES if offers[f"virtio-net property {n}"]), None)
        return Interface(parameter, incoming_fds, netdev_property, device_property)

    @property
    def revision(self) -> str:
        """The interface in a few words, for the case's steps and the probe record."""
        switch = (f"netdev property {self.netdev_property}" if self.netdev_property else
                  f"virtio-net property {self.device_property}" if self.device_property else "no per-device switch")
        waiting = f"tap {INCOMING_FDS}" if self.incoming_fds else "a target TAP without ifname or vnet_hdr"
        return f"migration parameter {self.parameter}, {switch}, {waiting}"

    def parameters(self, on: bool = True) -> Dict[str, bool]:
        return {self.parameter: on}

    def target_tap_options(self) -> Dict[str, str]:
        """The options of a target TAP that waits for the source's fds, with
        nothing that opens or sets up a TAP (LT-CFG-02)."""
        if self.incoming_fds:
            return {INCOMING_FDS: "on"}
        return {"script": "no", "downscript": "no"}

    def netdev_add_arguments(self, netdev_id: str) -> dict:
        """netdev_add's arguments for such a TAP (QMP's own types)."""
        values = {"on": True, "off": False}
        options = {**self.target_tap_options(), **self._netdev_switch(True)}
        return {"type": "tap", "id": netdev_id, **{k: values.get(v, v) for k, v in options.items()}}

    def _netdev_switch(self, on: bool) -> Dict[str, str]:
        return {self.netdev_property: "on" if on else "off"} if self.netdev_property else {}

    def source_spec(self, spec: VmSpec, device_switch: bool = True) -> VmSpec:
        """`spec` with the per-device switch on every virtio-net NIC (on its
        device or on its TAP netdev, wherever this revision has it;
        `device_switch` False sets it off on purpose)."""
        value = "on" if device_switch else "off"

        def switched(nic):
            if not nic.driver.startswith("virtio-net"):
                return nic
            properties = {**nic.properties, self.device_property: value} if self.device_property else nic.properties
            return dataclasses.replace(nic, properties=properties,
                                       netdev_properties={**nic.netdev_properties, **self._netdev_switch(device_switch)})

        return dataclasses.replace(spec, nics=[switched(nic) for nic in spec.nics])

    def target_spec(self, spec: VmSpec, device_switch: bool = True, parameter: bool = True) -> VmSpec:
        """The target of a source built from `spec`: its TAPs wait for the
        incoming fds, and it sets the parameter before it listens."""
        spec = self.source_spec(spec, device_switch)
        waiting = self.target_tap_options()
        return dataclasses.replace(
            spec, nics=[dataclasses.replace(nic, incoming_fds=waiting if nic.tap else None) for nic in spec.nics],
            incoming_parameters={**spec.incoming_parameters, **self.parameters(parameter)})
