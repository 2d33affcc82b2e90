"""Recurrent models for images read as sequences.

* :class:`RowClassifier` -- an image read row by row (28 rows of 28 pixels) by a stack
  of LSTM or GRU layers (``nnx.RNN`` over ``nnx.OptimizedLSTMCell`` / ``nnx.GRUCell``,
  optionally bidirectional); a linear head on the last state gives class logits.
* :class:`RowCompleter` -- a recurrent next-row model: trained to predict row ``t+1``
  from rows ``1..t``; :meth:`RowCompleter.complete` continues a partial image one row
  at a time, feeding back its own predictions.
* :class:`ConvLSTMCell` and :class:`EncoderForecaster` -- the convolutional LSTM of
  Shi et al. (2015) and an encoder-forecaster video model around it: frames are
  encoded to a 16x16 grid, an encoder ConvLSTM stack reads the observed frames, a
  forecaster stack (its own weights, started from the encoder's states, no input)
  rolls forward, and a decoder maps every forecaster state back to a 64x64 frame.

All take float inputs and return logits; the tasks in :mod:`imgmine_jax.sequence`
and :class:`imgmine_jax.train.Classification` say how batches become inputs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from imgmine_jax import validate
from imgmine_jax.models.common import check_images, depth_to_space, space_to_depth

CELLS = ("lstm", "gru")


def make_cell(kind: str, in_features: int, hidden: int, *, rngs: nnx.Rngs) -> nnx.RNNCellBase:
    """``"lstm"`` (fused-gate ``nnx.OptimizedLSTMCell``) or ``"gru"`` (``nnx.GRUCell``).

    The LSTM's forget-gate bias starts at 1 (Gers et al., 2000; Jozefowicz et al., 2015),
    so early in training the cell remembers by default.
    """
    if kind == "lstm":
        cell = nnx.OptimizedLSTMCell(in_features, hidden, rngs=rngs)
        bias = cell.dense_h.bias
        bias[...] = bias[...].at[hidden:2 * hidden].set(1.0)  # gate order i, f, g, o
        return cell
    if kind == "gru":
        return nnx.GRUCell(in_features, hidden, rngs=rngs)
    raise ValueError(f"unknown recurrent cell {kind!r}; expected one of {CELLS}")


class RecurrentStack(nnx.Module):
    """``num_layers`` recurrent layers over ``(N, T, F)`` sequences -> ``(N, T, hidden * dirs)``."""

    def __init__(self, kind: str, in_features: int, hidden: int, num_layers: int = 1,
                 bidirectional: bool = False, unroll: int | bool = 1, *, rngs: nnx.Rngs):
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be an integer >= 1; got {num_layers!r}")
        self.kind, self.hidden, self.bidirectional = kind, hidden, bidirectional
        layers = []
        width = in_features
        for _ in range(num_layers):
            fwd = nnx.RNN(make_cell(kind, width, hidden, rngs=rngs), unroll=unroll, rngs=rngs)
            if bidirectional:
                bwd = nnx.RNN(make_cell(kind, width, hidden, rngs=rngs), unroll=unroll, rngs=rngs)
                layers.append(nnx.Bidirectional(fwd, bwd, rngs=rngs))
            else:
                layers.append(fwd)
            width = hidden * (2 if bidirectional else 1)
        self.layers = nnx.List(layers)
        self.out_features = width

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x

    def cells(self) -> list[nnx.RNNCellBase]:
        """The per-layer cells (unidirectional stacks), for stepping one time step at a time."""
        if self.bidirectional:
            raise ValueError("a bidirectional stack cannot be stepped one time step at a time")
        return [layer.cell for layer in self.layers]


class RowClassifier(nnx.Module):
    """Classify an image from its rows read top to bottom by an LSTM/GRU stack.

    Input ``(N, H, W, C)`` normalised images (as for the CNNs, so
    :class:`imgmine_jax.train.Classification` trains it unchanged); each row of
    ``W * C`` values is one time step. The head reads the state after the last row
    (bidirectional: the forward state after the last row and the backward state after
    the first). ``head_hidden`` puts a linear layer of that width before the output layer,
    with no activation between them (Keras's ``Dense`` default), as the source articles'
    stacked LSTM has (LSTM 50 -> LSTM 50 -> Dense 25 -> Dense 1:
    :data:`imgmine_jax.recipes.ARTICLE_LSTM_ARCH`).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 cell: str = "lstm", hidden: int = 128, num_layers: int = 1,
                 bidirectional: bool = False, head_hidden: int | None = None, *, rngs: nnx.Rngs):
        validate.classifier_args("RowClassifier", num_classes=num_classes, in_channels=in_channels,
                                 image_size=image_size, hidden=hidden, num_layers=num_layers)
        if head_hidden is not None:
            validate.integer(head_hidden, "RowClassifier(head_hidden)", min=1, max=16_384)
        self.image_shape = (image_size, image_size, in_channels)
        self.rnn = RecurrentStack(cell, image_size * in_channels, hidden, num_layers, bidirectional,
                                  rngs=rngs)
        if head_hidden is None:
            self.head = nnx.Linear(self.rnn.out_features, num_classes, rngs=rngs)
        else:
            self.head = nnx.Sequential(nnx.Linear(self.rnn.out_features, head_hidden, rngs=rngs),
                                       nnx.Linear(head_hidden, num_classes, rngs=rngs))

    def _rows(self, x: jax.Array) -> jax.Array:
        check_images(x, self.image_shape, where=type(self).__name__)
        n, h, w, c = x.shape
        return x.reshape(n, h, w * c)

    def features(self, x: jax.Array) -> jax.Array:
        out = self.rnn(self._rows(x))
        if self.rnn.bidirectional:
            hdim = self.rnn.hidden
            return jnp.concatenate([out[:, -1, :hdim], out[:, 0, hdim:]], axis=-1)
        return out[:, -1]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))

    def logits_after_each_row(self, x: jax.Array) -> jax.Array:
        """``(N, H, classes)``: the head applied to the state after rows ``1..k`` for every k.

        The model was trained on the last state only; earlier states show what it would
        answer having read only the top ``k`` rows. Unidirectional models only.
        """
        if self.rnn.bidirectional:
            raise ValueError("logits after k rows need a unidirectional model (a bidirectional one "
                             "has already read the bottom rows)")
        return self.head(self.rnn(self._rows(x)))


