"""What a classifier looks at: gradient saliency, integrated gradients, occlusion, and the
deletion curve that checks whether such maps mean anything.

Every function takes a classifier (``SeedCNN``, ``ResNet``: normalised ``(N, H, W, C)``
images -> logits), *pixel* images -- uint8 as :mod:`imgmine_jax.data` stores them, or
floats on [0, 1] -- and one true label per image, and explains the model's output for the
true class. The model runs in eval mode (running batch-norm statistics, no dropout),
jitted and in fixed-size batches (:func:`imgmine_jax.train.apply_batched`).

Gradients are taken with respect to pixel intensity on the [0, 1] scale (the map into the
model's [-1, 1] inputs, :func:`imgmine_jax.data.normalize_unit`, is part of the function
differentiated), so an attribution is "logit per unit of pixel intensity" whatever the
model's own input scaling.

The *background* is pixel value 0 (black): the background of MNIST and Fashion-MNIST, the
value :func:`imgmine_jax.train.random_shift` fills with. It is the default baseline of
integrated gradients, the default occlusion patch and what a deleted pixel becomes.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imgmine_jax import data, validate
from imgmine_jax.train import apply_batched

BACKGROUND = 0.0   # pixel value on [0, 1] of an empty region (black)


def true_class_logits(model: nnx.Module, unit: jax.Array, labels: jax.Array) -> jax.Array:
    """The logit of ``labels`` for float pixel images ``unit`` on [0, 1]: ``(N,)``."""
    logits = model(data.normalize_unit(unit))
    return jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]


def _true_class_probabilities(model: nnx.Module, unit: jax.Array, labels: jax.Array) -> jax.Array:
    probs = jax.nn.softmax(model(data.normalize_unit(unit)), axis=-1)
    return jnp.take_along_axis(probs, labels[:, None], axis=1)[:, 0]


def _pixel_fill(value, name: str) -> float:
    """A fill or baseline pixel value on [0, 1] (None: the background)."""
    return BACKGROUND if value is None else validate.number(value, name, min=0.0, max=1.0)


# --------------------------------------------------------------------------- gradients

def saliency(model: nnx.Module, images: np.ndarray, labels: np.ndarray, *,
             batch_size: int = 256) -> np.ndarray:
    """Gradient saliency (Simonyan et al., 2014): ``|d logit_y / d pixel|``, maximum over channels.

    Returns float32 ``(N, H, W)``, >= 0; zero where the true-class logit does not depend on the pixel.
    """
    x, y = validate.probe_call("saliency", model, images, labels, batch_size)

    def fn(m, batch):
        unit, lab = batch
        grads = jax.grad(lambda u: true_class_logits(m, u, lab).sum())(unit)
        return jnp.abs(grads).max(axis=-1)

    return apply_batched(model, fn, (data.to_unit(x), y), batch_size)


def _baseline_images(baseline, x: np.ndarray, where: str) -> np.ndarray:
    """The baseline as float pixels of ``x``'s shape: None -> background, a number -> a flat
    image of it, an array -> pixel images of one image's or of the batch's shape."""
    if baseline is None or validate.is_number(baseline):
        return np.full(x.shape, _pixel_fill(baseline, f"{where}(baseline)"), np.float32)
    b = validate.array(baseline, f"{where}(baseline)", ndim=(3, 4), dtype="number")
    b = validate.pixel_images(b[None] if b.ndim == 3 else b, f"{where}(baseline)", image_shape=x.shape[1:])
    if len(b) not in (1, len(x)):
        raise ValueError(f"{where}(baseline) must be one image or one per image ({len(x)}); got {len(b)}")
    return np.broadcast_to(data.to_unit(b), x.shape).copy()


def integrated_gradients(model: nnx.Module, images: np.ndarray, labels: np.ndarray, *, steps: int = 32,
                         baseline: float | np.ndarray | None = None, batch_size: int = 16) -> np.ndarray:
    """Integrated gradients (Sundararajan et al., 2017) of the true-class logit.

    ``(x - x') * mean_k grad f(x' + a_k (x - x'))`` with the midpoint rule, ``a_k = (k + 1/2) / steps``,
    along the straight path from the baseline ``x'`` to the image ``x`` (pixels on [0, 1]).
    ``baseline``: None (default) is the all-background (black) image; a number is a flat image of
    that pixel value on [0, 1]; an array is one baseline image or one per image (pixel images).

    Returns float32 ``(N, H, W, C)``. By completeness the attributions of an image sum to
    ``f(x) - f(x')`` up to the quadrature error, which shrinks as ``steps`` grows
    (:func:`completeness_gap`). Each batch differentiates ``batch_size * steps`` path points at once.
    """
    x, y = validate.probe_call("integrated_gradients", model, images, labels, batch_size)
    steps = validate.integer(steps, "integrated_gradients(steps)", min=1)
    base = _baseline_images(baseline, x, "integrated_gradients")
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps

    def fn(m, batch):
        unit, start, lab = batch
        delta = unit - start
        path = start[:, None] + alphas[None, :, None, None, None] * delta[:, None]   # (B, steps, H, W, C)
        flat = path.reshape(-1, *unit.shape[1:])
        grads = jax.grad(lambda p: true_class_logits(m, p, jnp.repeat(lab, steps)).sum())(flat)
        return delta * grads.reshape(path.shape).mean(axis=1)

    return apply_batched(model, fn, (data.to_unit(x), base, y), batch_size)


def completeness_gap(model: nnx.Module, images: np.ndarray, labels: np.ndarray, attributions: np.ndarray, *,
                     baseline: float | np.ndarray | None = None, batch_size: int = 256) -> dict[str, np.ndarray]:
    """How far integrated-gradient ``attributions`` are from completeness, per image.

    Returns ``{"sum": attributions summed over the image, "difference": f(x) - f(x'),
    "gap": sum - difference}``, each float ``(N,)``, with ``f`` the true-class logit and ``x'``
    the same ``baseline`` as given to :func:`integrated_gradients`.
    """
    x, y = validate.probe_call("completeness_gap", model, images, labels, batch_size)
    attr = validate.array(attributions, "completeness_gap(attributions)", ndim=4, dtype="float", finite=True)
    if attr.shape != x.shape:
        raise ValueError(f"completeness_gap(attributions) must have the images' shape {x.shape}; got {attr.shape}")
    base = _baseline_images(baseline, x, "completeness_gap")

    def fn(m, batch):
        unit, start, lab = batch
        return true_class_logits(m, unit, lab) - true_class_logits(m, start, lab)

    difference = apply_batched(model, fn, (data.to_unit(x), base, y), batch_size)
    total = attr.sum(axis=(1, 2, 3), dtype=np.float64)
    return {"sum": total, "difference": difference.astype(np.float64), "gap": total - difference}


# --------------------------------------------------------------------------- occlusion

def _patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Patch offsets every ``stride`` pixels, plus a last one flush with the edge if needed."""
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else starts + [size - patch]


def occlusion_masks(height: int, width: int, patch: int, stride: int) -> np.ndarray:
    """Boolean ``(P, H, W)``: the square patches :func:`occlusion` hides, one per position."""
    masks = []
    for top in _patch_starts(height, patch, stride):
        for left in _patch_starts(width, patch, stride):
            m = np.zeros((height, width), bool)
            m[top:top + patch, left:left + patch] = True
            masks.append(m)
    return np.stack(masks)


def occlusion(model: nnx.Module, images: np.ndarray, labels: np.ndarray, *, patch: int = 4, stride: int = 2,
              fill: float | None = None, batch_size: int = 16, positions_per_pass: int = 32) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus, 2014): the drop in true-class probability when a
    ``patch`` x ``patch`` square is set to ``fill``, averaged over the patches covering each pixel.

    Patches sit every ``stride`` pixels (``stride <= patch``, so every pixel is covered), and flush
    with the right and bottom edges; ``fill`` is a pixel value on [0, 1], default the background
    (black). A patch that is already all ``fill`` changes nothing, so its pixels get exactly 0.
    Positive: hiding the pixel hurts the true class; negative: it helps. Returns float32 ``(N, H, W)``.

    Each image is classified once per position, ``positions_per_pass`` positions at a time.
    """
    x, y = validate.probe_call("occlusion", model, images, labels, batch_size)
    h, w = x.shape[1:3]
    patch = validate.integer(patch, "occlusion(patch)", min=1, max=min(h, w))
    stride = validate.integer(stride, "occlusion(stride)", min=1, max=patch)   # larger: pixels no patch covers
    value = _pixel_fill(fill, "occlusion(fill)")
    chunk = validate.integer(positions_per_pass, "occlusion(positions_per_pass)", min=1)
    masks = occlusion_masks(h, w, patch, stride)
    coverage = masks.sum(axis=0)
    # the unoccluded image is "position" 0: it goes through the same program as every patch,
    # so an occlusion that changes no pixel changes no bit of the probability either
    with_clean = jnp.asarray(np.concatenate([np.zeros((1, h, w), bool), masks]))

    def fn(m, batch):
        unit, lab = batch
        hidden = lambda mask: _true_class_probabilities(m, jnp.where(mask[None, :, :, None], value, unit), lab)
        probs = jax.lax.map(hidden, with_clean, batch_size=chunk)            # (1 + P, B)
        drops = probs[0][None] - probs[1:]
        return jnp.einsum("pb,phw->bhw", drops, masks.astype(np.float32)) / coverage

    return apply_batched(model, fn, (data.to_unit(x), y), batch_size)


# --------------------------------------------------------------------------- the check

def deletion_curve(model: nnx.Module, images: np.ndarray, labels: np.ndarray, maps: np.ndarray, *,
                   fractions: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5), key: jax.Array | int,
                   fill: float | None = None, batch_size: int = 256) -> dict[str, list[float]]:
    """Accuracy as the most-attributed pixels are deleted, against deleting random pixels.

    For each fraction ``f``, the ``round(f * H * W)`` pixels with the largest ``maps`` value
    of each image (ties in random order) are set to ``fill`` (default: the background), and
    so, separately, are as many pixels chosen uniformly at random (from ``key``, per image, so
    results do not depend on the batch size). If a map points at what the model uses,
    accuracy falls faster than under random deletion (Samek et al., 2017). Note that random
    deletion mostly hits pixels that are already background on MNIST-like images.

    ``maps``: ``(N, H, W)``, or ``(N, H, W, C)`` summed over channels; larger = more important
    (pass ``abs`` of signed attributions to rank by magnitude).
    Returns ``{"fractions", "attributed", "random"}``: lists of floats, accuracy on [0, 1].
    """
    x, y = validate.probe_call("deletion_curve", model, images, labels, batch_size)
    scores = validate.array(maps, "deletion_curve(maps)", ndim=(3, 4), dtype="number", finite=True)
    if scores.ndim == 4:
        scores = scores.sum(axis=-1)
    if scores.shape != x.shape[:3]:
        raise ValueError(f"deletion_curve(maps) must be one (H, W) map per image, shape {x.shape[:3]}; "
                         f"got {scores.shape}")
    fracs = validate.fractions(fractions, "deletion_curve(fractions)")
    key = validate.rng_key(key, "deletion_curve(key)")
    value = _pixel_fill(fill, "deletion_curve(fill)")
    n, h, w, _ = x.shape
    counts = [int(round(f * h * w)) for f in fracs]

    def fn(m, batch):
        unit, lab, score, idx = batch
        b = unit.shape[0]
        noise = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), (h * w,)))(idx)
        # rank 0 = deleted first; lexsort's last key is the primary one
        by_map = jnp.argsort(jax.vmap(lambda s, r: jnp.lexsort((r, -s)))(score.reshape(b, -1), noise), axis=1)
        by_chance = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
        ranks = jnp.stack([by_map, by_chance])                                   # (2, B, H * W)

        def correct_after(count):
            deleted = jnp.where((ranks < count).reshape(2 * b, h, w, 1), value, jnp.concatenate([unit, unit]))
            return (m(data.normalize_unit(deleted)).argmax(-1) == jnp.concatenate([lab, lab])).reshape(2, b)

        return jax.lax.map(correct_after, jnp.asarray(counts)).transpose(2, 0, 1)   # (B, fractions, 2)

    correct = apply_batched(model, fn, (data.to_unit(x), y, scores.astype(np.float32), np.arange(n)), batch_size)
    accuracy = correct.mean(axis=0)
    return {"fractions": fracs, "attributed": [float(a) for a in accuracy[:, 0]],
            "random": [float(a) for a in accuracy[:, 1]]}
