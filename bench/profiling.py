"""Summaries of a master's cProfile output (written by `python -m bench.profmaster`)."""

from __future__ import annotations

import pathlib
import pstats

__all__ = ["summarize_profile"]

# Time a thread spends waiting, not working: left out of the summary.
_WAITS = ("SimpleQueue' objects", "select.epoll' objects", "threading.py", "lock' objects")


def _where(key: tuple[str, int, str]) -> str:
    path, line, func = key
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{func}" if path == "~" else f"{path}:{line}({func})"


def summarize_profile(path: pathlib.Path, top: int = 15) -> str:
    """The master's busy time by function: top by own time, and cloudai's by cumulative."""
    raw = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = [
        (key, nc, tt, ct)
        for key, (_cc, nc, tt, ct, _callers) in raw.items()
        if not any(w in key[0] + key[2] for w in _WAITS)
    ]
    busy = sum(tt for _, _, tt, _ in rows)
    out = [f"busy (not waiting) time in all threads: {busy:.1f} s", "", "by own time:"]
    out.append(f"{'calls':>9} {'own s':>7} {'cum s':>7}  function")
    for key, nc, tt, ct in sorted(rows, key=lambda r: -r[2])[:top]:
        out.append(f"{nc:>9} {tt:>7.2f} {ct:>7.2f}  {_where(key)}")
    out += ["", "cloudai's functions by cumulative time:"]
    out.append(f"{'calls':>9} {'own s':>7} {'cum s':>7}  function")
    ours = [r for r in rows if "/cloudai/" in r[0][0] and "/cloudai/api/" not in r[0][0]]
    for key, nc, tt, ct in sorted(ours, key=lambda r: -r[3])[:top]:
        out.append(f"{nc:>9} {tt:>7.2f} {ct:>7.2f}  {_where(key)}")
    return "\n".join(out) + "\n"
