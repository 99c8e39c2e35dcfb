"""Failover configuration rules, each checked against what QEMU really
answers: it refuses, or it starts and the guest never gets a bad primary, or
the primary is an ordinary device."""

import pytest


from vnetct.failover.trace import VIRTIO_NET_F_STANDBY
from vnetct.failover.guest import (E1000E_PCI_ID, IGB_PCI_ID, MAC, PRIMARY_ID, STANDBY_ID, failover_spec, observe_configuration, pci_has)

# What QEMU 10 says for each refusal (measured; the reference model uses the same words).
NEEDS_ID = "needs to have id"
NOT_HOTPLUGGABLE = "does not support hotplugging"
OWN_SLOT = "must be in its own PCI slot"
PRIMARY_NOT_FOUND = "Primary device not found"


def _record(case, observation, factory):
    case.save_json("observation.json", observation.to_json())
    case.uses(*factory.vms)


def _assert_primary_refused(case, observation, pci_id, what, error_text):
    """The rule's two conformant outcomes: the host refuses to start, or it
    starts and the bad primary never reaches the guest; either way with an
    error that names the problem (`error_text`)."""
    if observation.start_error is not None:
        case.metric("qemu_refused_at_start", observation.start_error.strip().splitlines()[-1])
        assert error_text in observation.start_error, \
            f"the host refused {what}, but not with '{error_text}': {observation.start_error}"
        return
    assert not pci_has(observation.after_pci, pci_id), f"{what} was plugged"
    assert not any(n.get("failover_role") == "primary" for n in observation.netdevs), f"the guest got {what}"
    assert error_text in observation.stderr, f"{what} was dropped without the error '{error_text}': " \
                                             f"{observation.stderr!r}"
    case.metric("failover_negotiated_events", len(observation.negotiated))
    case.metric("qemu_error", observation.stderr.strip().splitlines()[-1])


@pytest.mark.rule("FO-CFG-01")
def test_primary_without_id(vm_factory, case):
    observation = observe_configuration(vm_factory, failover_spec("cfg-no-id", primary_id=None))
    _record(case, observation, vm_factory)
    _assert_primary_refused(case, observation, E1000E_PCI_ID, "an id-less primary", NEEDS_ID)



@pytest.mark.rule("FO-CFG-02")
def test_primary_on_root_bus(vm_factory, case):
    observation = observe_configuration(vm_factory, failover_spec("cfg-root-bus", primary_bus="pcie.0"))
    _record(case, observation, vm_factory)
    _assert_primary_refused(case, observation, E1000E_PCI_ID, "a primary on pcie.0", NOT_HOTPLUGGABLE)



@pytest.mark.rule("FO-CFG-03")
@pytest.mark.needs("igb")
def test_igb_primary_is_multifunction(vm_factory, case):
    # igb has SR-IOV (multifunction): QEMU 10 refuses it as a primary only after the
    # negotiation ("primary device must be in its own PCI slot") (observed on QEMU 10.0.2).
    observation = observe_configuration(vm_factory, failover_spec("cfg-igb", primary_driver="igb"))
    _record(case, observation, vm_factory)
    _assert_primary_refused(case, observation, IGB_PCI_ID, "a multifunction igb primary", OWN_SLOT)



@pytest.mark.rule("FO-CFG-04")
def test_mismatched_pair_id_is_not_hidden(vm_factory, case):
    observation = observe_configuration(vm_factory, failover_spec("cfg-mismatch", pair_id="nosuch"))
    _record(case, observation, vm_factory)
    assert observation.start_error is None, f"QEMU refused: {observation.start_error}"
    before_ids = [d.get("qdev_id") for d in observation.before_pci]
    assert PRIMARY_ID in before_ids, "a primary naming no standby was hidden anyway"
    # FAILOVER_NEGOTIATED reports the standby's negotiation (QAPI); the host must then say
    # that the standby has no primary.
    assert observation.negotiated, "the standby (failover=on) never negotiated"
    assert PRIMARY_NOT_FOUND in observation.stderr, \
        f"the standby negotiated without a primary and the host did not warn: {observation.stderr!r}"
    # Finding, not a rule of the host: the guest pairs by MAC alone, so it still forms a
    # failover master with the unpaired e1000e.
    e1000e = [n for n in observation.netdevs if n.get("driver") == "e1000e"]
    assert e1000e, "the unpaired e1000e never reached the guest"
    case.metric("failover_negotiated_events", len(observation.negotiated))
    case.metric("guest_enslaved_unpaired_primary", e1000e[0]["master"] is not None)
    case.metric("qemu_warning", " / ".join(observation.stderr.strip().splitlines()))



@pytest.mark.rule("FO-CFG-05")
def test_failover_off_is_plain_pair(vm_factory, case):
    observation = observe_configuration(vm_factory, failover_spec("cfg-failover-off", standby_failover="off"))
    _record(case, observation, vm_factory)
    assert observation.start_error is None, f"QEMU refused: {observation.start_error}"
    before_ids = [d.get("qdev_id") for d in observation.before_pci]
    assert STANDBY_ID in before_ids and PRIMARY_ID in before_ids, f"both NICs should be visible: {before_ids}"
    assert not observation.negotiated, "FAILOVER_NEGOTIATED although failover=off"
    virtio = [n for n in observation.netdevs if n.get("driver") == "virtio_net"]
    assert virtio, "the guest has no virtio-net netdev"
    bits = virtio[0]["virtio_feature_bits"]
    assert bits is not None, f"no virtio feature bits for {virtio[0]['name']}"
    assert VIRTIO_NET_F_STANDBY not in bits, "bit 62 acked although failover=off"
    assert not any(n.get("failover_role") for n in observation.netdevs), "a failover master formed with failover=off"
    assert {n["mac"] for n in observation.netdevs if n.get("driver") in ("virtio_net", "e1000e")} == {MAC}
