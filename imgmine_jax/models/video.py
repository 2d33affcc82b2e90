"""Video predictors for Moving MNIST: a recurrent one and a convolutional baseline.

Both work on *patched* frames: ``patch x patch`` space-to-depth turns a 64x64x1 frame
into a 16x16x16 grid (free, lossless), so every convolution runs at 16x16 and a step is
cheap on a CPU -- the trick of Shi et al. (2015) and of the OpenSTL benchmark.

* :class:`ConvLSTMPredictor` -- a stack of ConvLSTM layers (or PredRNN's spatiotemporal
  LSTM) read one frame per step; a 1x1 convolution of the top state predicts the next
  frame's pixels, or how to move the current frame's pixels (dynamic advection).
  Autoregressive: after the observed frames each prediction is fed back as the next
  input, and :meth:`ConvLSTMPredictor.rollout` can feed the true frame instead
  (scheduled sampling) while training.
* :class:`ConvPredictor` -- SimVP's idea without recurrence: the observed frames,
  encoded frame by frame, are stacked along the channels and a stack of residual 3x3
  convolutions maps them to all future frames at once.

Both return logits (apply a sigmoid for pixel values in [0, 1]); ``model(observed)``
gives the ``future`` frames after the observed ones, so the task of
:mod:`imgmine_jax.sequence` evaluates either the same way.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from imgmine_jax.models.common import depth_to_space, space_to_depth
from imgmine_jax.models.rnn import ConvLSTMCell

CELLS = ("convlstm", "st_lstm")


def _check_patch(frame_size: int, patch: int, where: str) -> None:
    for name, value in (("frame_size", frame_size), ("patch", patch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: {name} must be a positive integer; got {value!r}")
    if frame_size % patch:
        raise ValueError(f"{where}: patch={patch} does not divide frame_size={frame_size}; "
                         f"expected a divisor such as {[d for d in (1, 2, 4, 8) if frame_size % d == 0]}")


def _check_frames(frames: jax.Array, frame_size: int, where: str) -> None:
    if frames.ndim != 5 or frames.shape[2:] != (frame_size, frame_size, 1):
        raise ValueError(f"{where} expects frames of shape (N, T, {frame_size}, {frame_size}, 1); "
                         f"got {frames.shape}")


def _patched(frames: jax.Array, patch: int) -> jax.Array:
    """``(N, T, S, S, 1)`` -> ``(N, T, S/p, S/p, p*p)``."""
    n, t = frames.shape[:2]
    x = space_to_depth(frames.reshape((n * t,) + frames.shape[2:]), patch)
    return x.reshape((n, t) + x.shape[1:])


def _unpatched(x: jax.Array, patch: int) -> jax.Array:
    """``(N, T, g, g, p*p)`` -> ``(N, T, g*p, g*p, 1)``."""
    n, t = x.shape[:2]
    y = depth_to_space(x.reshape((n * t,) + x.shape[2:]), patch)
    return y.reshape((n, t) + y.shape[1:])


class STLSTMCell(nnx.Module):
    """PredRNN's spatiotemporal LSTM cell (Wang et al., 2017), without layer norm.

    Besides the ConvLSTM's temporal memory ``c`` it carries a spatiotemporal memory
    ``m`` that the stack passes *upwards* within a step and from the top layer to the
    bottom one at the next step (the zigzag flow). ``(c, h), m = cell((c, h), m, x)``.
    """

    def __init__(self, in_features: int, hidden: int, kernel_size: int = 3, *, rngs: nnx.Rngs):
        k = (kernel_size, kernel_size)
        self.in_features, self.hidden = in_features, hidden
        self.conv_x = nnx.Conv(in_features, 7 * hidden, k, rngs=rngs)
        self.conv_h = nnx.Conv(hidden, 4 * hidden, k, use_bias=False, rngs=rngs)
        self.conv_m = nnx.Conv(hidden, 3 * hidden, k, use_bias=False, rngs=rngs)
        self.conv_o = nnx.Conv(2 * hidden, hidden, k, use_bias=False, rngs=rngs)
        self.conv_last = nnx.Conv(2 * hidden, hidden, (1, 1), use_bias=False, rngs=rngs)
        bias = self.conv_x.bias
        bias[...] = bias[...].at[hidden:2 * hidden].set(1.0).at[5 * hidden:6 * hidden].set(1.0)  # f, f'

    def __call__(self, carry, m, x):
        c, h = carry
        xi, xf, xg, xi2, xf2, xg2, xo = jnp.split(self.conv_x(x), 7, axis=-1)
        hi, hf, hg, ho = jnp.split(self.conv_h(h), 4, axis=-1)
        mi, mf, mg = jnp.split(self.conv_m(m), 3, axis=-1)
        c = nnx.sigmoid(xf + hf) * c + nnx.sigmoid(xi + hi) * jnp.tanh(xg + hg)
        m = nnx.sigmoid(xf2 + mf) * m + nnx.sigmoid(xi2 + mi) * jnp.tanh(xg2 + mg)
        cm = jnp.concatenate([c, m], axis=-1)
        h = nnx.sigmoid(xo + ho + self.conv_o(cm)) * jnp.tanh(self.conv_last(cm))
        return (c, h), m


OUTPUTS = ("pixels", "advection")


def _logit(p: jax.Array, eps: float = 1e-4) -> jax.Array:
    p = jnp.clip(p, eps, 1.0 - eps)
    return jnp.log(p) - jnp.log1p(-p)


def _shifted(x: jax.Array, k: int, axis: int) -> jax.Array:
    """``(N, H, W)`` -> ``(N, H, W, k)``: the values at offsets ``-k//2..k//2`` along ``axis`` (zero outside)."""
    r = k // 2
    pad = [(0, 0)] * 3
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad)
    size = x.shape[axis]
    return jnp.stack([jax.lax.slice_in_dim(xp, d, d + size, axis=axis) for d in range(k)], axis=-1)


