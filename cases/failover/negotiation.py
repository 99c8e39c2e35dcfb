"""Failover negotiation: the primary is hidden until the guest acks
VIRTIO_NET_F_STANDBY, then FAILOVER_NEGOTIATED names the standby and the
primary is plugged."""

import pytest

from vnetct.core.verdict import require
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
    assert STANDBY_ID in failover_pair.before_pci, f"standby {STANDBY_ID} absent from query-pci at start (premise)"
    require(PRIMARY_ID not in failover_pair.before_pci, "FO-NEG-01",
            "primary visible in query-pci before the guest acked STANDBY")
    require(PRIMARY_ID not in failover_pair.before_peripherals, "FO-NEG-01",
            "primary realized (in /machine/peripheral) before the guest acked STANDBY")
    early = [e["name"] for e in failover_pair.vm.qmp.events[:failover_pair.qmp_mark]]
    require("FAILOVER_NEGOTIATED" not in early, "FO-NEG-01",
            "FAILOVER_NEGOTIATED (the host's word that it plugs the primary) before any guest driver was loaded")
    require(not [n for n in failover_pair.before_netdevs if n.get("driver") == "e1000e"], "FO-NEG-01",
            "the guest has an e1000e netdev before acking STANDBY: the primary was not hidden")
    # The guest acks STANDBY: now the primary is plugged, and not before the event.
    negotiation = failover_pair.negotiate()
    require(PRIMARY_ID in negotiation.pci_after, "FO-NEG-02", "primary still absent from query-pci after FAILOVER_NEGOTIATED")
    primary_name = negotiation.role("primary")["name"]
    added = [e for e in failover_pair.vm.agent.events[failover_pair.agent_mark:]
             if e["name"] == "netdev-added" and e["data"].get("name") == primary_name
             or e["name"] == "netdev-added" and e["data"].get("ifindex") == negotiation.role("primary")["ifindex"]]
    require(bool(added), "FO-NEG-02", f"no netdev-added event from the guest for the primary {primary_name}")
    require(added[0]["host_ns"] >= negotiation.event["host_ns"], "FO-NEG-01",
            "the guest's primary appeared before FAILOVER_NEGOTIATED reached the host")



@pytest.mark.rule("FO-NEG-02")
def test_failover_negotiated_names_standby(failover_pair, case):
    case.uses(failover_pair.vm)
    negotiation = failover_pair.negotiate()
    case.save_json("failover-negotiated.json", negotiation.event)
    require(negotiation.event["data"] == {"device-id": STANDBY_ID}, "FO-NEG-02",
            f"FAILOVER_NEGOTIATED names {negotiation.event['data']}, not the standby {STANDBY_ID}")
    standby = negotiation.role("standby")
    assert standby["virtio_feature_bits"] is not None, f"no virtio features for the standby {standby['name']}"
    assert VIRTIO_NET_F_STANDBY in standby["virtio_feature_bits"], \
        f"guest did not ack VIRTIO_NET_F_STANDBY: features {standby['virtio_features']} (premise)"
    require(PRIMARY_ID in negotiation.pci_after, "FO-NEG-02", "primary absent from query-pci after FAILOVER_NEGOTIATED")
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
    require(PRIMARY_ID not in [d.get("qdev_id") for d in observation.after_pci], "FO-NEG-03",
            "the primary was plugged although the guest never acked STANDBY")
    require(not observation.negotiated, "FO-NEG-03", "FAILOVER_NEGOTIATED although the guest never acked STANDBY")
    require(not any(n.get("driver") == "e1000e" for n in observation.netdevs), "FO-NEG-03", "the guest got the primary")
