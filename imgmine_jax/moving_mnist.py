"""Moving MNIST: two digits bouncing inside a 64x64 canvas (Srivastava et al., 2015).

The standard recipe: every sequence has ``num_frames = 20`` frames (10 observed, 10 to
predict) of a ``64x64`` canvas holding two 28x28 MNIST digits. Each digit starts at a
uniformly random position, moves in a uniformly random direction at
``step_length = 0.1`` of the free range per frame (3.6 pixels), and bounces off the
walls, so a digit never leaves the canvas. Overlapping digits combine with ``max``.

A sequence is stored compactly -- its two digit images and their top-left position
in every frame -- and rendered when needed: :meth:`MovingMnist.frames` in numpy, or
:func:`render` inside a jitted training step. So tens of thousands of sequences cost a
few MB (instead of 80 KB each as frames) and the training data never leaves the device.

Digits come from the split that is passed in: training sequences are built from
MNIST *train* digits only and test sequences from MNIST *test* digits only, so no test
digit image is ever seen in training. Everything is deterministic in ``seed``.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from imgmine_jax import validate
from imgmine_jax.data import ImageDataset

CANVAS = 64
NUM_FRAMES = 20
NUM_OBSERVED = 10
NUM_DIGITS = 2
STEP_LENGTH = 0.1


@dataclasses.dataclass(frozen=True)
class MovingMnist:
    """A set of Moving MNIST sequences, stored as digits + trajectories.

    ``digits`` is uint8 ``(N, D, h, w)`` (the D digit images of every sequence),
    ``positions`` int32 ``(N, T, D, 2)`` the (row, column) of each digit's top-left
    corner in every frame, ``digit_indices`` int ``(N, D)`` the indices of the digits
    in their source split (named by ``source``), ``labels`` their classes.
    """

    digits: np.ndarray
    positions: np.ndarray
    digit_indices: np.ndarray
    labels: np.ndarray
    source: str
    canvas: int = CANVAS
    num_observed: int = NUM_OBSERVED

    def __post_init__(self):
        if not isinstance(self.digits, np.ndarray) or self.digits.ndim != 4:
            validate.fail("MovingMnist(digits)", self.digits, "a uint8 array (N, D, h, w)", TypeError)
        n, d = self.digits.shape[:2]
        validate.integer(self.canvas, "MovingMnist(canvas)", min=max(self.digits.shape[2:]))
        validate.integer(self.num_observed, "MovingMnist(num_observed)")
        if self.digits.dtype != np.uint8 or self.digits.ndim != 4:
            raise ValueError(f"digits must be uint8 (N, D, h, w); got {self.digits.dtype} {self.digits.shape}")
        if self.positions.shape[:1] != (n,) or self.positions.shape[2:] != (d, 2):
            raise ValueError(f"positions must have shape (N={n}, T, D={d}, 2); got {self.positions.shape}")
        if not 0 < self.num_observed < self.num_frames:
            raise ValueError(f"num_observed must be in [1, {self.num_frames - 1}]; got {self.num_observed}")
        validate.moving_mnist_arrays(self)

    def __len__(self) -> int:
        return len(self.digits)

    @property
    def num_frames(self) -> int:
        return self.positions.shape[1]

    def take(self, indices) -> "MovingMnist":
        """The sequences at ``indices`` (an int array or a slice)."""
        return dataclasses.replace(self, digits=self.digits[indices], positions=self.positions[indices],
                                   digit_indices=self.digit_indices[indices], labels=self.labels[indices])

    def head(self, n: int | None) -> "MovingMnist":
        """The first ``n`` sequences (all when ``n`` is None)."""
        return self if n is None else self.take(slice(0, validate.integer(n, "MovingMnist.head(n)", min=1)))

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``{"digits", "positions"}`` dict a training task renders from (see :func:`render`)."""
        return {"digits": self.digits, "positions": self.positions}

    def frames(self, indices=None) -> np.ndarray:
        """Rendered frames, uint8 ``(N, T, canvas, canvas)`` (all sequences, or ``indices``)."""
        seqs = self if indices is None else self.take(indices)
        n, t = len(seqs), seqs.num_frames
        h, w = seqs.digits.shape[2:]
        out = np.zeros((n, t, self.canvas, self.canvas), np.uint8)
        for i in range(n):
            for f in range(t):
                for d in range(seqs.digits.shape[1]):
                    r, c = seqs.positions[i, f, d]
                    view = out[i, f, r:r + h, c:c + w]
                    np.maximum(view, seqs.digits[i, d], out=view)
        return out


