"""Training tasks and evaluation for the sequence models of notebook 02.

Two :class:`imgmine_jax.train.Task` implementations, trained by the same
:func:`imgmine_jax.train.fit` loop as the CNNs (row-by-row recognition needs no new
task: :class:`imgmine_jax.train.Classification` trains a
:class:`~imgmine_jax.models.rnn.RowClassifier` as it is):

* :class:`RowCompletion` -- next-row prediction on digit images (teacher forcing,
  binary cross-entropy per pixel); validation also runs the free-running completion
  of the bottom rows from the top ones.
* :class:`NextFrames` -- future-frame prediction on Moving MNIST; the frames are
  rendered inside the jitted step from the compact ``{"digits", "positions"}``
  arrays (:func:`imgmine_jax.moving_mnist.render`). :class:`ScheduledSampling` trains
  an autoregressive predictor on whole sequences, feeding it its own predictions.

Plus jitted, batched evaluation: accuracy after each row, completions, predicted
frames, and the per-horizon errors of a model and of the baselines.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imgmine_jax import data as data_lib
from imgmine_jax import moving_mnist
from imgmine_jax.train import Task, apply_batched

# --------------------------------------------------------------------------- row completion


def image_rows(images: jax.Array) -> jax.Array:
    """uint8 ``(N, H, W, 1)`` -> float rows ``(N, H, W)`` in [0, 1]."""
    return images[..., 0].astype(jnp.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class RowCompletion(Task):
    """Next-row prediction on ``{"image": uint8 (N, H, W, 1)}`` batches.

    Training loss, sigmoid cross-entropy per pixel, of two parts:

    * teacher forcing: rows ``1..H-1`` in, rows ``2..H`` as targets;
    * ``rollout_weight`` x the free-running completion: the model reads the top
      ``given_rows`` rows and predicts the rest from its own (expected-value)
      predictions, back-propagated through the whole rollout. Teacher forcing alone
      never shows the model its own mistakes, and its completions drift.

    Validation adds ``completion_mse``, the mean squared error per pixel (in [0, 1]) of
    the free-running completion of the bottom ``H - given_rows`` rows.
    """

    given_rows: int = 14
    rollout_weight: float = 1.0

    def loss(self, model, batch, key):
        rows = image_rows(batch["image"])
        teacher = optax.sigmoid_binary_cross_entropy(model(rows[:, :-1]), rows[:, 1:]).mean()
        loss = teacher
        metrics = {"teacher_forced_loss": teacher}
        if self.rollout_weight:
            free = model.rollout(rows[:, :self.given_rows], rows.shape[1] - self.given_rows)
            free_loss = optax.sigmoid_binary_cross_entropy(free, rows[:, self.given_rows:]).mean()
            loss = loss + self.rollout_weight * free_loss
            metrics["rollout_loss"] = free_loss
        return loss, {"loss": loss, **metrics}

    def eval_sums(self, model, batch, mask):
        rows = image_rows(batch["image"])
        bce = optax.sigmoid_binary_cross_entropy(model(rows[:, :-1]), rows[:, 1:]).mean(axis=(1, 2))
        done = model.complete(rows[:, :self.given_rows], rows.shape[1] - self.given_rows)
        mse = ((done - rows[:, self.given_rows:]) ** 2).mean(axis=(1, 2))
        return {"loss": jnp.sum(bce * mask), "completion_mse": jnp.sum(mse * mask)}


def complete_images(model: nnx.Module, images: np.ndarray, given_rows: int = 14,
                    batch_size: int = 1000) -> np.ndarray:
    """The model's completions of uint8 images ``(N, H, W, 1)`` from their top ``given_rows``.

    Returns float ``(N, H, W)`` in [0, 1]: the given rows, then the predicted ones.
    """
    def fn(m, x):
        rows = image_rows(x)
        done = m.complete(rows[:, :given_rows], rows.shape[1] - given_rows)
        return jnp.concatenate([rows[:, :given_rows], done], axis=1)

    return apply_batched(model, fn, images, batch_size)


def completion_baselines(train_images: np.ndarray, train_labels: np.ndarray, images: np.ndarray,
                         labels: np.ndarray, given_rows: int = 14) -> dict[str, np.ndarray]:
    """The two reference completions of ``images`` (float ``(N, H, W)`` in [0, 1]).

    * ``repeat_last_row``: the last given row copied into every missing row;
    * ``class_mean``: the bottom of the mean *training* image of the digit's true class
      -- an oracle that is told the label.
    """
    rows = np.asarray(images[..., 0], np.float32) / 255.0
    repeat = rows.copy()
    repeat[:, given_rows:] = rows[:, given_rows - 1:given_rows]
    train_rows = np.asarray(train_images[..., 0], np.float32) / 255.0
    means = np.stack([train_rows[train_labels == c].mean(0) for c in range(int(train_labels.max()) + 1)])
    class_mean = rows.copy()
    class_mean[:, given_rows:] = means[labels][:, given_rows:]
    return {"repeat_last_row": repeat, "class_mean": class_mean}


def completion_errors(completed: np.ndarray, images: np.ndarray, given_rows: int = 14) -> dict[str, float]:
    """Mean squared and absolute error per missing pixel (values in [0, 1])."""
    truth = np.asarray(images[..., 0], np.float32)[:, given_rows:] / 255.0
    diff = np.asarray(completed)[:, given_rows:] - truth
    return {"mse": float(np.mean(diff ** 2)), "mae": float(np.mean(np.abs(diff)))}


# --------------------------------------------------------------------------- next frames

def frame_mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Per-frame squared error summed over the pixels, ``(..., T)`` for ``(..., T, H, W[, 1])``.

    Frames in [0, 1]; the convention of the ConvLSTM and PredRNN papers (their reported
    "MSE per frame"), averaged over sequences by the caller.
    """
    axes = tuple(range(pred.ndim - (3 if pred.shape[-1] == 1 else 2), pred.ndim))
    return jnp.sum((pred - target) ** 2, axis=axes)


