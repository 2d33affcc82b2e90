"""Layers, the convolution the classifiers use, and input checks shared by the model families."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 over ``(N, H, W, C)``; an odd last row/column is dropped.

    Written as reshape + max: same result as ``nnx.max_pool(x, (2, 2), (2, 2))``, but its
    gradient is a cheap masked broadcast instead of XLA:CPU's slow ``select_and_scatter``.
    """
    n, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides, padding,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None,
                         out_sharding=None) -> jax.Array:
    """``lax.conv_general_dilated`` that stays fast under ``jax.vmap`` on XLA:CPU.

    Pass it to ``nnx.Conv(..., conv_general_dilated=conv_general_dilated)``. Outside ``vmap``
    it computes exactly what ``lax.conv_general_dilated`` computes (same operations, same
    gradients). What changes is how it is batched on the CPU backend:

    ``train.sweep`` vmaps the training step over stacked model states, so from the second
    convolution on both the input and the kernel carry the member axis. JAX's batching rule
    turns that into one *grouped* convolution (``feature_group_count`` x M), for which XLA:CPU
    has no fast kernel: for SeedCNN's conv2 at 8 members it cost several times one ordinary
    convolution per member. Here, when input and kernel are both batched, the member axis is
    unrolled into M ordinary convolutions, forward and backward; when only the kernel is
    batched (a shared input, e.g. the images into the first layer) or only the input, JAX's
    own rule already makes one wide ordinary convolution and is kept. That made the sweep's
    steps faster, though on a 2-core CPU still not faster than training the members one after
    another (cache footprint); the measurements are in ``benchmarks/cpu_probes.md`` and
    ``benchmarks/sweep_probe.py``.

    The choice is made at trace time from ``jax.default_backend()``: on GPU/TPU grouped
    convolutions are fast and the function is plain ``lax.conv_general_dilated``.
    The unrolled program grows with M (one convolution per member and layer), which is
    fine for sweeps of a few to a few dozen members.
    """
    conv = functools.partial(
        lax.conv_general_dilated, window_strides=window_strides, padding=padding,
        lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, batch_group_count=batch_group_count,
        precision=precision, preferred_element_type=preferred_element_type)
    if jax.default_backend() != "cpu" or out_sharding is not None:
        return conv(lhs, rhs, out_sharding=out_sharding)
    return _conv_with_member_loop(conv, lhs, rhs)


def _conv_with_member_loop(conv, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """``conv(lhs, rhs)`` whose forward and both backward convolutions are batched by
    :func:`_loop_when_both_batched`.

    A ``custom_vjp`` is needed because ``custom_vmap`` functions can be differentiated
    forward but not transposed: the backward pass is spelled out as two more convolutions,
    each the transpose of ``conv`` that JAX's autodiff would produce.
    """
    lhs_shape = jax.ShapeDtypeStruct(lhs.shape, lhs.dtype)
    rhs_shape = jax.ShapeDtypeStruct(rhs.shape, rhs.dtype)
    forward = _loop_when_both_batched(conv)
    grad_lhs = _loop_when_both_batched(
        lambda w, g: jax.linear_transpose(lambda x: conv(x, w), lhs_shape)(g)[0])
    grad_rhs = _loop_when_both_batched(
        lambda x, g: jax.linear_transpose(lambda w: conv(x, w), rhs_shape)(g)[0])

    @jax.custom_vjp
    def f(x, w):
        return forward(x, w)

    def f_fwd(x, w):
        return forward(x, w), (x, w)

    def f_bwd(res, g):
        x, w = res
        return grad_lhs(w, g), grad_rhs(x, g)

    f.defvjp(f_fwd, f_bwd)
    return f(lhs, rhs)


def _loop_when_both_batched(fn):
    """``fn(a, b)`` whose ``vmap`` runs ``fn`` once per member (a Python-unrolled loop,
    results stacked) when both arguments are batched, and is ordinary ``vmap`` otherwise."""
    @jax.custom_batching.custom_vmap
    def looped(a, b):
        return fn(a, b)

    @looped.def_vmap
    def rule(axis_size, in_batched, a, b):
        a_batched, b_batched = in_batched
        if a_batched and b_batched:
            # Batch axes are at 0 here. Calling `looped` (not `fn`) per member keeps this
            # rule for an enclosing vmap, if any.
            out = jnp.stack([looped(a[i], b[i]) for i in range(axis_size)])
        else:
            out = jax.vmap(fn, in_axes=(0 if a_batched else None, 0 if b_batched else None))(a, b)
        return out, True

    return looped


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


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
    """``(N, H, W, C)`` -> ``(N, H/b, W/b, b*b*C)``: each b x b patch becomes one vector."""
    n, h, w, c = x.shape
    if h % block or w % block:
        raise ValueError(f"space_to_depth needs height and width divisible by {block}; got {h}x{w}")
    x = x.reshape(n, h // block, block, w // block, block, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // block, w // block, block * block * c)


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
    """``(N, H, W, C * block**2) -> (N, H * block, W * block, C)``: channels become pixel blocks
    (the inverse of :func:`space_to_depth`)."""
    n, h, w, c = x.shape
    if c % (block * block):
        raise ValueError(f"depth_to_space needs channels divisible by {block * block}; got {c}")
    c //= block * block
    x = x.reshape(n, h, w, block, block, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * block, w * block, c)
