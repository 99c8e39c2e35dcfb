"""A host profile is untrusted input (issue 17): a file too large, nested far
too deep, with huge integers or bytes that are no UTF-8 -> HostProfileError
naming the file, the line and the key (vnetct.core.yaml_file), never a
traceback (before: RecursionError from PyYAML's composer, ValueError from int()
past 4300 digits, UnicodeDecodeError)."""

import pytest

from vnetct.core import yaml_file
from vnetct.sut.host_profile import HostProfileError, load

from test_vf_profile import GOOD  # the host profile both files start from


def _profile_error(tmp_path, data) -> str:
    path = tmp_path / "host.yaml"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    with pytest.raises(HostProfileError) as error:
        load(path)
    return str(error.value).replace(str(tmp_path) + "/", "")


def test_the_good_file_loads(tmp_path):
    (tmp_path / "host.yaml").write_text(GOOD)
    assert load(tmp_path / "host.yaml").num_vfs == 4


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    text = GOOD + "#" * yaml_file.MAX_FILE_BYTES + "\n"
    assert _profile_error(tmp_path, text) == f"host.yaml: larger than {yaml_file.MAX_FILE_BYTES} bytes " \
                                             "(the limit of a vnetct YAML file)"


def test_flow_nesting_200000_deep_names_line_and_key(tmp_path):
    text = GOOD.replace("  num_vfs: 4", "  num_vfs: " + "[" * 200_000 + "]" * 200_000)
    keys = "pf.num_vfs" + "[0]" * (yaml_file.MAX_DEPTH - 2)
    assert _profile_error(tmp_path, text) == f"host.yaml:3: {keys}: nested deeper than {yaml_file.MAX_DEPTH} levels"


def test_block_nesting_deeper_than_the_limit_names_the_key_path(tmp_path):
    lines = [f"{'  ' * level}k{level}:" for level in range(yaml_file.MAX_DEPTH + 3)]
    message = _profile_error(tmp_path, "\n".join(lines) + " x\n")
    path = ".".join(f"k{level}" for level in range(yaml_file.MAX_DEPTH))
    assert message == f"host.yaml:{yaml_file.MAX_DEPTH + 1}: {path}: nested deeper than {yaml_file.MAX_DEPTH} levels"


def test_nesting_within_the_limit_reaches_the_usual_checks(tmp_path):
    text = GOOD.replace("  num_vfs: 4", "  num_vfs: [[[4]]]")
    assert _profile_error(tmp_path, text).startswith("host.yaml:3: pf.num_vfs: expected an integer 1..256, got a list")


def test_a_huge_integer_names_the_key(tmp_path):
    text = GOOD.replace("num_vfs: 4", "num_vfs: " + "9" * 5000)
    assert _profile_error(tmp_path, text) == ("host.yaml:3: pf.num_vfs: expected an integer 1..256, "
                                              "got a number of 5000 digits")


def test_bytes_that_are_not_utf8_are_refused(tmp_path):
    message = _profile_error(tmp_path, GOOD.encode().replace(b"br0", b"br\xff"))
    assert message.startswith("host.yaml: not UTF-8 text (byte "), message
