"""Failover negotiation: the primary is hidden until the guest acks
VIRTIO_NET_F_STANDBY, then FAILOVER_NEGOTIATED names the standby and the
primary is plugged."""

import pytest


from vnetct.failover.trace import VIRTIO_NET_F_STANDBY
from vnetct.failover.guest import (PRIMARY_ID, STANDBY_ID, failover_spec,
                             observe_configuration)


@pytest.mark.rule("FO-NEG-01")
def test_primary_hidden_until_ack(failover_pair, case):
    case.uses(failover_pair.vm)
    case.save_json("pci-before.json", failover_pair.before_pci)
    case.save_json("guest-netdevs-before.json", failover_pair.before_netdevs)
    case.save_json("peripherals-before.json", failover_pair.before_peripherals)
    # The guest has e1000e loaded but not virtio_net: the standby is on the bus, the primary is not.
    assert STANDBY_ID in failover_pair.before_pci, f"standby {STANDBY_ID} absent from query-pci at start"
    assert PRIMARY_ID not in failover_pair.before_pci, "primary visible in query-pci before the guest acked STANDBY"
    assert PRIMARY_ID not in failover_pair.before_peripherals, \
        "primary realized (in /machine/peripheral) before the guest acked STANDBY"
    early = [e["name"] for e in failover_pair.vm.qmp.events[:failover_pair.qmp_mark]]
    assert "FAILOVER_NEGOTIATED" not in early, "FAILOVER_NEGOTIATED before any guest driver was loaded"
    assert not [n for n in failover_pair.before_netdevs if n.get("driver") == "e1000e"], \
        "the guest has an e1000e netdev before acking STANDBY: the primary was not hidden"
    # The guest acks STANDBY: now the primary is plugged, and not before the event.
    negotiation = failover_pair.negotiate()
    assert PRIMARY_ID in negotiation.pci_after, "primary still absent from query-pci after FAILOVER_NEGOTIATED"
    primary_name = negotiation.role("primary")["name"]
    added = [e for e in failover_pair.vm.agent.events[failover_pair.agent_mark:]
             if e["name"] == "netdev-added" and e["data"].get("name") == primary_name
             or e["name"] == "netdev-added" and e["data"].get("ifindex") == negotiation.role("primary")["ifindex"]]
    assert added, f"no netdev-added event from the guest for the primary {primary_name}"
    assert added[0]["host_ns"] >= negotiation.event["host_ns"], \
        "the guest's primary appeared before FAILOVER_NEGOTIATED reached the host"



@pytest.mark.rule("FO-NEG-02")
def test_failover_negotiated_names_standby(failover_pair, case):
    case.uses(failover_pair.vm)
    negotiation = failover_pair.negotiate()
    case.save_json("failover-negotiated.json", negotiation.event)
    assert negotiation.event["data"] == {"device-id": STANDBY_ID}
    standby = negotiation.role("standby")
    assert standby["virtio_feature_bits"] is not None, f"no virtio features for the standby {standby['name']}"
    assert VIRTIO_NET_F_STANDBY in standby["virtio_feature_bits"], \
        f"guest did not ack VIRTIO_NET_F_STANDBY: features {standby['virtio_features']}"
    assert PRIMARY_ID in negotiation.pci_after
    case.metric("negotiation_latency", round((negotiation.event["host_ns"] - negotiation.load_started_ns) / 1e9, 3),
                "s")
    case.metric("primary_enslaved_after_event",
                round((negotiation.formed_ns - negotiation.event["host_ns"]) / 1e9, 3), "s")



@pytest.mark.rule("FO-NEG-03")
def test_guest_without_standby_never_gets_primary(vm_factory, case):
    # A guest that cannot ack bit 62: legacy virtio has 32 feature bits only.
    observation = observe_configuration(vm_factory, failover_spec("neg-legacy-guest", legacy_guest_driver=True))
    case.save_json("observation.json", observation.to_json())
    case.uses(*vm_factory.vms)
    assert observation.start_error is None, f"the host refused to start: {observation.start_error}"
    virtio = [n for n in observation.netdevs if n.get("driver") == "virtio_net"]
    assert virtio and virtio[0]["virtio_feature_bits"] is not None, f"no virtio netdev with features: {virtio}"
    assert VIRTIO_NET_F_STANDBY not in virtio[0]["virtio_feature_bits"], \
        "the legacy guest acked bit 62: the premise of this case does not hold"
    assert PRIMARY_ID not in [d.get("qdev_id") for d in observation.after_pci], \
        "the primary was plugged although the guest never acked STANDBY"
    assert not observation.negotiated, "FAILOVER_NEGOTIATED although the guest never acked STANDBY"
    assert not any(n.get("driver") == "e1000e" for n in observation.netdevs), "the guest got the primary"
