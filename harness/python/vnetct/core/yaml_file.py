"""Strict reading of the harness's YAML input files (host profiles,
expectations): parsed from PyYAML's composed node tree, so that every error
names the file, the line and the key path, e.g. `host.yaml:7: vf.index:
expected an integer 0..3 (pf.num_vfs is 4), got 'x'`. Unknown keys are
errors: a typo must not silently fall back to a default. Each file format
raises its own exception type (given to the reader).

The files are untrusted input (a vendor's host profile): larger than
MAX_FILE_BYTES, nested deeper than MAX_DEPTH or holding integers longer than
MAX_INTEGER_DIGITS, they are refused with that error type, never with a
traceback (PyYAML's composer recurses; int() refuses over 4300 digits)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Type

import yaml  # Debian: python3-yaml


# A host profile or an expectations file is a few KiB.
MAX_FILE_BYTES = 1024 * 1024
# They nest three or four levels.
MAX_DEPTH = 32
# The largest integer any of them holds is a VLAN id or a line number.
MAX_INTEGER_DIGITS = 18


def compose(path: Path, error: Type[Exception]) -> Optional[yaml.Node]:
    """The file's node tree (None for an empty file); `error` names the file
    (and the line, and the key) when it cannot be read, is too large, too
    deep or not YAML."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as problem:
        raise error(f"{path}: cannot read it: {problem.strerror or problem}") from problem
    if len(data) > MAX_FILE_BYTES:
        raise error(f"{path}: larger than {MAX_FILE_BYTES} bytes (the limit of a vnetct YAML file)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{path}: not UTF-8 text (byte {problem.start}: {problem.reason})") from problem
    try:
        check_depth(text, path, error)
        return yaml.compose(text)
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark is not None else ""
        raise error(f"{path}:{line} not valid YAML: {getattr(problem, 'problem', None) or problem}") from problem


def check_depth(text: str, path: Path, error: Type[Exception], limit: int = MAX_DEPTH) -> None:
    """`error` naming the line and key path where `text` nests mappings and
    lists deeper than `limit`. From PyYAML's event stream, which is read
    without recursion (unlike composing)."""
    stack: List[dict] = []  # per open collection: is it a mapping, the next node a key, the key, the index
    for event in yaml.parse(text):
        is_node = isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.ScalarEvent,
                                     yaml.AliasEvent))
        if is_node and stack and stack[-1]["mapping"]:
            top = stack[-1]
            if top["expect_key"]:
                top["key"] = event.value if isinstance(event, yaml.ScalarEvent) else "?"
                top["expect_key"] = False
                if not isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                    continue
            else:
                top["expect_key"] = True
        elif is_node and stack:
            stack[-1]["index"] += 1
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) >= limit:
                keys = "".join(f".{entry['key']}" if entry["mapping"] else f"[{entry['index']}]" for entry in stack)
                raise error(f"{path}:{event.start_mark.line + 1}: {keys.lstrip('.')}: "
                            f"nested deeper than {limit} levels")
            stack.append({"mapping": isinstance(event, yaml.MappingStartEvent), "expect_key": True, "key": "",
                          "index": -1})
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()


def describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return "nothing" if node.value == "" else repr(node.value)
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return "a list"


class Reader:
    def __init__(self, path: Path, error: Type[Exception]):
        self.path = path
        self.error_type = error

    def error(self, node: Optional[yaml.Node], key: str, text: str) -> Exception:
        line = f"{node.start_mark.line + 1}:" if node is not None else ""
        return self.error_type(f"{self.path}:{line} {key}: {text}" if key else f"{self.path}:{line} {text}")

    def mapping(self, node: yaml.Node, key: str, allowed: Dict[str, bool]) -> Dict[str, yaml.Node]:
        """The mapping's entries by key; `allowed` maps each known key to
        whether it is required."""
        where = key or "the top level"
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key, f"expected a mapping of {', '.join(allowed)}, got {describe(node)}")
        entries: Dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            path = f"{key}.{name}" if key else str(name)
            if name not in allowed:
                raise self.error(key_node, path, f"unknown key (known in {where}: {', '.join(allowed)})")
            if name in entries:
                raise self.error(key_node, path, f"given twice (first on line {entries[name].start_mark.line + 1})")
            entries[name] = value_node
        for name, required in allowed.items():
            if required and name not in entries:
                raise self.error(node, f"{key}.{name}" if key else name, "missing (required)")
        return entries

    def sequence(self, node: yaml.Node, key: str, what: str) -> List[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, key, f"expected a list of {what}, got {describe(node)}")
        return list(node.value)

    def integer(self, node: yaml.Node, key: str, low: int, high: int, why: str = "") -> int:
        text = node.value if isinstance(node, yaml.ScalarNode) else None
        expected = f"expected an integer {low}..{high}{why}"
        if text is None or node.tag != "tag:yaml.org,2002:int" or not re.fullmatch(r"[0-9]+", text):
            raise self.error(node, key, f"{expected}, got {describe(node)}")
        if len(text) > MAX_INTEGER_DIGITS:
            raise self.error(node, key, f"{expected}, got a number of {len(text)} digits")
        value = int(text)
        if not low <= value <= high:
            raise self.error(node, key, f"{expected}, got {value}")
        return value

    def boolean(self, node: yaml.Node, key: str) -> bool:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            return node.value.lower() in ("true", "yes", "on", "y")
        raise self.error(node, key, f"expected true or false, got {describe(node)}")

    def string(self, node: yaml.Node, key: str, pattern: re.Pattern, what: str) -> str:
        """The scalar's text as written (a MAC like 52:54:00:10:20:30 must not
        become a YAML 1.1 base-60 integer, a release 10.0 not a float)."""
        if not isinstance(node, yaml.ScalarNode) or not pattern.fullmatch(node.value):
            raise self.error(node, key, f"expected {what}, got {describe(node)}")
        return node.value

    def text(self, node: yaml.Node, key: str, what: str) -> str:
        """A scalar with some text in it (not only blanks)."""
        if not isinstance(node, yaml.ScalarNode) or not node.value.strip():
            raise self.error(node, key, f"expected {what} (some text), got {describe(node)}")
        return node.value.strip()