class RowCompleter(nnx.Module):
    """Next-row model: rows ``(N, T, W)`` in [0, 1] -> logits of rows ``2..T+1``.

    ``__call__`` is the teacher-forced pass used in training; :meth:`complete` is the
    free-running one used at test time.
    """

    def __init__(self, width: int = 28, cell: str = "lstm", hidden: int = 256, num_layers: int = 1,
                 *, rngs: nnx.Rngs):
        self.width = width
        self.rnn = RecurrentStack(cell, width, hidden, num_layers, rngs=rngs)
        self.head = nnx.Linear(hidden, width, rngs=rngs)

    def _check(self, rows: jax.Array) -> None:
        if rows.ndim != 3 or rows.shape[-1] != self.width:
            raise ValueError(f"RowCompleter expects rows of shape (N, T, {self.width}); got {rows.shape}")

    def __call__(self, rows: jax.Array) -> jax.Array:
        self._check(rows)
        return self.head(self.rnn(rows))

    def rollout(self, top: jax.Array, num_rows: int) -> jax.Array:
        """Logits of ``num_rows`` rows continuing ``top`` (N, T, W), free-running.

        The stack reads ``top``; then each predicted row (the sigmoid of the head: the
        expected pixel values) is fed back as the next input. Differentiable end to end,
        so the rollout itself can be trained (:class:`imgmine_jax.sequence.RowCompletion`).
        """
        self._check(top)
        carries = []
        x = top
        for layer in self.rnn.layers:
            carry, x = layer(x, return_carry=True)
            carries.append(carry)
        logits = self.head(x[:, -1])
        out = [logits]
        cells = self.rnn.cells()
        for _ in range(num_rows - 1):
            h = nnx.sigmoid(logits)
            for i, cell in enumerate(cells):
                carries[i], h = cell(carries[i], h)
            logits = self.head(h)
            out.append(logits)
        return jnp.stack(out, axis=1)

    def complete(self, top: jax.Array, num_rows: int) -> jax.Array:
        """Continue ``top`` (N, T, W) by ``num_rows`` rows, probabilities in [0, 1] (see :meth:`rollout`)."""
        return nnx.sigmoid(self.rollout(top, num_rows))


# --------------------------------------------------------------------------- video

class ConvLSTMCell(nnx.RNNCellBase):
    """Convolutional LSTM cell (Shi et al., 2015), without peephole connections.

    carry ``(c, h)`` and output ``h`` are ``(N, H, W, hidden)``; the input ``x`` is
    ``(N, H, W, in_features)`` (``in_features = 0``: no input, as in a forecaster).
    All four gates come from one ``kernel_size`` convolution over ``[x, h]``.
    """

    def __init__(self, in_features: int, hidden_features: int, kernel_size: int = 3, *, rngs: nnx.Rngs):
        self.in_features, self.hidden_features = in_features, hidden_features
        self.conv = nnx.Conv(in_features + hidden_features, 4 * hidden_features, (kernel_size, kernel_size),
                             rngs=rngs)
        bias = self.conv.bias
        bias[...] = bias[...].at[hidden_features:2 * hidden_features].set(1.0)  # forget gate

    def __call__(self, carry: tuple[jax.Array, jax.Array], x: jax.Array
                 ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        c, h = carry
        if x.shape[:-1] != h.shape[:-1] or x.shape[-1] != self.in_features:
            raise ValueError(f"ConvLSTMCell expects inputs of shape {h.shape[:-1] + (self.in_features,)} "
                             f"for a state of shape {h.shape}; got {x.shape}")
        xh = h if self.in_features == 0 else jnp.concatenate([x, h], axis=-1)
        i, f, g, o = jnp.split(self.conv(xh), 4, axis=-1)
        c = nnx.sigmoid(f) * c + nnx.sigmoid(i) * jnp.tanh(g)
        h = nnx.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    def initialize_carry(self, input_shape: tuple[int, ...], rngs=None, carry_init=None
                         ) -> tuple[jax.Array, jax.Array]:
        """Zero state for inputs of shape ``(N, H, W, in_features)``."""
        shape = tuple(input_shape[:-1]) + (self.hidden_features,)
        return jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)

    @property
    def num_feature_axes(self) -> int:
        return 3


