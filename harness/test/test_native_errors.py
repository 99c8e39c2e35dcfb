"""Every error type of vnetct_native is raised the same way (error_binding.hpp):
the message is the error's sentence (plus detail) and `.code` is the C++
error enum's name (an identifier, CamelCase), never the sentence."""

import re

import pytest

from vnetct.core.native import vnetct_native

CODE_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")


def _raised(error_type, call, *args, **options):
    with pytest.raises(error_type) as raised:
        call(*args, **options)
    return raised.value


def _assert_code_and_sentence(error, *codes):
    assert CODE_NAME.fullmatch(error.code), f"code {error.code!r} is not an enum name"
    assert error.code in codes
    message = str(error)
    assert " " in message and message != error.code, f"message {message!r} is not a sentence"


def test_host_error_names_its_code(tmp_path):
    error = _raised(vnetct_native.HostError, vnetct_native.QmpClient.connect, str(tmp_path / "no-such.sock"),
                    timeout=0.5)
    # Refused at once, or retried until the deadline (then it is a HostTimeout).
    _assert_code_and_sentence(error, "ConnectFailed", "Timeout")
    assert isinstance(error, vnetct_native.HostTimeout) == (error.code == "Timeout")


def test_host_timeout_is_a_host_error_for_the_timeout_code():
    assert issubclass(vnetct_native.HostTimeout, vnetct_native.HostError)
    process = vnetct_native.Process.spawn(["sleep", "5"])
    try:
        error = _raised(vnetct_native.HostTimeout, process.wait, 0.05)
        _assert_code_and_sentence(error, "Timeout")
    finally:
        process.terminate(grace=1.0)


def test_model_error_names_its_code_not_its_sentence():
    model = vnetct_native.FailoverModel("source")
    model.start(0)
    error = _raised(vnetct_native.ModelError, model.start, 1)
    _assert_code_and_sentence(error, "AlreadyStarted")
    assert str(error).startswith("the host has already been started")


def test_model_error_for_an_unknown_primary():
    model = vnetct_native.FailoverModel("source")
    error = _raised(vnetct_native.ModelError, model.primary_state, "hostdev9")
    _assert_code_and_sentence(error, "UnknownDevice")


def test_teaming_error_for_bad_xml():
    error = _raised(vnetct_native.TeamingError, vnetct_native.teaming_check_text, "<domain", "bad.xml")
    _assert_code_and_sentence(error, "Malformed")
    assert str(error).startswith("the domain XML is not well-formed")


def test_group_id_error_for_an_empty_config_space():
    error = _raised(vnetct_native.GroupIdError, vnetct_native.groupid_nic, b"")
    _assert_code_and_sentence(error, "Truncated")


def test_live_tap_error_for_conflicting_tap_options():
    error = _raised(vnetct_native.LiveTapError, vnetct_native.livetap_check_tap_netdev, True, ifname=True, fd=True)
    _assert_code_and_sentence(error, "ConflictingOptions")
    assert str(error) == "incoming-fds conflicts with another TAP option: incoming-fds with ifname, fd"
    assert vnetct_native.livetap_check_tap_netdev(True) is None


def test_live_tap_error_for_a_waiting_target_that_gets_no_fds():
    assert vnetct_native.livetap_transfer_decision(True, False, True) == {"transfers_fds": False}
    error = _raised(vnetct_native.LiveTapError, vnetct_native.livetap_check_target, True, False, True)
    _assert_code_and_sentence(error, "NoIncomingFds")
    assert str(error).endswith("the device's backend-transfer is off")
    assert vnetct_native.livetap_check_target(True, True, True) is None


def test_sriov_error_for_a_missing_pf(tmp_path):
    error = _raised(vnetct_native.SriovError, vnetct_native.sriov_probe, "eth9", str(tmp_path / "sys"))
    _assert_code_and_sentence(error, "NoSuchPf")


def test_every_error_type_is_an_exception_of_the_module():
    for name in ("HostError", "HostTimeout", "ModelError", "SriovError", "TeamingError", "GroupIdError",
                 "LiveTapError"):
        error_type = getattr(vnetct_native, name)
        assert issubclass(error_type, Exception)
        assert error_type.__module__ == "vnetct_native" and error_type.__name__ == name


def test_one_rule_registry():
    rules = vnetct_native.rules()
    assert len(rules) == 51
    assert len({rule["id"] for rule in rules}) == 51
    assert all(set(rule) == {"id", "area", "sentence"} for rule in rules)
    assert {rule["id"].split("-")[0] for rule in rules} == {"FO", "LT", "TEAM"}
    assert any(rule["id"].startswith("FO-GRP-") for rule in rules)
    for gone in ("failover_rules", "livetap_rules", "teaming_rules", "groupid_rules"):
        assert not hasattr(vnetct_native, gone)
