"""The live-TAP series driver (vnetct.livetap.series) without a QEMU that has
the series: the probe on QMP schemas shaped as each revision's (the real
query-qmp-schema of QEMU 10.0.2, harness/test/data, with the members each
revision adds), and the command lines it builds for the source and the
target of each."""

import copy
import json
from pathlib import Path

import pytest

from vnetct.livetap import series as livetap_series
from vnetct.vm.guest import Accelerator, Nic, VmSpec, build_argv

IMAGE = {"kernel": "/k/vmlinuz", "initramfs": "/k/initramfs"}
QEMU_10 = json.loads((Path(__file__).parent / "data" / "qemu-10.0.2-livetap-schema.json").read_text())


class _Qmp:
    def __init__(self, schema, properties):
        self.schema, self.properties = schema, properties

    def execute(self, command, arguments=None):
        if command == "query-qmp-schema":
            return self.schema
        assert (command, arguments) == ("device-list-properties", {"typename": "virtio-net-pci"})
        return self.properties


class _Vm:
    def __init__(self, schema, properties):
        self.qmp = _Qmp(schema, properties)


def _arguments_of(schema, command):
    """The (masked) object type of a command's arguments."""
    by_name = {entity["name"]: entity for entity in schema}
    return by_name[by_name[command]["arg-type"]], by_name


def qemu(parameters=None, tap=None, device=(), schema=None):
    """QEMU 10.0.2's answers plus the members a revision adds: migration
    parameters {name: type}, TAP netdev options {name: type}, virtio-net
    properties."""
    schema = copy.deepcopy(schema if schema is not None else QEMU_10["query-qmp-schema"])
    if parameters:
        arguments, _ = _arguments_of(schema, "migrate-set-parameters")
        arguments["members"] += [{"name": n, "default": None, "type": t} for n, t in parameters.items()]
    if tap:
        netdev, by_name = _arguments_of(schema, "netdev_add")
        branch = next(v["type"] for v in netdev["variants"] if v["case"] == "tap")
        by_name[branch]["members"] += [{"name": n, "default": None, "type": t} for n, t in tap.items()]
    properties = QEMU_10["device-list-properties virtio-net-pci"] + [{"name": n, "type": "bool"} for n in device]
    return _Vm(schema, properties)


REVISIONS = {
    "v6-list": qemu({"backend-transfer": "[str]"}),
    "v10": qemu({"backend-transfer": "bool"}, {"incoming-fds": "bool"}, ["backend-transfer"]),
    "v16": qemu({"local": "bool"}, {"incoming-fds": "bool"}),
    "device-local-migration": qemu({"local": "bool"}, {"incoming-fds": "bool"}, ["local_migration"]),
    "v17": qemu({"local": "bool"}, {"local-migration-supported": "bool"}),
    "queued": qemu({"local": "bool"}, {"x-local-migration-supported": "bool"}),
    "queued-with-incoming-fds": qemu({"local": "bool"}, {"x-local-migration-supported": "bool",
                                                         "incoming-fds": "bool"}),
}
Interface = livetap_series.Interface


def interface_of(vm):
    return Interface.of(livetap_series.probe(vm))


def test_qemu_10_lacks_the_series_and_the_reason_names_every_needed_part():
    found = livetap_series.probe(qemu())
    assert not found["supported"] and Interface.of(found) is None and found["schema_problems"] == []
    assert livetap_series.missing(found) == (
        "this QEMU lacks the live-TAP series: it has no boolean migration parameter (migration parameter local or "
        "migration parameter backend-transfer) and no way for a target TAP to wait for the source's fds (tap option "
        "incoming-fds or netdev property x-local-migration-supported or netdev property "
        "local-migration-supported) (query-qmp-schema, device-list-properties virtio-net-pci)")


@pytest.mark.parametrize("revision,expected", [
    ("v10", Interface("backend-transfer", True, None, "backend-transfer")),
    ("v16", Interface("local", True)),
    ("device-local-migration", Interface("local", True, None, "local_migration")),
    ("v17", Interface("local", False, "local-migration-supported")),
    ("queued", Interface("local", False, "x-local-migration-supported")),
    ("queued-with-incoming-fds", Interface("local", True, "x-local-migration-supported")),
])
def test_revisions_are_told_apart(revision, expected):
    found = livetap_series.probe(REVISIONS[revision])
    assert Interface.of(found) == expected
    assert found["supported"] and found["revision"] == expected.revision


def test_a_list_valued_parameter_is_not_the_boolean_the_driver_sets():
    found = livetap_series.probe(REVISIONS["v6-list"])
    assert Interface.of(found) is None
    assert "migration parameter backend-transfer is of type [str], not the boolean" in livetap_series.missing(found)


@pytest.mark.parametrize("vm,has,lacks", [
    (qemu({"local": "bool"}), "migration parameter local", "way for a target TAP to wait for the source's fds"),
    (qemu(tap={"x-local-migration-supported": "bool"}), "netdev property x-local-migration-supported",
     "boolean migration parameter"),
])
def test_a_partial_series_says_what_it_has_and_what_is_missing(vm, has, lacks):
    found = livetap_series.probe(vm)
    assert not found["supported"]
    reason = livetap_series.missing(found)
    assert reason.startswith(f"this QEMU has part of the live-TAP series ({has}) but no {lacks} (")


