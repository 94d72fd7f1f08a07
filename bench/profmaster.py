"""`python -m bench.profmaster OUT master ARGS...`: a cloudai master under cProfile.

cProfile sees one thread only, and the master spends its time in two: the event loop and the
store's executor thread. So every Python thread gets its own profiler, and at exit (the master
stops cleanly on SIGTERM) their statistics are merged into OUT (pstats format)."""

from __future__ import annotations

import cProfile
import pstats
import signal
import sys
import threading
from typing import Any

__all__ = ["main"]

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _profile_threads() -> None:
    original = threading.Thread.run

    def run(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
        prof = cProfile.Profile()
        with _lock:
            _profiles.append(prof)
        prof.enable()
        try:
            original(self, *args, **kwargs)
        finally:
            prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    _profile_threads()
    # Until the master installs its own SIGTERM handler (just after it starts serving), a
    # SIGTERM would end the process before the stats are written: end it as Ctrl-C instead.
    signal.signal(signal.SIGTERM, _interrupt)
    from cloudai.cli.main import main as cloudai_main

    prof = cProfile.Profile()
    prof.enable()
    try:
        code = cloudai_main(argv)
    finally:
        prof.disable()
        stats = pstats.Stats(prof)
        with _lock:
            for p in _profiles:
                if p.getstats():
                    stats.add(p)
        stats.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main())
