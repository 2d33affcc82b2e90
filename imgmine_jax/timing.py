"""Honest timings on a noisy machine: warm up (compile), then the median of repeats."""
from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np


def median_seconds(fn: Callable[..., Any], *args, repeats: int = 10, warmup: int = 1) -> float:
    """Median wall time of ``fn(*args)`` over ``repeats`` calls, waiting for device results."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