def trajectories(rng: np.random.Generator, num_sequences: int, num_frames: int = NUM_FRAMES,
                 num_digits: int = NUM_DIGITS, free_range: int = CANVAS - 28,
                 step_length: float = STEP_LENGTH) -> np.ndarray:
    """Bouncing top-left positions, int32 ``(N, T, D, 2)`` in ``[0, free_range]``.

    The original generator's update: position in [0, 1], a random direction, one step
    of ``step_length`` *before* each frame; on leaving [0, 1] the position is clamped
    and that velocity component reversed. Pixel positions are ``floor(free_range * p)``.
    """
    validate.trajectories_call(rng, num_sequences, num_frames, num_digits, free_range, step_length)
    shape = (num_sequences, num_digits)
    pos = rng.random(shape + (2,))
    theta = rng.random(shape) * 2 * np.pi
    vel = np.stack([np.sin(theta), np.cos(theta)], axis=-1)
    out = np.empty((num_sequences, num_frames, num_digits, 2), np.int32)
    for f in range(num_frames):
        pos = pos + vel * step_length
        low, high = pos <= 0.0, pos >= 1.0
        vel = np.where(low | high, -vel, vel)
        pos = np.clip(pos, 0.0, 1.0)
        out[:, f] = (free_range * pos).astype(np.int32)
    return out


def generate(source: ImageDataset, num_sequences: int, seed: int = 0, *, num_frames: int = NUM_FRAMES,
             num_observed: int = NUM_OBSERVED, num_digits: int = NUM_DIGITS, canvas: int = CANVAS,
             step_length: float = STEP_LENGTH) -> MovingMnist:
    """``num_sequences`` Moving MNIST sequences whose digits are drawn from ``source``.

    Pass MNIST's train split for training sequences and its test split for test
    sequences. The same ``(source, num_sequences, seed)`` gives the same sequences; for
    a smaller set from the same draw use :meth:`MovingMnist.head`.
    """
    if not isinstance(num_sequences, (int, np.integer)) or num_sequences < 1:
        raise ValueError(f"num_sequences must be a positive integer; got {num_sequences!r}")
    validate.generate_call(source, seed, num_frames, num_observed, num_digits, canvas, step_length)
    if source.images.shape[-1] != 1:
        raise ValueError(f"Moving MNIST needs single-channel digits; got images of shape {source.image_shape}")
    h, w = source.image_shape[:2]
    if canvas < max(h, w):
        raise ValueError(f"canvas={canvas} must be at least the digit size {h}x{w}")
    if h != w:
        raise ValueError(f"digits must be square; got {h}x{w}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(source), size=(num_sequences, num_digits))
    pos = trajectories(rng, num_sequences, num_frames, num_digits, canvas - h, step_length)
    return MovingMnist(digits=source.images[idx][..., 0], positions=pos, digit_indices=idx,
                       labels=source.labels[idx], source=f"{source.name}/{source.split}",
                       canvas=canvas, num_observed=num_observed)


def render(digits: jax.Array, positions: jax.Array, canvas: int = CANVAS) -> jax.Array:
    """Frames as float32 in [0, 1], ``(N, T, canvas, canvas, 1)``, inside ``jit``.

    ``digits`` uint8 ``(N, D, h, w)``; ``positions`` int ``(N, T, D, 2)``. Each digit is
    placed with two one-hot placement matrices (``rows @ digit @ cols.T``): a batched
    matmul, exact for one-hot factors, and far cheaper on XLA:CPU than a scatter.
    """
    h, w = digits.shape[-2:]
    grid = jnp.arange(canvas)
    rows = (grid[:, None] == positions[..., 0, None, None] + jnp.arange(h)).astype(jnp.float32)  # N T D C h
    cols = (grid[:, None] == positions[..., 1, None, None] + jnp.arange(w)).astype(jnp.float32)  # N T D C w
    placed = jnp.einsum("ntdch,ndhw,ntdew->ntdce", rows, digits.astype(jnp.float32), cols,
                        precision=jax.lax.Precision.HIGHEST)
    return (placed.max(axis=2) / 255.0)[..., None]


def frames_float(frames: np.ndarray) -> np.ndarray:
    """uint8 frames -> float32 in [0, 1] (the scale the MSE convention is defined on)."""
    return np.asarray(frames, np.float32) / 255.0
