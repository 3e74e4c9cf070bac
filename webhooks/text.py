"""Text shown to people: no URL's password in it."""

from __future__ import annotations

import re

# scheme:[//]user:password@ — the password runs to the last "@" before a blank, so a password
# holding "@", "/" or ":" is hidden whole, and a malformed URL (one slash, none) is covered too;
# a port (digits, then the path, the query or the end) is not a password.
_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*:/*[^\s/?#@:\[\]]*):(?!\d*(?:[/?#\s'\"]|$))\S*@")


def without_passwords(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (the user name is kept)."""
    return _CREDENTIALS.sub(r"\g<head>:***@", text)
