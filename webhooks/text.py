"""Text from outside (a subscriber's answer, a lead, a queue message) made safe to print."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (ESC-less terminal sequences), and the
# bidirectional overrides that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_NEWLINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), so that nothing a
    terminal would act on (OSC 52 clipboard writes, screen clears, C1 controls) is printed raw.
    Newlines are escaped too unless ``newlines``: one record stays one log line."""
    return (_CONTROL if newlines else _CONTROL_OR_NEWLINE).sub(_escape, text)
