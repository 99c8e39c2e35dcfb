"""Text from the guest or the QEMU under test, made safe to show: on a
terminal (no control sequence reaches it: an ESC could move the cursor, clear
the screen or retitle the window; a CR overwrite a line) and in XML (1.0
forbids most C0 controls, lone surrogates and U+FFFE/U+FFFF: one of them and
junit.xml no longer parses). What is replaced is shown as an escape
(\\x1b, \\u202e), never dropped silently."""

from __future__ import annotations

import re

# C0 but tab and newline, DEL, C1; the bidirectional overrides and isolates (a
# line shown in another order than it reads: "Trojan Source"); lone surrogates
# (a JSON "\\udcff" from a peer: no encoding can write them, print() raises).
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# Everything outside XML 1.0's Char production.
_XML_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: str) -> str:
    """`text` with every character a terminal would act on shown as an escape."""
    return _TERMINAL_UNSAFE.sub(_escape, text)


def for_xml(text: str) -> str:
    """`text` with every character XML 1.0 forbids shown as an escape."""
    return _XML_UNSAFE.sub(_escape, text)


def is_terminal_safe(text: str) -> bool:
    return _TERMINAL_UNSAFE.search(text) is None
