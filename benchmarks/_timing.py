"""Timing primitives shared by the main benchmark process and the peer worker (stdlib only)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def sample(run: Callable[[], Any], number: int) -> tuple[float, float]:
    """``(wall, cpu)`` seconds per call of ``run``, averaged over ``number`` back-to-back calls.

    ``cpu`` is this process's CPU time (all its threads): on a shared machine it leaves out the
    time the single-threaded contender spent descheduled by other tenants, which wall-clock
    time includes. Garbage is collected before and the collector is paused during the sample
    (as ``timeit`` does), so a collection triggered by one contender is not billed to the next.
    """
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(number):
            run()
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        return wall / number, cpu / number
    finally:
        gc.enable()


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def paired_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of per-round ratios ``values[i] / baseline[i]`` (rounds were interleaved)."""
    return median([v / b for v, b in zip(values, baseline)])


def spread(values: Sequence[float]) -> tuple[float, float]:
    """The lower and upper quartiles (the median of each half for short lists)."""
    ordered = sorted(values)
    half = len(ordered) // 2
    if half == 0:
        return ordered[0], ordered[0]
    return median(ordered[:half]), median(ordered[-half:])