class EncoderForecaster(nnx.Module):
    """Predict future frames from observed ones (Shi et al., 2015, encoder-forecaster).

    ``(N, T_in, S, S, 1)`` frames in [0, 1] -> logits of ``(N, future, S, S, 1)``.

    * frame encoder: ``patch x patch`` space-to-depth (64x64 -> 16x16x16, free) and a
      3x3 conv-ReLU to ``embed`` channels. On a CPU this replaces the strided
      high-resolution convolutions whose weight gradients are slow (see benchmarks/);
    * encoder: ConvLSTM layers with ``hidden`` channels reading the observed frames;
    * forecaster: ConvLSTM layers of the same sizes, started from the encoder's final
      states; the first gets no input, each further one the state of the one below;
    * decoder: a 3x3 conv over the concatenated forecaster states (all layers, as in
      Shi et al.) to ``patch * patch`` channels, depth-to-space back to 64x64.
    """

    def __init__(self, frame_size: int = 64, patch: int = 4, embed: int = 32,
                 hidden: tuple[int, ...] = (64,), kernel_size: int = 3, future: int = 10,
                 *, rngs: nnx.Rngs):
        hidden = tuple(int(h) for h in hidden)
        if frame_size % patch:
            raise ValueError(f"frame_size={frame_size} must be divisible by patch={patch}")
        self.frame_size, self.patch, self.future = frame_size, patch, future
        self.embed = nnx.Conv(patch * patch, embed, (3, 3), rngs=rngs)
        ins = (embed,) + hidden[:-1]
        # fully unrolled: XLA:CPU runs the backward pass of a convolution inside a scan
        # loop ~10x slower than the same code unrolled (benchmarks/rnn_probes.md)
        self.encoder = nnx.List([nnx.RNN(ConvLSTMCell(i, h, kernel_size, rngs=rngs), unroll=True, rngs=False)
                                 for i, h in zip(ins, hidden)])
        self.forecaster = nnx.List([ConvLSTMCell(i, h, kernel_size, rngs=rngs)
                                    for i, h in zip((0,) + hidden[:-1], hidden)])
        # start from near-black frames (sigmoid(-3) = 0.05, about the mean pixel value):
        # otherwise the first hundred steps are spent learning that the background is black
        self.decode = nnx.Conv(sum(hidden), patch * patch, (3, 3),
                               bias_init=nnx.initializers.constant(-3.0), rngs=rngs)

    def _frames_in(self, frames: jax.Array) -> jax.Array:
        if frames.ndim != 5 or frames.shape[2:] != (self.frame_size, self.frame_size, 1):
            raise ValueError(f"EncoderForecaster expects frames of shape (N, T, {self.frame_size}, "
                             f"{self.frame_size}, 1); got {frames.shape}")
        n, t = frames.shape[:2]
        x = space_to_depth(frames.reshape((n * t,) + frames.shape[2:]), self.patch)
        x = nnx.relu(self.embed(x))
        return x.reshape((n, t) + x.shape[1:])

    def __call__(self, frames: jax.Array) -> jax.Array:
        x = self._frames_in(frames)
        carries = []
        for layer in self.encoder:
            carry, x = layer(x, return_carry=True)
            carries.append(carry)
        n, _, g, _, _ = x.shape
        nothing = jnp.zeros((n, g, g, 0), x.dtype)

        def step(carries, _):
            new, below = [], nothing
            for cell, carry in zip(self.forecaster, carries):
                carry, below = cell(carry, below)
                new.append(carry)
            return new, jnp.concatenate([c[1] for c in new], axis=-1)

        # a Python loop over the (short, fixed) horizon: XLA sees straight-line code
        states = []
        for _ in range(self.future):
            carries, s = step(carries, None)
            states.append(s)
        s = jnp.stack(states, axis=1)                          # N F g g sum(hidden)
        logits = self.decode(s.reshape((n * self.future,) + s.shape[2:]))
        logits = depth_to_space(logits, self.patch)
        return logits.reshape((n, self.future) + logits.shape[1:])
