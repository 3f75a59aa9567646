"""Shared helpers of the benchmarks: CPU time, peak memory growth, interleaved rounds."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRSS:
    """Samples the resident set size every 2 ms; ``growth`` is the peak minus the start."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def interleaved(methods: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, Any]]:
    """Run every method once per round, in turn; return median CPU s, peak MB, last result.

    A method that raises is recorded with its error message and not run again.
    """
    stats: dict[str, dict[str, Any]] = {k: {"cpu": [], "mb": [], "error": None, "result": None} for k in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            if stats[name]["error"] is not None:
                continue
            try:
                with PeakRSS() as mem:
                    t0 = time.process_time()
                    result = fn()
                    stats[name]["cpu"].append(time.process_time() - t0)
                stats[name]["mb"].append(mem.growth_mb)
                stats[name]["result"] = result
            except Exception as err:  # a peer failing is a result to print, not a crash
                stats[name]["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:150]}"
    for s in stats.values():
        s["median"] = statistics.median(s["cpu"]) if s["cpu"] else float("nan")
        s["peak_mb"] = max(s["mb"]) if s["mb"] else float("nan")
    return stats
