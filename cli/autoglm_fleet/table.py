"""Plain-text tables and the small formatters the commands share (no colour, no terminal library)."""

from __future__ import annotations

from collections.abc import Sequence

GIB = 1024**3


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[str] = ()) -> str:
    """Columns as wide as their widest cell, two spaces apart; the columns named in ``right`` align right.
    ``None`` prints as ``-``. Trailing spaces are stripped."""
    cells = [[cell_text(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError("a row has %d cells for %d columns: %r" % (len(row), len(headers), row))
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = []
    for row in [list(headers), *cells]:
        parts = [
            (c.rjust(w) if headers[i] in right else c.ljust(w))
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def cell_text(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def duration(seconds: float | None) -> str:
    """``4.2s``, ``3m07s``, ``1h02m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return "%.1fs" % seconds
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return "%dm%02ds" % (minutes, secs)
    hours, minutes = divmod(minutes, 60)
    return "%dh%02dm" % (hours, minutes)


def gib(num_bytes: int | None) -> str:
    """Bytes as GiB, no decimals from 10 GiB on (``80G``, ``7.5G``)."""
    if num_bytes is None:
        return "-"
    value = num_bytes / GIB
    return ("%.0fG" % value) if value >= 10 else ("%.1fG" % value)


def short_digest(digest: str | None, length: int = 12) -> str | None:
    """``sha256:0123456789ab`` from a full digest; other strings as they are."""
    if not digest:
        return None
    algo, sep, hexpart = digest.partition(":")
    if sep and len(hexpart) > length:
        return "%s:%s" % (algo, hexpart[:length])
    return digest


def first_line(text: object, limit: int = 160) -> str:
    """The first non-empty line of a message, cut to ``limit`` characters; a line that ends with a colon (a heading,
    "Preflight failed 1 gate(s) on gpu-2:") is followed by the next one, which says what failed."""
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    if line.endswith(":") and len(lines) > 1:
        line = "%s %s" % (line, lines[1])
    return line if len(line) <= limit else line[: limit - 3] + "..."
