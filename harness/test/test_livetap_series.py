"""The live-TAP series driver (vnetct.livetap.series) without a QEMU that has
the series: the probe on QMP schemas shaped as each revision's, and the
command lines it builds for the source and the target."""

from pathlib import Path

from vnetct.livetap import series as livetap_series
from vnetct.vm.guest import Accelerator, Nic, VmSpec, build_argv

IMAGE = {"kernel": "/k/vmlinuz", "initramfs": "/k/initramfs"}


class _Qmp:
    def __init__(self, parameters, tap_members, properties):
        self.schema = [
            {"name": "migrate-set-parameters", "meta-type": "command", "arg-type": "MigrateSetParameters"},
            {"name": "MigrateSetParameters", "meta-type": "object",
             "members": [{"name": "downtime-limit", "type": "int"}, *parameters]},
            {"name": "NetdevTapOptions", "meta-type": "object",
             "members": [{"name": "ifname", "type": "str"}, *tap_members]}]
        self.properties = [{"name": "mac"}, *properties]

    def execute(self, command, arguments=None):
        return self.schema if command == "query-qmp-schema" else self.properties


class _Vm:
    def __init__(self, *args):
        self.qmp = _Qmp(*args)


QEMU_10 = _Vm([], [], [])
V16 = _Vm([{"name": "local", "type": "bool"}], [{"name": "incoming-fds", "type": "bool"}], [])
V10 = _Vm([{"name": "backend-transfer", "type": "bool"}], [{"name": "incoming-fds", "type": "bool"}],
          [{"name": "backend-transfer"}])
V6_LIST = _Vm([{"name": "backend-transfer", "type": "[str]"}], [], [])


def test_qemu_10_lacks_the_series_and_the_reason_names_every_part():
    found = livetap_series.probe(QEMU_10)
    assert not found["supported"] and livetap_series.Interface.of(found) is None
    reason = livetap_series.missing(found)
    for part in ("migration parameter backend-transfer", "migration parameter local", "tap option incoming-fds",
                 "virtio-net property backend-transfer"):
        assert part in reason


def test_revisions_are_told_apart():
    assert livetap_series.Interface.of(livetap_series.probe(V16)) == livetap_series.Interface("local", False)
    assert livetap_series.Interface.of(livetap_series.probe(V10)) == livetap_series.Interface("backend-transfer", True)
    # A list-valued parameter (v6/v7) is not the boolean the driver sets.
    assert livetap_series.Interface.of(livetap_series.probe(V6_LIST)) is None


def _argv(spec, incoming):
    return build_argv(spec, "/usr/bin/qemu-system-x86_64", Accelerator("tcg", "test", "max"), IMAGE, Path("/tmp/s"),
                      Path("/tmp/a"), ["vt0"], incoming=incoming)


def _options(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_target_tap_waits_for_fds_without_conflicting_options_and_device_switch_is_on():
    interface = livetap_series.Interface("backend-transfer", True)
    base = VmSpec("lt", nics=[Nic("virtio-net-pci", "52:54:00:00:00:01", id="net0")])
    source = _argv(interface.source_spec(base), None)
    target_spec = interface.target_spec(base)
    target = _argv(target_spec, "defer")
    assert _options(source, "-netdev") == ["tap,id=hn0,ifname=vt0,script=no,downscript=no,vnet_hdr=on"]
    assert _options(target, "-netdev") == ["tap,id=hn0,incoming-fds=on"]  # LT-CFG-02: nothing else
    for argv in (source, target):
        device = next(d for d in _options(argv, "-device") if d.startswith("virtio-net-pci"))
        assert "backend-transfer=on" in device.split(",")
    assert target_spec.incoming_parameters == {"backend-transfer": True}
    assert interface.target_spec(base, parameter=False).incoming_parameters == {"backend-transfer": False}


def test_without_a_device_property_nothing_is_added_to_the_device():
    interface = livetap_series.Interface("local", False)
    base = VmSpec("lt", nics=[Nic("virtio-net-pci", "52:54:00:00:00:01", id="net0")])
    target = _argv(interface.target_spec(base), "defer")
    device = next(d for d in _options(target, "-device") if d.startswith("virtio-net-pci"))
    assert "backend-transfer" not in device
    assert interface.target_spec(base).incoming_parameters == {"local": True}


def test_incoming_fds_only_applies_to_an_incoming_target():
    spec = VmSpec("lt", nics=[Nic("virtio-net-pci", "52:54:00:00:00:01", incoming_fds=True)])
    assert _options(_argv(spec, None), "-netdev") == ["tap,id=hn0,ifname=vt0,script=no,downscript=no,vnet_hdr=on"]
