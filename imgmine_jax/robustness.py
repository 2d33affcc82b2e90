"""How classifiers hold up: adversarial attacks (FGSM, PGD) and common corruptions.

Images are *pixel* images, uint8 as :mod:`imgmine_jax.data` stores them or floats on [0, 1].
Attacks and corruptions work on the [0, 1] scale: an attack's ``epsilon`` is an
L-infinity radius as a fraction of the pixel range (``8 / 255``, ``0.1``, ``0.3``; MNIST
papers use 0.1-0.3), and every result is clipped to [0, 1]. The model sees them through
:func:`imgmine_jax.data.normalize_unit`, the same map as training's
:func:`imgmine_jax.data.normalize`, so gradients and the pixel-range clip agree with what
the model was trained on. The functions that return images return them in the space they
were given: float in, float32 out; uint8 in, uint8 out.

The accuracy functions evaluate the float (unrounded) images, in one jitted program per
call for all epsilons or all corruptions, in eval mode (:func:`imgmine_jax.train.apply_batched`).

Randomness (PGD's random start, noise, the direction of a rotation) comes from ``key`` (a
``jax.random.key`` or an integer seed), folded with each image's index: results do not
depend on the batch size.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imgmine_jax import data, validate
from imgmine_jax.train import apply_batched

ATTACKS = ("fgsm", "pgd")
CORRUPTIONS = ("gaussian_noise", "blur", "rotation", "contrast")
SEVERITIES = (1, 2, 3, 4, 5)

#: Parameters of each corruption at severities 1..5. Noise: standard deviation of additive
#: Gaussian noise, in pixel units on [0, 1] (ImageNet-C's values, Hendrycks & Dietterich, 2019).
#: Blur: standard deviation of a Gaussian blur, in pixels (scaled down from ImageNet-C's 224-pixel
#: images to 28). Rotation: degrees, clockwise or anticlockwise at random per image, bilinear,
#: background-filled corners. Contrast: the factor that shrinks each pixel's distance from the
#: image's mean (ImageNet-C's values).
CORRUPTION_PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "blur": (0.5, 0.75, 1.0, 1.5, 2.0),
    "rotation": (10.0, 20.0, 30.0, 45.0, 60.0),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
}
_BLUR_RADIUS = math.ceil(3 * max(CORRUPTION_PARAMETERS["blur"]))


def _keys(key: jax.Array, idx: jax.Array) -> jax.Array:
    """One key per image, from its index in the caller's array."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, idx)


def _cross_entropy(model: nnx.Module, unit: jax.Array, labels: jax.Array) -> jax.Array:
    logits = model(data.normalize_unit(unit))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()


def _correct(model: nnx.Module, unit: jax.Array, labels: jax.Array) -> jax.Array:
    return model(data.normalize_unit(unit)).argmax(-1) == labels


# --------------------------------------------------------------------------- attacks

def _fgsm(model, unit, labels, epsilon):
    """One signed-gradient step of size ``epsilon`` up the loss (Goodfellow et al., 2015)."""
    grads = jax.grad(lambda u: _cross_entropy(model, u, labels))(unit)
    return jnp.clip(unit + epsilon * jnp.sign(grads), 0.0, 1.0)


def _pgd(model, unit, labels, epsilon, keys, steps: int, step_size):
    """Projected gradient descent in the L-infinity ball (Madry et al., 2018): a uniform random
    start in the ball, then ``steps`` signed-gradient steps, each projected back into the ball
    and the pixel range."""
    noise = jax.vmap(lambda k: jax.random.uniform(k, unit.shape[1:], minval=-1.0, maxval=1.0))(keys)
    lo, hi = jnp.clip(unit - epsilon, 0.0, 1.0), jnp.clip(unit + epsilon, 0.0, 1.0)

    def step(_, adv):
        grads = jax.grad(lambda u: _cross_entropy(model, u, labels))(adv)
        return jnp.clip(adv + step_size * jnp.sign(grads), lo, hi)

    return jax.lax.fori_loop(0, steps, step, jnp.clip(unit + epsilon * noise, lo, hi))


def _pgd_step_size(step_size, epsilon, steps: int):
    """Madry et al.'s 2.5 * epsilon / steps unless given: the ball's diameter can be crossed."""
    return 2.5 * epsilon / steps if step_size is None else step_size


