"""Layers and input checks shared by the model families."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 over ``(N, H, W, C)``; an odd last row/column is dropped.

    Written as reshape + max: same result as ``nnx.max_pool(x, (2, 2), (2, 2))``, but its
    gradient is a cheap masked broadcast instead of XLA:CPU's slow ``select_and_scatter``.
    """
    n, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def check_images(x, expected_hwc: tuple[int, int, int], *, where: str) -> None:
    """Raise a clear error if ``x`` is not a float batch of images of shape ``(N, *expected_hwc)``
    with values in [-1, 1] (the range of :func:`imgmine_jax.data.normalize`).

    Shapes and dtypes are checked at trace time, so inside ``jit`` this costs nothing; the
    value range can only be checked on concrete arrays (eager calls), where it is.
    """
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"{where} expects a batch of images of shape (N, {', '.join(map(str, expected_hwc))}); "
                         f"got an input of shape {shape}")
    if tuple(shape[1:]) != tuple(expected_hwc):
        raise ValueError(f"{where} expects images of shape (H, W, C) = {tuple(expected_hwc)}; "
                         f"got {tuple(shape[1:])} (batch shape {tuple(shape)})")
    if not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
        raise TypeError(f"{where} expects floating-point images normalised with "
                        f"imgmine_jax.data.normalize; got dtype {x.dtype}")
    if not isinstance(x, jax.core.Tracer) and x.size:
        lo, hi = float(jnp.min(x)), float(jnp.max(x))
        if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(f"{where} expects images normalised to [-1, 1] with "
                             f"imgmine_jax.data.normalize; got values in [{lo:g}, {hi:g}]")