@dataclasses.dataclass(frozen=True)
class NextFrames(Task):
    """Predict frames ``observed+1..T`` of Moving MNIST from frames ``1..observed``.

    Batches are ``{"digits", "positions"}`` (:meth:`MovingMnist.arrays`); frames are
    rendered in the step. Loss: sigmoid cross-entropy per pixel (its minimiser is the
    same per-pixel mean as the squared error's, with better gradients on the black
    background). Validation reports ``mse``, the per-frame MSE averaged over the
    predicted frames.
    """

    observed: int = moving_mnist.NUM_OBSERVED
    canvas: int = moving_mnist.CANVAS

    def split(self, batch):
        frames = moving_mnist.render(batch["digits"], batch["positions"], self.canvas)
        return frames[:, :self.observed], frames[:, self.observed:]

    def loss(self, model, batch, key):
        inputs, targets = self.split(batch)
        logits = model(inputs)
        loss = optax.sigmoid_binary_cross_entropy(logits, targets).mean()
        mse = frame_mse(nnx.sigmoid(logits), targets).mean()
        return loss, {"loss": loss, "mse": mse}

    def eval_sums(self, model, batch, mask):
        inputs, targets = self.split(batch)
        logits = model(inputs)
        bce = optax.sigmoid_binary_cross_entropy(logits, targets).mean(axis=(1, 2, 3, 4))
        mse = frame_mse(nnx.sigmoid(logits), targets).mean(axis=1)
        return {"loss": jnp.sum(bce * mask), "mse": jnp.sum(mse * mask)}


LOSSES = ("bce", "mse", "mse+l1")


