"""Strict reading of the harness's YAML input files (host profiles,
expectations): parsed from PyYAML's composed node tree, so that every error
names the file, the line and the key path, e.g. `host.yaml:7: vf.index:
expected an integer 0..3 (pf.num_vfs is 4), got 'x'`. Unknown keys are
errors: a typo must not silently fall back to a default. Each file format
raises its own exception type (given to the reader)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Type

import yaml  # Debian: python3-yaml


def compose(path: Path, error: Type[Exception]) -> Optional[yaml.Node]:
    """The file's node tree (None for an empty file); `error` names the file
    (and the line) when it cannot be read or is not YAML."""
    try:
        text = Path(path).read_text()
    except OSError as problem:
        raise error(f"{path}: cannot read it: {problem.strerror or problem}") from problem
    try:
        return yaml.compose(text)
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark is not None else ""
        raise error(f"{path}:{line} not valid YAML: {getattr(problem, 'problem', None) or problem}") from problem


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
