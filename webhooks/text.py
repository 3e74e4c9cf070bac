"""Text shown to people: no URL's password in it, no control character a terminal would act on."""

from __future__ import annotations

import re

# scheme:[//]user:password@ — the password runs to the last "@" before a blank, so a password
# holding "@", "/" or ":" is hidden whole, and a malformed URL (one slash, none) is covered too;
# a port (digits, then the path, the query or the end) is not a password.
_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*:/*[^\s/?#@:\[\]]*):(?!\d*(?:[/?#\s'\"]|$))\S*@")


def without_passwords(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (the user name is kept)."""
    return _CREDENTIALS.sub(r"\g<head>:***@", text)


# C0 controls but a newline and a tab, DEL, and C1 controls (U+0080-U+009F, which some terminals
# act on as 8-bit ESC, CSI, OSC…): shown as \x1b, \r, \x9b… (a backslash itself is left as is).
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) not in "\n\t"}
_CONTROLS.update({ord("\r"): "\\r"})
# and the bidirectional overrides, which reorder what a terminal shows
_CONTROLS.update({code: f"\\u{code:04x}" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})
# one line: a newline and a tab escaped too (a log line stays one line)
_ONE_LINE = {**_CONTROLS, ord("\n"): "\\n", ord("\t"): "\\t"}
# What JSON leaves raw that a terminal acts on: DEL and C1 (json escapes C0 itself).
_JSON_RAW_CONTROLS = re.compile("[\x7f-\x9f]")


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` for a terminal: every control character but a newline and a tab escaped (those
    too with ``one_line``), so a subscriber's answer or a lead's text cannot write the clipboard
    (OSC 52), clear the screen, move the cursor, overwrite a line (a carriage return) or forge
    a log line."""
    return text.translate(_ONE_LINE if one_line else _CONTROLS)


def json_printable(document: str) -> str:
    """JSON text (``ensure_ascii=False``) with DEL and C1 escaped as ``\\u00XX``: the same JSON
    value, every character kept, none that a terminal would act on."""
    return _JSON_RAW_CONTROLS.sub(lambda found: f"\\u{ord(found.group()):04x}", document)