def frame_loss(kind: str, logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean per-pixel training loss of predicted frames (logits) against true ones in [0, 1].

    ``"bce"``: sigmoid cross-entropy; ``"mse"``: squared error of the sigmoid;
    ``"mse+l1"``: squared plus absolute error (the absolute error's minimiser is the
    median, not the mean, so an uncertain pixel is pushed to 0 or 1 rather than grey).
    """
    if kind == "bce":
        return optax.sigmoid_binary_cross_entropy(logits, targets).mean()
    diff = nnx.sigmoid(logits) - targets
    if kind == "mse":
        return jnp.mean(diff ** 2)
    if kind == "mse+l1":
        return jnp.mean(diff ** 2 + jnp.abs(diff))
    raise ValueError(f"unknown frame loss {kind!r}; expected one of {LOSSES}")


@dataclasses.dataclass(frozen=True)
class ScheduledSampling(NextFrames):
    """Train an autoregressive predictor (:class:`~imgmine_jax.models.video.ConvLSTMPredictor`)
    on whole sequences with scheduled sampling (Bengio et al., 2015).

    Every one of the ``T - 1`` next-frame predictions is scored (``loss``, see
    :func:`frame_loss`). During the future steps the model reads the true previous frame
    with probability ``ratio`` and its own prediction otherwise; ``ratio`` falls linearly
    from 1 (teacher forcing) to 0 (test-time behaviour) over the first ``sampling_steps``
    optimiser steps (0: free-running from the start), drawn per sequence and step.
    Validation scores the free-running prediction, as :class:`NextFrames` does.
    """

    loss_kind: str = "bce"
    sampling_steps: int = 0

    def __post_init__(self):
        if self.loss_kind not in LOSSES:
            raise ValueError(f"unknown frame loss {self.loss_kind!r}; expected one of {LOSSES}")
        if not isinstance(self.sampling_steps, int) or self.sampling_steps < 0:
            raise ValueError(f"sampling_steps must be an integer >= 0; got {self.sampling_steps!r}")

    def ratio(self, step: jax.Array) -> jax.Array:
        """Probability of feeding the true frame at optimiser step ``step``."""
        if self.sampling_steps == 0:
            return jnp.float32(0.0)
        return jnp.clip(1.0 - step / self.sampling_steps, 0.0, 1.0).astype(jnp.float32)

    def sequence_loss(self, model, frames, feed_truth):
        logits = model.rollout(frames, feed_truth)
        targets = frames[:, 1:]
        loss = frame_loss(self.loss_kind, logits, targets)
        mse = frame_mse(nnx.sigmoid(logits[:, -model.future:]), targets[:, -model.future:]).mean()
        return loss, {"loss": loss, "mse": mse}

    def update(self, model, optimizer, batch, key):
        frames = moving_mnist.render(batch["digits"], batch["positions"], self.canvas)
        n = frames.shape[0]
        feed_truth = jax.random.bernoulli(key, self.ratio(optimizer.step[...]), (n, model.future - 1))
        grad_fn = nnx.value_and_grad(lambda m: self.sequence_loss(m, frames, feed_truth.astype(jnp.float32)),
                                     has_aux=True)
        (_, metrics), grads = grad_fn(model)
        optimizer.update(model, grads)
        return {**metrics, "teacher_ratio": self.ratio(optimizer.step[...] - 1)}


def predict_frames(model: nnx.Module, observed: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """Predicted future frames, float ``(N, F, S, S)`` in [0, 1], from uint8 observed ``(N, T, S, S)``."""
    fn = lambda m, x: nnx.sigmoid(m(x[..., None].astype(jnp.float32) / 255.0))[..., 0]
    return apply_batched(model, fn, observed, batch_size)


def horizon_errors(pred: np.ndarray, target: np.ndarray, ssim_fn: Callable | None = None) -> dict[str, np.ndarray]:
    """Per-horizon ``mse`` and ``mae`` (per-frame sums over the pixels, averaged over
    sequences) and ``ssim``.

    ``pred`` and ``target`` are float ``(N, F, S, S)`` in [0, 1]; returns arrays of length F.
    """
    from imgmine_jax import metrics

    pred, target = np.asarray(pred, np.float32), np.asarray(target, np.float32)
    if pred.shape != target.shape:
        raise ValueError(f"predictions {pred.shape} and targets {target.shape} must have one shape")
    mse = np.asarray(frame_mse(jnp.asarray(pred), jnp.asarray(target))).mean(0)
    mae = np.abs(pred - target).reshape(pred.shape[:2] + (-1,)).sum(-1).mean(0)
    n, f = pred.shape[:2]
    ssim = (ssim_fn or metrics.ssim)(pred.reshape(n * f, *pred.shape[2:]),
                                     target.reshape(n * f, *target.shape[2:])).reshape(n, f).mean(0)
    return {"mse": mse, "mae": mae, "ssim": ssim}


def frame_baselines(observed: np.ndarray, mean_frame: np.ndarray, future: int) -> dict[str, np.ndarray]:
    """Reference predictions ``(N, future, S, S)`` in [0, 1] from uint8 observed frames.

    * ``copy_last``: the last observed frame, repeated;
    * ``mean_frame``: the mean training frame (the best constant under squared error);
    * ``blank``: an all-black frame -- no digit at all. It scores a high SSIM on these
      mostly black frames, so SSIM is only read together with the MSE.
    """
    last = np.asarray(observed[:, -1:], np.float32) / 255.0
    n = len(observed)
    return {"copy_last": np.repeat(last, future, axis=1),
            "mean_frame": np.broadcast_to(mean_frame, (n, future) + mean_frame.shape).astype(np.float32),
            "blank": np.zeros((n, future) + mean_frame.shape, np.float32)}


def video_targets(model: dict[str, np.ndarray], copy_last: dict[str, np.ndarray],
                  mean_frame: dict[str, np.ndarray]) -> dict[str, bool]:
    """Notebook 02's targets for a video predictor, from :func:`horizon_errors` outputs:
    mean per-frame MSE <= 80, mean SSIM >= 0.60 and above copy-last, SSIM above copy-last
    one frame ahead, MSE at the last horizon <= 120 and below the mean frame's."""
    return {"mean_mse_at_most_80": bool(model["mse"].mean() <= 80),
            "mean_ssim_at_least_0.60_and_above_copy_last": bool(
                model["ssim"].mean() >= 0.60 and model["ssim"].mean() > copy_last["ssim"].mean()),
            "ssim_above_copy_last_at_t+1": bool(model["ssim"][0] > copy_last["ssim"][0]),
            "last_horizon_mse_at_most_120_and_below_mean_frame": bool(
                model["mse"][-1] <= 120 and model["mse"][-1] < mean_frame["mse"][-1])}


def mean_frame(sequences: moving_mnist.MovingMnist, batch_size: int = 500) -> np.ndarray:
    """The pixel-wise mean over all frames of ``sequences``, float ``(S, S)`` in [0, 1]."""
    render = jax.jit(lambda d, p: moving_mnist.render(d, p, sequences.canvas).sum(axis=(0, 1)))
    total = np.zeros((sequences.canvas, sequences.canvas, 1), np.float64)
    for start in range(0, len(sequences), batch_size):
        part = sequences.take(slice(start, start + batch_size))
        total += np.asarray(render(part.digits, part.positions), np.float64)
    return (total / (len(sequences) * sequences.num_frames))[..., 0].astype(np.float32)


# --------------------------------------------------------------------------- helpers

def accuracy_after_each_row(model: nnx.Module, images: np.ndarray, labels: np.ndarray,
                            batch_size: int = 1000) -> np.ndarray:
    """Test accuracy of a row classifier after reading ``k = 1..H`` rows, ``(H,)``."""
    fn = lambda m, x: m.logits_after_each_row(data_lib.normalize(x)).argmax(-1)
    preds = apply_batched(model, fn, images, batch_size)
    return (preds == np.asarray(labels)[:, None]).mean(0)