def _check_attack(where: str, model, images, labels, batch_size, steps=1, step_size=None, key=None):
    x, y = validate.probe_call(where, model, images, labels, batch_size)
    steps = validate.integer(steps, f"{where}(steps)", min=1)
    if step_size is not None:
        step_size = validate.number(step_size, f"{where}(step_size)", min=0.0, max=1.0, min_open=True)
    key = validate.rng_key(0 if key is None else key, f"{where}(key)")
    return x, y, steps, step_size, key


def _like_input(adv: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Adversarial float pixels in the space of ``original``. uint8: each pixel's change is
    rounded toward zero (to whole levels), so the result stays within epsilon of the original."""
    if original.dtype != np.uint8:
        return adv.astype(np.float32)
    change = adv.astype(np.float64) * 255.0 - original
    change = np.trunc(change + np.sign(change) * 1e-3)   # 1e-3 level: float32 rounding of the radius
    return np.clip(original + change, 0, 255).astype(np.uint8)


def fgsm(model: nnx.Module, images: np.ndarray, labels: np.ndarray, epsilon: float, *,
         batch_size: int = 500) -> np.ndarray:
    """Fast gradient sign method: ``clip(x + epsilon * sign(grad_x loss), 0, 1)``, untargeted,
    on the cross-entropy of the true labels. ``epsilon`` in [0, 1], a fraction of the pixel range.
    Returns adversarial images of the input's shape and dtype."""
    x, y, *_ = _check_attack("fgsm", model, images, labels, batch_size)
    eps = validate.epsilon(epsilon, "fgsm(epsilon)")
    adv = apply_batched(model, lambda m, b: _fgsm(m, b[0], b[1], eps), (data.to_unit(x), y), batch_size)
    return _like_input(adv, x)


def pgd(model: nnx.Module, images: np.ndarray, labels: np.ndarray, epsilon: float, *, steps: int = 10,
        step_size: float | None = None, key: jax.Array | int | None = None, batch_size: int = 500) -> np.ndarray:
    """L-infinity projected gradient descent, untargeted, with a random start.

    ``epsilon`` in [0, 1] (a fraction of the pixel range); ``step_size`` per step on the same scale
    (default ``2.5 * epsilon / steps``); ``key`` for the random start (default seed 0). Every
    adversarial image is within ``epsilon`` of its original and inside the pixel range.
    Returns adversarial images of the input's shape and dtype."""
    x, y, steps, step_size, key = _check_attack("pgd", model, images, labels, batch_size, steps, step_size, key)
    eps = validate.epsilon(epsilon, "pgd(epsilon)")
    alpha = _pgd_step_size(step_size, eps, steps)

    def fn(m, batch):
        unit, lab, idx = batch
        return _pgd(m, unit, lab, eps, _keys(key, idx), steps, alpha)

    adv = apply_batched(model, fn, (data.to_unit(x), y, np.arange(len(x))), batch_size)
    return _like_input(adv, x)


def accuracy_under_attack(model: nnx.Module, images: np.ndarray, labels: np.ndarray, *, attack: str,
                          epsilons: Sequence[float], steps: int = 10, step_size: float | None = None,
                          key: jax.Array | int | None = None, batch_size: int = 500) -> dict[float, float]:
    """Accuracy on adversarial versions of ``images`` at each epsilon: ``{epsilon: accuracy}``.

    ``attack``: one of :data:`ATTACKS`; ``steps``, ``step_size`` and ``key`` as in :func:`pgd`
    (ignored by FGSM). All epsilons run in one jitted program; FGSM's gradient is computed
    once per image for all of them, and epsilon 0 is the clean accuracy (no attack is run).
    """
    where = "accuracy_under_attack"
    validate.choice(attack, f"{where}(attack)", ATTACKS)
    x, y, steps, step_size, key = _check_attack(where, model, images, labels, batch_size, steps, step_size, key)
    eps = validate.epsilons(epsilons, f"{where}(epsilons)")
    # epsilon 0 is the clean accuracy: no attack is run for it
    positive = sorted({e for e in eps if e > 0})
    radii = jnp.asarray(positive or [0.0], jnp.float32)

    def fn(m, batch):
        unit, lab, idx = batch
        if attack == "fgsm":
            signs = jnp.sign(jax.grad(lambda u: _cross_entropy(m, u, lab))(unit))
            adversarial = lambda e: jnp.clip(unit + e * signs, 0.0, 1.0)
        else:
            keys = _keys(key, idx)
            adversarial = lambda e: _pgd(m, unit, lab, e, keys, steps, _pgd_step_size(step_size, e, steps))
        attacked = jax.lax.map(lambda e: _correct(m, adversarial(e), lab), radii).T      # (B, radii)
        return jnp.concatenate([_correct(m, unit, lab)[:, None], attacked], axis=1)

    accuracy = apply_batched(model, fn, (data.to_unit(x), y, np.arange(len(x))), batch_size).mean(axis=0)
    by_radius = {0.0: float(accuracy[0]), **{e: float(a) for e, a in zip(positive, accuracy[1:])}}
    return {e: by_radius[e] for e in eps}


# --------------------------------------------------------------------------- corruptions

def _rotate_one(image: jax.Array, degrees: jax.Array) -> jax.Array:
    """``(H, W, C)`` rotated about its centre, bilinear, background (0) outside the image."""
    h, w, _ = image.shape
    theta = -jnp.deg2rad(degrees)   # rows run downwards: this turns the image anticlockwise as shown
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # where each output pixel comes from: the inverse rotation of its coordinates
    src_r = jnp.cos(theta) * (rows - cy) - jnp.sin(theta) * (cols - cx) + cy
    src_c = jnp.sin(theta) * (rows - cy) + jnp.cos(theta) * (cols - cx) + cx
    resample = lambda channel: jax.scipy.ndimage.map_coordinates(channel, [src_r, src_c], order=1, mode="constant",
                                                                 cval=0.0)
    return jax.vmap(resample, in_axes=2, out_axes=2)(image)


def _blur(unit: jax.Array, sigma: jax.Array) -> jax.Array:
    """Separable Gaussian blur of ``(N, H, W, C)`` with standard deviation ``sigma`` pixels (0: none),
    edges extended by reflection. The kernel has a fixed radius, so ``sigma`` may be traced."""
    r = _BLUR_RADIUS
    offsets = jnp.arange(-r, r + 1, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * (offsets / jnp.maximum(sigma, 1e-6)) ** 2)
    weights = jnp.where(sigma > 0, weights, (offsets == 0).astype(jnp.float32))
    weights = weights / weights.sum()
    h, w = unit.shape[1:3]
    padded = jnp.pad(unit, ((0, 0), (r, r), (0, 0), (0, 0)), mode="reflect")
    unit = sum(weights[k] * padded[:, k:k + h] for k in range(2 * r + 1))
    padded = jnp.pad(unit, ((0, 0), (0, 0), (r, r), (0, 0)), mode="reflect")
    return sum(weights[k] * padded[:, :, k:k + w] for k in range(2 * r + 1))


def _corrupt(unit: jax.Array, params: jax.Array, keys: jax.Array) -> jax.Array:
    """Apply ``params = (noise sigma, blur sigma, degrees, contrast factor)``; identity values
    ``(0, 0, 0, 1)`` leave every pixel exactly as it was."""
    noise_sigma, blur_sigma, degrees, contrast = params
    sign_key, noise_key = jax.vmap(jax.random.split, out_axes=1)(keys)
    signs = jnp.where(jax.vmap(lambda k: jax.random.bernoulli(k))(sign_key), 1.0, -1.0)
    unit = jax.vmap(_rotate_one)(unit, signs * degrees)
    unit = _blur(unit, blur_sigma)
    mean = unit.mean(axis=(1, 2, 3), keepdims=True)
    unit = unit * contrast + mean * (1.0 - contrast)
    noise = jax.vmap(lambda k: jax.random.normal(k, unit.shape[1:]))(noise_key)
    return jnp.clip(unit + noise_sigma * noise, 0.0, 1.0)


def corruption_parameters(kind: str, severity: int) -> np.ndarray:
    """``(noise sigma, blur sigma, degrees, contrast factor)`` of ``kind`` at ``severity`` (1..5);
    the others at their identity values. ``kind="clean"`` (severity ignored) is the identity."""
    validate.choice(kind, "corruption kind", ("clean",) + CORRUPTIONS)
    params = {"gaussian_noise": 0.0, "blur": 0.0, "rotation": 0.0, "contrast": 1.0}
    if kind != "clean":
        severity = validate.integer(severity, "corruption severity", min=1, max=5)
        params[kind] = CORRUPTION_PARAMETERS[kind][severity - 1]
    return np.array([params[k] for k in CORRUPTIONS], np.float32)


_corrupt_jit = jax.jit(lambda unit, params, key, idx: _corrupt(unit, params, _keys(key, idx)))
_rotate_jit = jax.jit(jax.vmap(_rotate_one))


def corrupt(images: np.ndarray, kind: str, severity: int, *, key: jax.Array | int) -> np.ndarray:
    """``images`` with corruption ``kind`` (one of :data:`CORRUPTIONS`) at ``severity`` 1..5
    (:data:`CORRUPTION_PARAMETERS`), clipped to the pixel range; same shape and dtype as the input
    (uint8 rounded to the nearest level). ``key`` draws the noise and the rotation directions."""
    x = validate.pixel_images(images, "corrupt(images)")
    validate.choice(kind, "corrupt(kind)", CORRUPTIONS)
    params = corruption_parameters(kind, validate.integer(severity, "corrupt(severity)", min=1, max=5))
    out = _corrupt_jit(data.to_unit(x), params, validate.rng_key(key, "corrupt(key)"), np.arange(len(x)))
    return data.from_unit(np.asarray(out), x.dtype)


def rotate(images: np.ndarray, degrees: float | np.ndarray) -> np.ndarray:
    """``images`` rotated anticlockwise by ``degrees`` (one number, or one per image) about their
    centres: bilinear, background (0) where the rotated image does not reach; same dtype out.
    Rotating by 0 returns the images unchanged."""
    x = validate.pixel_images(images, "rotate(images)")
    angles = validate.array(degrees, "rotate(degrees)", ndim=(0, 1), dtype="number", finite=True)
    if angles.ndim == 1 and len(angles) != len(x):
        raise ValueError(f"rotate(degrees) must be one angle or one per image ({len(x)}); got {len(angles)}")
    angles = np.broadcast_to(angles.astype(np.float32), (len(x),))
    out = _rotate_jit(data.to_unit(x), angles)
    return data.from_unit(np.asarray(out), x.dtype)


def accuracy_under_corruptions(model: nnx.Module, images: np.ndarray, labels: np.ndarray, *,
                               kinds: Sequence[str] = CORRUPTIONS, severities: Sequence[int] = (1, 3, 5),
                               key: jax.Array | int, batch_size: int = 1000) -> dict[str, dict[int, float]]:
    """Accuracy on corrupted copies of ``images``: ``{"clean": {0: accuracy}, kind: {severity:
    accuracy}}`` for each kind and severity, all in one jitted program (one compilation)."""
    where = "accuracy_under_corruptions"
    x, y = validate.probe_call(where, model, images, labels, batch_size)
    if isinstance(kinds, str) or not hasattr(kinds, "__len__") or len(kinds) == 0:
        validate.fail(f"{where}(kinds)", kinds, f"a non-empty list of names from {list(CORRUPTIONS)}")
    kinds = [validate.choice(k, f"{where}(kinds[{i}])", CORRUPTIONS) for i, k in enumerate(kinds)]
    levels = validate.severities(severities, f"{where}(severities)")
    key = validate.rng_key(key, f"{where}(key)")
    rows = [("clean", 0)] + [(k, s) for k in kinds for s in levels]
    table = jnp.asarray(np.stack([corruption_parameters(k, s) for k, s in rows]))

    def fn(m, batch):
        unit, lab, idx = batch
        keys = _keys(key, idx)
        return jax.lax.map(lambda p: _correct(m, _corrupt(unit, p, keys), lab), table).T     # (B, rows)

    accuracy = apply_batched(model, fn, (data.to_unit(x), y, np.arange(len(x))), batch_size).mean(axis=0)
    results: dict[str, dict[int, float]] = {}
    for (kind, severity), a in zip(rows, accuracy):
        results.setdefault(kind, {})[severity] = float(a)
    return results
