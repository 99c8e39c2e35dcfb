"""Pairing by MAC: the guest forms the failover master from the standby and
the primary."""

import pytest


from vnetct.failover.guest import MAC


@pytest.mark.rule("FO-PAIR-01", "FO-GRP-03")
def test_master_standby_primary_share_mac(failover_pair, case):
    case.uses(failover_pair.vm)
    negotiation = failover_pair.negotiate()
    case.save_json("guest-netdevs.json", negotiation.netdevs)
    master, standby, primary = (negotiation.role(r) for r in ("master", "standby", "primary"))
    assert master["driver"] == "net_failover"
    assert {master["mac"], standby["mac"], primary["mac"]} == {MAC}, "the three netdevs do not share the MAC"
    assert standby["master"] == master["name"] and primary["master"] == master["name"]
    assert standby["parent_bus"] == "virtio" and standby["phys_port_name"] == "sby"
    assert primary["parent_bus"] == "pci" and primary["pci_address"], f"primary has no PCI parent: {primary}"
    assert primary["driver"] == "e1000e"
    assert primary["perm_mac"] == MAC, f"primary's permanent MAC is {primary['perm_mac']}"
    # QEMU has no failover-group-id: neither config space carries one, so the pair is by MAC (FO-GRP-03).
    for netdev in (standby, primary):
        assert (netdev.get("group_id"), netdev.get("group_id_error")) == (None, None), \
            f"{netdev['name']}: group id {netdev.get('group_id')}, error {netdev.get('group_id_error')}"
        assert "group_id" in netdev, f"the guest agent did not look for a group id on {netdev['name']}"
    # The guest kernel says the same in its own words.
    log = "\n".join(negotiation.kernel_log)
    for line in (f"failover master:{master['name']} registered",
                 f"failover standby slave:{standby['name']} registered",
                 f"failover primary slave:{primary['name']} registered"):
        assert line in log, f"kernel log lacks '{line}'"