def test_a_schema_without_the_commands_names_them():
    schema = [e for e in QEMU_10["query-qmp-schema"] if e["name"] not in ("netdev_add", "migrate-set-parameters")]
    found = livetap_series.probe(qemu(schema=schema))
    reason = livetap_series.missing(found)
    assert "query-qmp-schema has no command netdev_add with its arguments" in reason
    assert "query-qmp-schema has no command migrate-set-parameters with its arguments" in reason


def _argv(spec, incoming):
    return build_argv(spec, "/usr/bin/qemu-system-x86_64", Accelerator("tcg", "test", "max"), IMAGE, Path("/tmp/s"),
                      Path("/tmp/a"), ["vt0"], incoming=incoming)


def _options(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def _virtio_device(argv):
    return next(d for d in _options(argv, "-device") if d.startswith("virtio-net-pci")).split(",")


BASE = VmSpec("lt", nics=[Nic("virtio-net-pci", "52:54:00:00:00:01", id="net0")])
SOURCE_TAP = "tap,id=hn0,ifname=vt0,script=no,downscript=no,vnet_hdr=on"


@pytest.mark.parametrize("revision,source_netdev,target_netdev,device_switch,parameter", [
    ("v10", SOURCE_TAP, "tap,id=hn0,incoming-fds=on", "backend-transfer=on", "backend-transfer"),
    ("v16", SOURCE_TAP, "tap,id=hn0,incoming-fds=on", None, "local"),
    ("device-local-migration", SOURCE_TAP, "tap,id=hn0,incoming-fds=on", "local_migration=on", "local"),
    ("v17", SOURCE_TAP + ",local-migration-supported=on",
     "tap,id=hn0,script=no,downscript=no,local-migration-supported=on", None, "local"),
    ("queued", SOURCE_TAP + ",x-local-migration-supported=on",
     "tap,id=hn0,script=no,downscript=no,x-local-migration-supported=on", None, "local"),
    ("queued-with-incoming-fds", SOURCE_TAP + ",x-local-migration-supported=on",
     "tap,id=hn0,incoming-fds=on,x-local-migration-supported=on", None, "local"),
])
def test_the_driver_builds_each_revisions_source_and_target(revision, source_netdev, target_netdev, device_switch,
                                                             parameter):
    interface = interface_of(REVISIONS[revision])
    source = _argv(interface.source_spec(BASE), None)
    target_spec = interface.target_spec(BASE)
    target = _argv(target_spec, "defer")
    assert _options(source, "-netdev") == [source_netdev]
    assert _options(target, "-netdev") == [target_netdev]  # LT-CFG-02: no ifname, fd or vnet_hdr
    for argv in (source, target):
        switches = [p for p in _virtio_device(argv) if p.split("=")[0] in livetap_series.DEVICE_PROPERTIES]
        assert switches == ([device_switch] if device_switch else [])
    assert target_spec.incoming_parameters == {parameter: True}
    assert interface.parameters(False) == {parameter: False}
    assert interface.target_spec(BASE, parameter=False).incoming_parameters == {parameter: False}


def test_the_switch_off_on_purpose_is_off_on_the_netdev_or_the_device():
    queued = interface_of(REVISIONS["queued"])
    assert _options(_argv(queued.source_spec(BASE, device_switch=False), None), "-netdev") == \
        [SOURCE_TAP + ",x-local-migration-supported=off"]
    v10 = interface_of(REVISIONS["v10"])
    assert "backend-transfer=off" in _virtio_device(_argv(v10.target_spec(BASE, device_switch=False), "defer"))


@pytest.mark.parametrize("revision,arguments", [
    ("v16", {"type": "tap", "id": "in0", "incoming-fds": True}),
    ("queued", {"type": "tap", "id": "in0", "script": "no", "downscript": "no", "x-local-migration-supported": True}),
    ("queued-with-incoming-fds", {"type": "tap", "id": "in0", "incoming-fds": True,
                                  "x-local-migration-supported": True}),
])
def test_netdev_add_of_a_waiting_tap(revision, arguments):
    assert interface_of(REVISIONS[revision]).netdev_add_arguments("in0") == arguments


def test_incoming_fds_only_applies_to_an_incoming_target():
    spec = VmSpec("lt", nics=[Nic("virtio-net-pci", "52:54:00:00:00:01", incoming_fds={"incoming-fds": "on"})])
    assert _options(_argv(spec, None), "-netdev") == [SOURCE_TAP]


@pytest.mark.parametrize("revision,series_reason,incoming_fds_reason", [
    (None, "this QEMU lacks the live-TAP series: it has no boolean", "this QEMU lacks the live-TAP series: it has no"),
    ("queued", None, "this QEMU's live-TAP series has no TAP netdev option incoming-fds (migration parameter local, "
                     "netdev property x-local-migration-supported, "),
    ("queued-with-incoming-fds", None, None),
    ("v16", None, None),
])
def test_the_qemu_sut_skips_with_the_probes_reason(revision, series_reason, incoming_fds_reason):
    from vnetct.sut.qemu import QemuSut

    sut = QemuSut.__new__(QemuSut)  # its probe as if this QEMU had answered (no QEMU started)
    sut._live_tap = livetap_series.probe(REVISIONS[revision] if revision else qemu())
    for capability, reason in (("live-tap-series", series_reason), ("live-tap-incoming-fds", incoming_fds_reason)):
        found = sut.lacks(capability)
        assert (found is None) if reason is None else found.startswith(reason), (capability, found)
