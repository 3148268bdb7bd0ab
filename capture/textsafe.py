"""Showing text that came from outside (the network, a file) without trusting it.

:func:`shown` is the one function used before a foreign string reaches a log line or an error
message: control characters (ANSI escapes, NUL, new lines, C1, bidi overrides) are escaped and
the length is capped, so a client cannot rewrite a terminal, forge a log line or flood the log.
"""

from __future__ import annotations

import unicodedata

DEFAULT_LIMIT = 80  # characters shown at most (escapes included)


def shown(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` (converted with ``str``) with every non-printable character written as
    ``\\xNN`` / ``\\uNNNN``, at most ``limit`` characters long plus ``…`` where it was cut.
    Never raises."""
    raw = text if isinstance(text, str) else str(text)
    out: list[str] = []
    size = 0
    for ch in raw:
        if ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zl", "Zp"):
            piece = ch
        elif ord(ch) < 0x100:
            piece = f"\\x{ord(ch):02x}"
        elif ord(ch) < 0x10000:
            piece = f"\\u{ord(ch):04x}"
        else:
            piece = f"\\U{ord(ch):08x}"
        if size + len(piece) > limit:
            return "".join(out) + "…"
        out.append(piece)
        size += len(piece)
    return "".join(out)
