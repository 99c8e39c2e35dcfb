"""failover-group-id: pairing a standby and a primary by a 64-bit group id
(a 2018 proposal; the layout is stated in reference_impl/groupid/include/
vnetct/groupid/groupid.hpp) instead of the MAC.

No QEMU has the option, so the pairing cases run against the reference: the
config spaces a host with the proposal would present (the standby's PCI
function with its virtio capability, the root port above the primary with
its vendor capability) are built by the reference encoder and read back by
the same decoder the guest agent runs on sysfs, then the reference pairing
decision is judged. The QEMU probe skips, saying QEMU lacks the property;
on QEMU 10's own NICs the guest agent finds no group id and the pair forms
by MAC (cases/failover/pairing.py)."""

from __future__ import annotations

import pytest

from vnetct.core.native import vnetct_native

MAC = "52:54:00:6f:55:cc"
OTHER_MAC = "52:54:00:00:00:01"
GROUP = 0x5EED0000CAFE0001

SITUATIONS = [
    # id, standby group, primary group, standby MAC, primary MAC, paired, by, rule
    ("matching-ids-different-macs", GROUP, GROUP, MAC, OTHER_MAC, True, "group-id", "FO-GRP-02"),
    ("matching-ids-same-mac", GROUP, GROUP, MAC, MAC, True, "group-id", "FO-GRP-02"),
    ("mismatching-ids-same-mac", GROUP, GROUP + 1, MAC, MAC, False, "", "FO-GRP-02"),
    ("missing-on-primary", GROUP, None, MAC, MAC, False, "", "FO-GRP-04"),
    ("missing-on-standby", None, GROUP, MAC, MAC, False, "", "FO-GRP-04"),
    ("missing-on-both-same-mac", None, None, MAC, MAC, True, "mac", "FO-GRP-03"),
    ("missing-on-both-different-macs", None, None, MAC, OTHER_MAC, False, "", "FO-GRP-03"),
]


@pytest.mark.subject("reference")
@pytest.mark.parametrize("standby_group,primary_group,standby_mac,primary_mac,paired,by", [
    pytest.param(*situation[1:7], id=situation[0], marks=pytest.mark.rule("FO-GRP-01", situation[7]))
    for situation in SITUATIONS])
def test_pairing_by_group_id(case, standby_group, primary_group, standby_mac, primary_mac, paired, by):
    standby_config = vnetct_native.groupid_encode_nic_config(standby_group)
    bridge_config = vnetct_native.groupid_encode_bridge_config(primary_group)
    # What the guest reads: the standby's own function, and the bridge above the primary.
    seen_standby = vnetct_native.groupid_nic(standby_config)
    seen_primary = vnetct_native.groupid_bridge(bridge_config)
    assert (seen_standby, seen_primary) == (standby_group, primary_group), \
        f"config space read back {seen_standby}, {seen_primary}; written {standby_group}, {primary_group}"
    # Nor does either place carry the other's id.
    assert vnetct_native.groupid_bridge(standby_config) is None and vnetct_native.groupid_nic(bridge_config) is None
    decision = vnetct_native.groupid_decide_pairing(standby_mac, seen_standby, primary_mac, seen_primary)
    case.save_json("decision.json", {"standby": {"mac": standby_mac, "group_id": seen_standby},
                                     "primary": {"mac": primary_mac, "group_id": seen_primary}, **decision})
    case.step(f"{'paired' if decision['paired'] else 'not paired'}: {decision['why']}")
    assert (decision["paired"], decision["by"]) == (paired, by), decision["why"]


@pytest.mark.subject("reference")
@pytest.mark.rule("FO-GRP-05")
@pytest.mark.parametrize("damage", ["loop", "pointer-into-header", "image-cut-short"])
def test_malformed_config_space_is_an_error(case, damage):
    config = bytearray(vnetct_native.groupid_encode_nic_config(GROUP))
    if damage == "loop":
        config[0x41] = 0x40
        code, expected = "Loop", "loops"
    elif damage == "pointer-into-header":
        config[0x34] = 0x10
        code, expected = "BadPointer", "the pointer at 0x34 is 0x10, expected 0x40..0xff or 0"
    else:
        config = config[:0x60]  # sysfs gave less than the list spans: the next capability is past the end
        code, expected = "BadPointer", "the pointer at 0x51 is 0x60, expected 0x40..0x5f or 0"
    with pytest.raises(vnetct_native.GroupIdError) as refused:
        vnetct_native.groupid_nic(bytes(config))
    case.step(f"{refused.value.code}: {refused.value}")
    assert refused.value.code == code
    assert expected in str(refused.value)


@pytest.mark.rule("FO-GRP-01")
@pytest.mark.needs("qemu")
def test_qemu_offers_failover_group_id(vm_factory, case):
    from vnetct.vm.guest import VmSpec

    vm = vm_factory.vm(VmSpec("groupid-probe"))
    found = {}
    for device in ("virtio-net-pci", "pcie-root-port"):
        properties = {p["name"]: p.get("type") for p in
                      vm.qmp.execute("device-list-properties", {"typename": device})}
        found[device] = properties.get("failover-group-id")
    case.save_json("probe.json", found)
    missing = [device for device, kind in found.items() if kind is None]
    if missing:
        pytest.skip(f"this QEMU has no failover-group-id property on {', '.join(missing)} (device-list-properties): "
                    f"the proposal was never merged")
    # A QEMU with the proposal: the id must be the 64-bit value the capabilities carry.
    assert all(kind in ("uint64", "uint64_t") for kind in found.values()), found
