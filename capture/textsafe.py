"""Showing text that came from outside (the network, a file) without trusting it.

:func:`shown` is the one function used before a foreign string reaches a log line or an error
message: control characters (ANSI escapes, NUL, new lines, C1, bidi overrides) are escaped and
the length is capped, so a client cannot rewrite a terminal, forge a log line or flood the log.
"""

from __future__ import annotations

import unicodedata

DEFAULT_LIMIT = 80  # characters of the original text kept


def shown(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` (converted with ``str``) with every non-printable character written as
    ``\\xNN`` / ``\\uNNNN`` and at most ``limit`` original characters, ``…`` marking a cut.
    Never raises."""
    raw = text if isinstance(text, str) else str(text)
    cut = len(raw) > limit
    out = []
    for ch in raw[:limit]:
        if ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zl", "Zp"):
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out) + ("…" if cut else "")