def advect(frame: jax.Array, logits: jax.Array, patch: int) -> jax.Array:
    """Move the pixels of ``frame`` ``(N, S, S, 1)`` by per-patch separable kernels.

    ``logits`` ``(N, S/patch, S/patch, 2k)``: for every patch a softmax over ``k``
    horizontal offsets and one over ``k`` vertical ones; every pixel of the patch takes
    the weighted sum of the pixels at those offsets (first along the row, then along the
    column), i.e. its content comes from there. One-hot weights move the patch exactly
    by whole pixels; the weights being convex, values stay in [0, 1].
    """
    k = logits.shape[-1] // 2
    up = lambda w: jnp.repeat(jnp.repeat(w, patch, axis=1), patch, axis=2)
    wx = up(nnx.softmax(logits[..., :k], axis=-1))
    wy = up(nnx.softmax(logits[..., k:], axis=-1))
    x = frame[..., 0]
    x = jnp.sum(wx * _shifted(x, k, axis=2), axis=-1)
    x = jnp.sum(wy * _shifted(x, k, axis=1), axis=-1)
    return x[..., None]


class ConvLSTMPredictor(nnx.Module):
    """Autoregressive next-frame predictor on patched frames.

    ``model(observed)``: ``(N, T, S, S, 1)`` frames in [0, 1] -> logits of the next
    ``future`` frames ``(N, future, S, S, 1)``, each predicted frame fed back as the next
    input. :meth:`rollout` is the training pass over whole sequences.

    ``cell="convlstm"``: ConvLSTM layers (Shi et al., 2015), each reading the state of
    the one below; ``"st_lstm"``: PredRNN's spatiotemporal LSTM (Wang et al., 2017).

    ``output="pixels"``: a 1x1 convolution of the top state gives the next frame's pixels
    (as logits). ``output="advection"``: it gives, for every patch, where its pixels come
    from -- a softmax over ``advection_kernel`` horizontal and as many vertical offsets --
    and the next frame is the current one moved accordingly (:func:`advect`; the dynamic
    neural advection of Finn et al., 2016, with separable per-patch kernels). A moving
    digit is then carried, not redrawn; the weights start on the centre (the prediction
    starts as "copy the last frame").

    The time loop is unrolled (a Python loop over the 19 steps): XLA:CPU runs the
    backward pass of a convolution inside a scanned loop an order of magnitude slower
    (``benchmarks/rnn_probes.md``).
    """

    def __init__(self, frame_size: int = 64, patch: int = 4, hidden: tuple[int, ...] = (64, 64),
                 kernel_size: int = 3, future: int = 10, cell: str = "convlstm", output: str = "pixels",
                 advection_kernel: int = 9, *, rngs: nnx.Rngs):
        _check_patch(frame_size, patch, "ConvLSTMPredictor")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"ConvLSTMPredictor: hidden must be a non-empty list of positive widths; got {hidden}")
        if cell not in CELLS:
            raise ValueError(f"unknown video cell {cell!r}; expected one of {CELLS}")
        if output not in OUTPUTS:
            raise ValueError(f"unknown video output {output!r}; expected one of {OUTPUTS}")
        if not isinstance(advection_kernel, int) or advection_kernel < 1 or advection_kernel % 2 == 0:
            raise ValueError(f"advection_kernel must be an odd positive integer; got {advection_kernel!r}")
        if cell == "st_lstm" and len(set(hidden)) != 1:
            raise ValueError(f"the spatiotemporal memory passes between layers, so st_lstm layers need one "
                             f"width; got hidden={hidden}")
        if not isinstance(future, int) or future < 1:
            raise ValueError(f"ConvLSTMPredictor: future must be a positive integer; got {future!r}")
        self.frame_size, self.patch, self.future, self.cell, self.hidden = frame_size, patch, future, cell, hidden
        self.output, self.advection_kernel = output, advection_kernel
        channels = patch * patch
        ins = (channels,) + hidden[:-1]
        make = ConvLSTMCell if cell == "convlstm" else STLSTMCell
        self.cells = nnx.List([make(i, h, kernel_size, rngs=rngs) for i, h in zip(ins, hidden)])
        if output == "pixels":
            # start from near-black frames (sigmoid(-3) = 0.05, about the mean pixel value)
            self.head = nnx.Conv(hidden[-1], channels, (1, 1), bias_init=nnx.initializers.constant(-3.0),
                                 rngs=rngs)
        else:
            # per patch: a horizontal and a vertical softmax over `advection_kernel` offsets,
            # starting on the centre offset (no motion)
            k = advection_kernel
            centre = jnp.zeros((2, k)).at[:, k // 2].set(4.0).reshape(-1)
            self.head = nnx.Conv(hidden[-1], 2 * k, (1, 1), bias_init=lambda *_: centre, rngs=rngs)

    def _zero_state(self, n: int, grid: int):
        zeros = lambda h: jnp.zeros((n, grid, grid, h), jnp.float32)
        carries = [(zeros(h), zeros(h)) for h in self.hidden]
        return carries, (zeros(self.hidden[0]) if self.cell == "st_lstm" else None)

    def _step(self, carries, memory, frame):
        """One time step: the frame ``(N, S, S, 1)`` in [0, 1] -> the next one's logits and pixels."""
        below = space_to_depth(frame, self.patch)
        new = []
        for cell, carry in zip(self.cells, carries):
            if self.cell == "st_lstm":
                carry, memory = cell(carry, memory, below)
            else:
                carry, _ = cell(carry, below)
            below = carry[1]
            new.append(carry)
        if self.output == "pixels":
            out = depth_to_space(self.head(below), self.patch)
            return new, memory, out, nnx.sigmoid(out)
        pixels = advect(frame, self.head(below), self.patch)
        return new, memory, _logit(pixels), pixels

    def rollout(self, frames: jax.Array, feed_truth: jax.Array | None = None) -> jax.Array:
        """Logits of frames ``2..T`` from whole sequences ``(N, T, S, S, 1)``, ``T > future``.

        The first ``T - future`` frames are always read; at each of the following
        ``future - 1`` steps the input is the true frame where ``feed_truth`` (``(N,
        future - 1)``, values in [0, 1]) is 1 and the model's own previous prediction
        where it is 0 (``None``: always its own -- test-time behaviour). A prediction
        depends only on the frames before it.
        """
        _check_frames(frames, self.frame_size, type(self).__name__)
        n, t = frames.shape[:2]
        observed = t - self.future
        if observed < 1:
            raise ValueError(f"rollout needs more than future={self.future} frames (the observed ones "
                             f"first); got {t}")
        if feed_truth is not None and feed_truth.shape != (n, self.future - 1):
            raise ValueError(f"feed_truth must have shape (N={n}, future-1={self.future - 1}); "
                             f"got {feed_truth.shape}")
        return self._run(frames, observed, t - 1, feed_truth)

    def __call__(self, observed: jax.Array) -> jax.Array:
        _check_frames(observed, self.frame_size, type(self).__name__)
        t = observed.shape[1]
        return self._run(observed, t, t - 1 + self.future, None)[:, t - 1:]

    def _run(self, frames, given: int, steps: int, feed_truth):
        """``steps`` next-frame logits reading the first ``given`` frames; after them the
        model's own prediction, mixed with the true frame of ``frames`` by ``feed_truth``."""
        n = frames.shape[0]
        carries, memory = self._zero_state(n, self.frame_size // self.patch)
        outputs, previous = [], None
        for t in range(steps):
            frame = frames[:, t] if t < given else previous
            if t >= given and feed_truth is not None:
                w = feed_truth[:, t - given, None, None, None]
                frame = w * frames[:, t] + (1.0 - w) * previous
            carries, memory, logits, previous = self._step(carries, memory, frame)
            outputs.append(logits)
        return jnp.stack(outputs, axis=1)


class ConvPredictor(nnx.Module):
    """A convolutional (non-recurrent) predictor in the spirit of SimVP (Gao et al., 2022).

    ``(N, observed, S, S, 1)`` -> logits ``(N, future, S, S, 1)`` in one pass: each
    patched frame is embedded by a 3x3 convolution (shared across frames), the
    ``observed`` embeddings are stacked along the channels, ``depth`` residual blocks
    (3x3 convolution, group norm, SiLU) of ``width`` channels mix time and space, and a
    3x3 convolution emits all ``future`` patched frames.
    """

    def __init__(self, frame_size: int = 64, patch: int = 4, observed: int = 10, future: int = 10,
                 embed: int = 32, width: int = 128, depth: int = 4, *, rngs: nnx.Rngs):
        _check_patch(frame_size, patch, "ConvPredictor")
        for name, value in (("observed", observed), ("future", future), ("embed", embed),
                            ("width", width), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ConvPredictor: {name} must be a positive integer; got {value!r}")
        self.frame_size, self.patch, self.observed, self.future = frame_size, patch, observed, future
        channels = patch * patch
        self.embed = nnx.Conv(channels, embed, (3, 3), rngs=rngs)
        self.mix_in = nnx.Conv(observed * embed, width, (3, 3), rngs=rngs)
        self.blocks = nnx.List([nnx.Conv(width, width, (3, 3), rngs=rngs) for _ in range(depth)])
        self.norms = nnx.List([nnx.GroupNorm(width, num_groups=8, rngs=rngs) for _ in range(depth)])
        self.out = nnx.Conv(width, future * channels, (3, 3), bias_init=nnx.initializers.constant(-3.0),
                            rngs=rngs)

    def __call__(self, observed: jax.Array) -> jax.Array:
        _check_frames(observed, self.frame_size, type(self).__name__)
        if observed.shape[1] != self.observed:
            raise ValueError(f"ConvPredictor was built for {self.observed} observed frames; got "
                             f"{observed.shape[1]}")
        x = _patched(observed, self.patch)
        n, t, g = x.shape[:3]
        e = nnx.silu(self.embed(x.reshape((n * t, g, g, -1))))
        e = e.reshape(n, t, g, g, -1).transpose(0, 2, 3, 1, 4).reshape(n, g, g, -1)
        h = nnx.silu(self.mix_in(e))
        for conv, norm in zip(self.blocks, self.norms):
            h = h + nnx.silu(norm(conv(h)))
        y = self.out(h).reshape(n, g, g, self.future, -1).transpose(0, 3, 1, 2, 4)
        return _unpatched(y, self.patch)
