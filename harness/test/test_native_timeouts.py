"""Timeouts handed to vnetct_native (deadline_in, json_bridge.hpp): NaN and
negative are refused with a ValueError naming the argument; +inf and huge
values are clamped to max_timeout_seconds (30 days) instead of overflowing the
clock (undefined behaviour before)."""

import math
import socket

import pytest

from vnetct.core.native import vnetct_native


@pytest.fixture
def sleeper():
    process = vnetct_native.Process.spawn(["sleep", "30"])
    yield process
    process.terminate(grace=1.0)


@pytest.mark.parametrize("timeout", [math.nan, -1.0, -math.inf])
def test_nan_and_negative_timeouts_are_a_value_error_naming_the_argument(sleeper, timeout):
    with pytest.raises(ValueError, match=r"^timeout must be a number of seconds >= 0, got "):
        sleeper.wait(timeout)
    with pytest.raises(ValueError, match=r"^timeout must be a number of seconds >= 0"):
        vnetct_native.run_command(["true"], timeout=timeout)
    with pytest.raises(ValueError, match=r"^timeout must be"):
        vnetct_native.QmpClient.connect("/nonexistent/qmp.sock", timeout=timeout)


def test_the_message_shows_the_value_given(sleeper):
    with pytest.raises(ValueError, match=r"got nan$"):
        sleeper.wait(math.nan)
    with pytest.raises(ValueError, match=r"got -2\.5$"):
        sleeper.wait(-2.5)


def test_other_duration_arguments_are_checked_by_name(sleeper):
    with pytest.raises(ValueError, match=r"^grace must be a number of seconds >= 0, got nan"):
        sleeper.terminate(grace=math.nan)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    stream = vnetct_native.UdpStream(receiver.detach(), "127.0.0.1", 9, 10.0, count=1)
    with pytest.raises(ValueError, match=r"^drain_s must be a number of seconds >= 0, got nan"):
        stream.stop(drain_s=math.nan)
    stream.stop(drain_s=0.0)


@pytest.mark.parametrize("timeout", [math.inf, 1e300])
def test_infinite_and_huge_timeouts_are_clamped_and_still_work(timeout):
    # Before the clamp these overflowed steady_clock: the call returned at once
    # (a deadline in the past) or never, depending on the wrap.
    status, output = vnetct_native.run_command(["echo", "done"], timeout=timeout)
    assert (status.code, output.strip()) == (0, "done")


def test_a_zero_timeout_is_still_allowed(sleeper):
    with pytest.raises(vnetct_native.HostTimeout):
        sleeper.wait(0.0)
