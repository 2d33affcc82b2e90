"""Jitted train/eval steps over ``nnx.split`` state, and the epoch loop around them.

The performance-guide form of Flax NNX: the model and optimiser are split once into a
static ``GraphDef`` and a ``State`` pytree; a ``jax.jit`` step takes the state, merges
it back inside the trace, and returns the new state. Each step compiles once per
input shape (every training batch has the same shape, see
:func:`imgmine_jax.data.epoch_batches`) and is then reused for every step and epoch.

What is trained is described by a *task*, a subclass of :class:`Task`
(:class:`Classification` here, the sequence tasks in :mod:`imgmine_jax.sequence`, the GAN
task in :mod:`imgmine_jax.gan`): how a batch becomes inputs, the loss, the metrics summed
over an evaluation batch, which metrics are better higher, and -- for a task that is not
one loss minimised by one optimiser (a GAN: two networks, two optimisers, alternating
updates) -- its own optimiser and update. :func:`build_trainer` is the one way a task,
a model and a :class:`TrainConfig` become a :class:`Trainer`; :func:`fit` and the vmapped
:func:`sweep` run the same epoch loop (history columns, checkpoints, resume, the stop on
a non-finite loss).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from imgmine_jax import checkpoint as ckpt_lib
from imgmine_jax import data as data_lib
from imgmine_jax import parallel as parallel_lib
from imgmine_jax import runs as _runs
from imgmine_jax import validate
from imgmine_jax.files import atomic_write_bytes, json_default

SCHEDULES = ("constant", "cosine", "onecycle", "linear_decay")
RESUME_ENV = "IMGMINE_RESUME"   # "0" turns off automatic resumable checkpoints in fit
CACHE_ENV = "IMGMINE_CACHE"     # "0": no reuse: fit and sweep train and delete their automatic checkpoint
FINISHED = "finished.json"      # marks an automatic checkpoint directory whose training completed


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (everything :func:`fit` needs to know)."""

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    schedule: str = "onecycle"      # "constant" | "cosine" (warm-up + cosine) | "onecycle" |
                                    # "linear_decay" (the peak for half the epochs, then linearly to 0)
    warmup_epochs: float = 1.0      # linear warm-up for "cosine"; ramp-up for "onecycle"
    weight_decay: float = 1e-4      # decoupled (AdamW), on kernels only
    label_smoothing: float = 0.0
    augment_shift: int = 0          # random translation of up to this many pixels
    augment_flip: bool = False      # random horizontal flips (clothes yes, digits no)
    seed: int = 0
    eval_batch_size: int = 1000

    def __post_init__(self):
        def need(ok: bool, field: str, expected: str):
            if not ok:
                raise ValueError(f"TrainConfig.{field} must be {expected}; got {getattr(self, field)!r}")

        need(_is_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1")
        need(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(_is_num(self.learning_rate) and self.learning_rate > 0, "learning_rate", "a number > 0")
        need(self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}")
        need(_is_num(self.warmup_epochs) and 0 <= self.warmup_epochs <= self.epochs,
             "warmup_epochs", f"a number in [0, epochs={self.epochs}]")
        need(_is_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(_is_num(self.label_smoothing) and 0 <= self.label_smoothing < 1,
             "label_smoothing", "a number in [0, 1)")
        need(_is_int(self.augment_shift) and self.augment_shift >= 0, "augment_shift", "an integer >= 0")
        need(isinstance(self.augment_flip, bool), "augment_flip", "True or False")
        need(_is_int(self.seed), "seed", "an integer")
        need(_is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
             "eval_batch_size", "an integer >= 1")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


# --------------------------------------------------------------------------- optimiser

def lr_schedule(cfg: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """The learning-rate *shape* in [0, 1] over training; multiplied by the peak rate."""
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "constant":
        return optax.constant_schedule(1.0)
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, max(warmup, 1), max(total, warmup + 1))
    if cfg.schedule == "linear_decay":
        # the GAN recipe of pix2pix / CycleGAN (Isola et al., 2017; Zhu et al., 2017)
        hold = total // 2
        return optax.join_schedules([optax.constant_schedule(1.0), optax.linear_schedule(1.0, 0.0, total - hold)],
                                    [hold])
    # one-cycle: linear ramp to the peak, cosine anneal to 1/1000 of it (Smith, 2018)
    return optax.cosine_onecycle_schedule(total, 1.0, pct_start=max(warmup, 1) / total,
                                          div_factor=25.0, final_div_factor=40.0)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int,
                   learning_rate: float | jax.Array | None = None) -> optax.GradientTransformation:
    """AdamW with decoupled weight decay on kernels (not biases or BN), and a schedule.

    The peak learning rate is a hyperparameter in the optimiser *state*
    (``inject_hyperparams``), so a vmapped sweep can give every member its own.
    """
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    return optax.chain(
        optax.scale_by_adam(),
        optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask),
        optax.scale_by_schedule(lr_schedule(cfg, steps_per_epoch)),
        optax.inject_hyperparams(optax.scale)(step_size=-lr),
    )


# --------------------------------------------------------------------------- tasks

class Task:
    """What :func:`fit` and :func:`sweep` need from a learning problem; subclass it.

    A subclass defines :meth:`loss` (or overrides :meth:`update`) and :meth:`eval_sums`.
    The defaults are one loss minimised by one optimiser (:func:`make_optimizer`); a task
    that is not (a GAN: two networks, two optimisers, alternating updates) overrides
    :meth:`make_optimizer`, :meth:`update` and :meth:`peak_learning_rate` together.
    """

    #: metric names (without ``train_`` / ``val_``) for which higher is better; every other
    #: metric is minimised when :func:`fit` picks the best epoch by it
    higher_is_better: frozenset[str] = frozenset()

    def loss(self, model: nnx.Module, batch: dict, key: jax.Array) -> tuple[jax.Array, dict]:
        """Training loss on a batch, and per-batch metrics (means, including ``"loss"``) to log."""
        raise NotImplementedError(f"{type(self).__name__} defines neither loss() nor update()")

    def eval_sums(self, model: nnx.Module, batch: dict, mask: jax.Array) -> dict:
        """Metrics *summed* over the unmasked examples of an evaluation batch."""
        raise NotImplementedError(f"{type(self).__name__} defines no eval_sums()")

    def make_optimizer(self, model: nnx.Module, cfg: "TrainConfig", steps_per_epoch: int,
                       learning_rate: float | jax.Array | None = None) -> nnx.Object:
        """The optimiser state for ``model`` (default: :func:`make_optimizer` over its parameters;
        ``learning_rate`` replaces ``cfg.learning_rate``, as a vmapped sweep's members do)."""
        return nnx.Optimizer(model, make_optimizer(cfg, steps_per_epoch, learning_rate), wrt=nnx.Param)

    def update(self, model: nnx.Module, optimizer: nnx.Object, batch: dict, key: jax.Array) -> dict:
        """One training step, in place, inside the jitted step; returns the per-batch metrics
        (must include ``"loss"``, the non-finite guard). Default: a gradient step on :meth:`loss`."""
        grad_fn = nnx.value_and_grad(lambda m: self.loss(m, batch, key), has_aux=True)
        (_, metrics), grads = grad_fn(model)
        optimizer.update(model, grads)
        return metrics

    def peak_learning_rate(self, cfg: "TrainConfig") -> float:
        """The peak learning rate the history's ``"lr"`` column scales by ``cfg.schedule``."""
        return float(cfg.learning_rate)

    def maximizes(self, metric: str) -> bool:
        """Whether a larger ``metric`` (a history column, e.g. ``"val_accuracy"``) is better."""
        for prefix in ("train_", "val_"):
            if metric.startswith(prefix):
                metric = metric[len(prefix):]
                break
        return metric in self.higher_is_better


def random_shift(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
    """Translate each image by an independent random offset in [-max_shift, max_shift] pixels.

    The border is filled with zeros (black, the background of digits and clothes).
    No flips: a mirrored digit is another symbol.
    """
    if max_shift == 0:
        return images
    offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * max_shift + 1)
    return _pad_and_crop(images, max_shift, offsets)


def _pad_and_crop(images: jax.Array, pad: int, offsets: jax.Array, fill=0) -> jax.Array:
    """Each image padded by ``pad`` pixels of ``fill``, then cropped back to its size at its
    ``offsets`` row ``(top, left)``: a translation by ``(pad - top, pad - left)``."""
    n, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
    return jax.vmap(crop)(padded, offsets)


def shift_images(images: jax.Array, dy: int, dx: int, fill=0) -> jax.Array:
    """Move images ``(N, H, W, C)`` by ``dy`` rows and ``dx`` columns, filling with ``fill``
    (0: black, the background of digits and clothes)."""
    pad = max(abs(dy), abs(dx))
    offsets = jnp.broadcast_to(jnp.array([pad - dy, pad - dx]), (images.shape[0], 2))
    return _pad_and_crop(jnp.asarray(images), pad, offsets, fill)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirror each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1], images)


@dataclasses.dataclass(frozen=True)
class Classification(Task):
    """Softmax cross-entropy on ``{"image": uint8, "label": int}`` batches.

    Images are augmented (uint8, before normalisation) only in training.
    """

    num_classes: int
    label_smoothing: float = 0.0
    augment_shift: int = 0
    augment_flip: bool = False
    higher_is_better = frozenset({"accuracy"})

    def __post_init__(self):
        validate.classification_task(self)

    @classmethod
    def from_config(cls, num_classes: int, cfg: TrainConfig) -> "Classification":
        return cls(num_classes, cfg.label_smoothing, cfg.augment_shift, cfg.augment_flip)

    def inputs(self, batch: dict, key: jax.Array | None = None) -> jax.Array:
        images = batch["image"]
        if key is not None:
            shift_key, flip_key = jax.random.split(key)
            images = random_shift(shift_key, images, self.augment_shift)
            if self.augment_flip:
                images = random_flip(flip_key, images)
        return data_lib.normalize(images)

    def loss(self, model, batch, key):
        logits = model(self.inputs(batch, key))
        targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], self.num_classes),
                                      self.label_smoothing)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        accuracy = (logits.argmax(-1) == batch["label"]).mean()
        return loss, {"loss": loss, "accuracy": accuracy}

    def predicted_classes(self, outputs: np.ndarray) -> np.ndarray:
        """The classes of :func:`predict`'s outputs: the largest logit."""
        return np.asarray(outputs).argmax(-1)

    def eval_sums(self, model, batch, mask):
        logits = model(self.inputs(batch))
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        correct = logits.argmax(-1) == batch["label"]
        return {"loss": jnp.sum(ce * mask), "accuracy": jnp.sum(correct * mask)}


@dataclasses.dataclass(frozen=True)
class LabelRegression(Task):
    """A class label regressed as a number: mean squared error between the model's single output
    and the label's value (``{"image": uint8, "label": int}`` batches), as a network with a
    ``Dense(1)`` head trained on MSE does. Accuracy: the output rounded to the nearest class
    (clipped to ``[0, num_classes - 1]``) equals the label.
    """

    num_classes: int
    higher_is_better = frozenset({"accuracy"})

    def __post_init__(self):
        validate.integer(self.num_classes, "LabelRegression(num_classes)", min=2)

    def _predict(self, model, batch):
        out = model(data_lib.normalize(batch["image"]))
        if out.ndim != 2 or out.shape[-1] != 1:
            raise ValueError(f"LabelRegression needs a model with one output, shape (N, 1); got {out.shape}")
        return out[:, 0]

    def classes(self, value: jax.Array) -> jax.Array:
        """The class a regressed value stands for."""
        return jnp.clip(jnp.round(value), 0, self.num_classes - 1).astype(jnp.int32)

    def predicted_classes(self, outputs: np.ndarray) -> np.ndarray:
        """The classes of :func:`predict`'s ``(N, 1)`` outputs."""
        return np.asarray(self.classes(jnp.asarray(outputs)[:, 0]))

    def loss(self, model, batch, key):
        value = self._predict(model, batch)
        loss = jnp.mean((value - batch["label"]) ** 2)
        return loss, {"loss": loss, "accuracy": (self.classes(value) == batch["label"]).mean()}

    def eval_sums(self, model, batch, mask):
        value = self._predict(model, batch)
        return {"loss": jnp.sum((value - batch["label"]) ** 2 * mask),
                "accuracy": jnp.sum((self.classes(value) == batch["label"]) * mask)}


# --------------------------------------------------------------------------- steps

def _gather(arrays: dict, idx: jax.Array) -> dict:
    return {k: v[idx] for k, v in arrays.items()}


def train_step_fn(graphdef: nnx.GraphDef, task: Task) -> Callable:
    """The pure training step ``(state, arrays, idx, key) -> (state, metrics)``.

    ``state`` is ``nnx.state((model, optimizer))``; the batch is gathered from the
    device-resident ``arrays`` inside the step, so no data crosses to the device.
    """
    def step(state, arrays, idx, key):
        model, optimizer = nnx.merge(graphdef, state)
        metrics = task.update(model, optimizer, _gather(arrays, idx), key)
        return nnx.state((model, optimizer)), metrics

    return step


def eval_step_fn(graphdef: nnx.GraphDef, task: Task) -> Callable:
    """The pure evaluation step ``(model_state, arrays, idx, mask) -> metric sums``."""
    def step(model_state, arrays, idx, mask):
        return task.eval_sums(nnx.merge(graphdef, model_state), _gather(arrays, idx), mask)

    return step


def _sum_metrics(sums: dict | None, new: dict) -> dict:
    return new if sums is None else jax.tree.map(jnp.add, sums, new)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; ``step`` is the first such step (0-based)."""

    def __init__(self, step: int, loss: float, checkpoint: str | None = None):
        self.step, self.loss, self.checkpoint = step, loss, checkpoint
        where = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written"
        super().__init__(f"non-finite training loss {loss} at step {step}; training stopped ({where}). "
                         f"Lower the learning rate or check the inputs.")


class Trainer:
    """A model, its optimiser and the jitted steps that update them.

    ``state`` is the single pytree that changes during training (parameters, batch
    statistics, dropout RNG counters, optimiser state). ``train_step`` and
    ``eval_step`` are jitted once; ``compilations()`` counts how often they were
    actually compiled (the tests assert it stays at one per shape).
    """

    def __init__(self, model: nnx.Module, task: Task, tx: optax.GradientTransformation | nnx.Object,
                 seed: int = 0, learning_rate: Callable[[int], float] | None = None,
                 data_parallel: parallel_lib.DataParallel | None = None):
        """``tx``: an optax transformation (wrapped in ``nnx.Optimizer``), or an optimiser
        object already built for ``model`` (e.g. ``task.make_optimizer(model, ...)``).
        ``learning_rate``: the rate at each step, for :meth:`learning_rate` (the history's
        ``"lr"``); :func:`build_trainer` passes the task's peak times the schedule."""
        self.task = task
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param) if isinstance(tx, optax.GradientTransformation) else tx
        model.train()  # train/eval mode is static graph data: one graphdef for each
        graph_train, state = nnx.split((model, optimizer))
        self.dp = data_parallel if data_parallel is not None else parallel_lib.DataParallel()
        self.state = self.dp.replicate(state)
        model.eval()
        self._model = model
        self._learning_rate = learning_rate
        self._base_key = jax.random.key(seed)
        self.step = 0
        self._traces = {"train": 0, "eval": 0}
        self.train_step = jax.jit(self._counted("train", train_step_fn(graph_train, task)), donate_argnums=0,
                                  **self.dp.jit_kwargs())
        self.eval_step = jax.jit(self._counted("eval", eval_step_fn(nnx.graphdef(model), task)),
                                 **self.dp.jit_kwargs())

    @property
    def model_state(self):
        """The model's part of the state (what evaluation and checkpoints need)."""
        return self.state[0]

    def learning_rate(self) -> float:
        """The learning rate of the next step (peak rate times the schedule)."""
        if self._learning_rate is None:
            raise ValueError("this Trainer was built without a learning-rate schedule; build it with "
                             "train.build_trainer or pass learning_rate=")
        return float(self._learning_rate(self.step))

    def run_epoch(self, arrays: dict, batch_indices: np.ndarray, progress: tqdm | None = None) -> dict:
        """One pass over ``batch_indices``; returns the mean of the per-step metrics.

        The host work per step is one call of the jitted step: the epoch's batch indices go
        to the device in one transfer and its RNG keys are derived in one call before the
        loop, and the metrics are summed after it. On a 2-core CPU the Python thread shares
        the cores with XLA, so per-step host work showed up in the step time
        (``benchmarks/cpu_probes.md``).

        Raises :class:`NonFiniteLossError` naming the first step whose loss was NaN/inf.
        """
        first_step = self.step
        steps = len(batch_indices)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
            self._base_key, np.arange(first_step, first_step + steps, dtype=np.uint32))
        history = []
        for i, (idx, key) in enumerate(zip(self.dp.shard_batches(batch_indices), keys)):
            self.state, metrics = self.train_step(self.state, arrays, idx, key)
            history.append(metrics)
            self.step += 1
            if progress is not None:
                progress.update(1)
                if i % 50 == 0:
                    progress.set_postfix(loss=f"{float(metrics['loss']):.4f}", refresh=False)
        history = jax.device_get(history)
        losses = np.array([m["loss"] for m in history])
        finite = np.isfinite(losses)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise NonFiniteLossError(first_step + bad, float(losses[bad]))
        return {k: float(np.mean([m[k] for m in history], dtype=np.float64)) for k in history[0]}

    def evaluate(self, arrays: dict, batch_size: int = 1000, model_state=None) -> dict:
        """Metrics averaged over every example of ``arrays`` (eval mode: no dropout, running BN)."""
        return evaluate(self.eval_step, self.model_state if model_state is None else model_state,
                        arrays, batch_size, self.dp)

    def compilations(self, step: str | None = None) -> int:
        """How many programs the train and eval steps (``step``: ``"train"`` or ``"eval"`` only)
        have compiled so far: each compilation traces the step once."""
        if step is None:
            return sum(self._traces.values())
        if step not in self._traces:
            raise ValueError(f"step must be one of {sorted(self._traces)} or None; got {step!r}")
        return self._traces[step]

    def _counted(self, name: str, fn: Callable) -> Callable:
        """``fn`` that counts how often JAX traces it: once per compiled program."""
        def traced(*args):
            self._traces[name] += 1
            return fn(*args)
        traced.__name__ = traced.__qualname__ = f"{name}_step"   # names the program in logs and profiles
        return traced

    def sync_model(self, model_state=None) -> nnx.Module:
        """Write ``model_state`` (default: the current one) into the model object and return it."""
        nnx.update(self._model, self.model_state if model_state is None else model_state)
        self._model.eval()
        return self._model


def evaluate(eval_step: Callable, model_state, arrays: dict, batch_size: int,
             dp: parallel_lib.DataParallel | None = None) -> dict:
    """Run a (possibly vmapped) eval step over every example once; average the sums.

    With ``dp`` over several devices, batches are rounded up to a multiple of the device
    count (the padding is masked) and split across devices.
    """
    n = len(next(iter(arrays.values())))
    size = min(batch_size, n) if dp is None else dp.eval_batch_size(batch_size, n)
    idx, mask = data_lib.eval_batches(n, size)
    shard = (lambda a: a) if dp is None else dp.shard_batch
    sums = None
    for i, m in zip(idx, mask):
        sums = _sum_metrics(sums, eval_step(model_state, arrays, shard(i), shard(m)))
    return {k: np.asarray(v) / n for k, v in jax.device_get(sums).items()}


# --------------------------------------------------------------------------- loop

def build_trainer(model: nnx.Module, task: Task, cfg: TrainConfig, steps_per_epoch: int, *,
                  data_parallel: parallel_lib.DataParallel | None = None) -> Trainer:
    """The :class:`Trainer` that :func:`fit` trains with: the task's optimiser for ``cfg``, and
    the learning rate of each step (the task's peak times ``cfg.schedule``) for the history."""
    shape = lr_schedule(cfg, steps_per_epoch)
    peak = task.peak_learning_rate(cfg)
    return Trainer(model, task, task.make_optimizer(model, cfg, steps_per_epoch), seed=cfg.seed,
                   learning_rate=lambda step: peak * float(shape(step)), data_parallel=data_parallel)


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (best epoch's weights) and its history."""

    model: nnx.Module
    history: list[dict]
    best_epoch: int
    train_seconds: float
    trainer: Trainer
    reused: bool = False     # loaded from an identical finished training instead of trained

    def column(self, name: str) -> np.ndarray:
        return np.array([row[name] for row in self.history])


@dataclasses.dataclass
class _Progress:
    """What the epoch loop carries from epoch to epoch (and saves with each checkpoint)."""

    history: list[dict] = dataclasses.field(default_factory=list)
    best: Any = None
    best_epoch: int = 0
    best_state: Any = None
    train_seconds: float = 0.0
    epoch: int = 0


def _epoch_loop(runner, cfg: TrainConfig, n: int, *, fingerprint: dict, what: str, monitor: str | None,
                maximize: bool, keep_best: bool, progress: bool, log: Callable[[str], None] | None,
                checkpoint_dir, checkpoint_every: int,
                on_epoch_end: Callable[[dict], None] | None = None,
                epoch_metrics: Callable[[], dict[str, float]] | None = None, train: bool = True) -> _Progress:
    """The one epoch loop of :func:`fit` and :func:`sweep`: batches, history rows, best epoch,
    per-epoch checkpoints, resume and the non-finite-loss stop.

    ``runner`` trains: ``step``, ``state``, ``model_state``, ``learning_rate()``,
    ``run_epoch(batch_indices, bar)`` (raises :class:`NonFiniteLossError`), ``evaluate()``
    (``{}`` without validation data), ``restore(state)`` and ``describe(row)`` (the log line).
    ``keep_best``: keep a copy of the model state of the best epoch by ``monitor`` (None: the
    last); the checkpoint then holds ``(state, best_state)``, else ``state``.
    ``train=False``: only restore the newest checkpoint (a finished training being reused).
    """
    _check_checkpoint_every(checkpoint_every)
    steps = n // cfg.batch_size
    done = _Progress()
    like = (runner.state, runner.model_state) if keep_best else runner.state
    resumed = _resume(checkpoint_dir, like, fingerprint, what, log)
    if resumed is not None:
        state, saved = resumed
        if keep_best:
            state, done.best_state = state
        runner.restore(state, done.best_state)
        done.history = [{k: np.asarray(v) if isinstance(v, list) else v for k, v in row.items()}
                        for row in saved["history"]]
        done.best, done.best_epoch = saved.get("best"), saved.get("best_epoch", 0)
        done.train_seconds, done.epoch, runner.step = saved["train_seconds"], saved["epoch"], saved["step"]
        if keep_best:
            done.best_state = runner.best_state
    epoch_key = jax.random.fold_in(jax.random.key(cfg.seed), 1_000_003)
    for epoch in range(done.epoch + 1, cfg.epochs + 1 if train else 0):
        lr = runner.learning_rate()
        t0 = time.perf_counter()
        bar = tqdm(total=steps, desc=f"{runner.label}epoch {epoch}/{cfg.epochs}", leave=False, disable=not progress)
        idx = data_lib.epoch_batches(jax.random.fold_in(epoch_key, epoch), n, cfg.batch_size)
        try:
            train_metrics = runner.run_epoch(idx, bar)
        except NonFiniteLossError as err:
            last = ckpt_lib.latest_training(checkpoint_dir) if checkpoint_dir is not None else None
            raise NonFiniteLossError(err.step, err.loss, str(last) if last else None) from None
        finally:
            bar.close()
        seconds = time.perf_counter() - t0
        done.train_seconds += seconds
        row = {"epoch": epoch, "lr": lr, "seconds": seconds, "images_per_sec": steps * cfg.batch_size / seconds}
        row.update({f"train_{k}": v for k, v in train_metrics.items()})
        val_metrics = runner.evaluate()
        validate.finite_metrics(val_metrics, f"epoch {epoch}: validation")
        row.update({f"val_{k}": v for k, v in val_metrics.items()})
        if epoch_metrics is not None:
            row.update({k: float(v) for k, v in epoch_metrics().items()})
        done.history.append(row)
        improved = False
        if keep_best:
            score = validate.monitored(row, monitor)
            improved = (done.best is None or monitor is None
                        or (score > done.best if maximize else score < done.best))
            if improved:
                done.best, done.best_epoch = score, epoch
                done.best_state = jax.tree.map(jnp.copy, runner.model_state)
        else:
            done.best_epoch = epoch
        if log is not None:
            log(runner.describe(row) + ("  *" if improved else ""))
        if checkpoint_dir is not None and (epoch % checkpoint_every == 0 or epoch == cfg.epochs):
            doc = {"fingerprint": fingerprint, "epoch": epoch, "step": runner.step, "history": done.history,
                   "best": done.best, "best_epoch": done.best_epoch, "train_seconds": done.train_seconds}
            state = (runner.state, done.best_state) if keep_best else runner.state
            ckpt_lib.save_training(checkpoint_dir, epoch, state, json.loads(json.dumps(doc, default=json_default)))
        done.epoch = epoch
        if on_epoch_end is not None:
            try:
                on_epoch_end(row)
            except StopIteration:
                break
    return done


class _FitRunner:
    """:func:`fit`'s side of the epoch loop: a :class:`Trainer` over device-resident data."""

    label = ""

    def __init__(self, trainer: Trainer, train_dev: dict, val_dev: dict | None, eval_batch_size: int):
        self.trainer, self.train_dev, self.val_dev, self.eval_batch_size = trainer, train_dev, val_dev, eval_batch_size
        self.best_state = None

    step = property(lambda self: self.trainer.step, lambda self, v: setattr(self.trainer, "step", v))
    state = property(lambda self: self.trainer.state)
    model_state = property(lambda self: self.trainer.model_state)

    def learning_rate(self) -> float:
        return self.trainer.learning_rate()

    def run_epoch(self, idx, bar) -> dict:
        return self.trainer.run_epoch(self.train_dev, idx, bar)

    def evaluate(self) -> dict:
        if self.val_dev is None:
            return {}
        return {k: float(v) for k, v in self.trainer.evaluate(self.val_dev, self.eval_batch_size).items()}

    def restore(self, state, best_state) -> None:
        self.trainer.state, self.best_state = self.trainer.dp.replicate((state, best_state))

    def describe(self, row: dict) -> str:
        return format_row(row)


def fit(model: nnx.Module, task: Task, train: dict[str, np.ndarray],
        val: dict[str, np.ndarray] | None, cfg: TrainConfig, *,
        monitor: str | None = "val_accuracy", maximize: bool | None = None, progress: bool | None = None,
        on_epoch_end: Callable[[dict, Trainer], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 1,
        log: Callable[[str], None] | None = print,
        data_parallel: parallel_lib.DataParallel | None = None,
        epoch_metrics: Callable[[Trainer], dict[str, float]] | None = None) -> FitResult:
    """Train ``model`` in place for ``cfg.epochs`` epochs; keep the weights of the best epoch.

    Args:
      train, val: dicts of equal-length arrays (e.g. ``ImageDataset.arrays()``); put on
        the device once. ``val`` may be None (then the last epoch is kept).
      monitor: the history column that picks the best epoch; None keeps the last epoch.
      maximize: whether a larger ``monitor`` is better; default: as the task declares
        (:meth:`Task.maximizes`; ``epoch_metrics`` columns are minimised unless the task
        names them in ``higher_is_better``).
      progress: show a tqdm bar per epoch; default: yes, unless ``$IMGMINE_PROGRESS=0``
        (the notebook runner sets it, so rendered results keep only the epoch lines).
      on_epoch_end: called with each history row and the trainer (for figures,
        early stopping by raising ``StopIteration``).
      checkpoint_dir: save the complete training state (weights, optimiser, RNG
        counters, step, history, best weights) there every ``checkpoint_every`` epochs
        with Orbax; a rerun with the same configuration resumes from the newest complete
        checkpoint and ends with bitwise the same weights and history (on CPU) as an
        uninterrupted run. Default: a directory under ``artifacts/training/`` named by a
        hash of the configuration, the model's parameter shapes, the training data and
        the package's code -- so a notebook killed mid-run resumes where it stopped when
        it is run again. When training completes the directory is kept and marked
        finished, and the same call again (a re-run notebook, the runner's retry after a
        dead kernel) loads the result instead of training (``FitResult.reused``); calls
        with ``on_epoch_end`` or ``epoch_metrics`` are not reused (their side effects would
        be lost) and delete it. ``$IMGMINE_CACHE=0`` deletes it too; ``$IMGMINE_RESUME=0``
        trains without checkpoints.
      epoch_metrics: called after each epoch's training (and validation) with the trainer;
        the numbers it returns join that epoch's history row *before* the best epoch is
        chosen and the checkpoint is written (so ``monitor`` may name one, and a resumed
        run keeps them). For metrics that are not sums over batches (e.g. a GAN's FID).

    Returns a :class:`FitResult`; its history has one row per epoch: train/val loss and
    metrics, learning rate, epoch wall time and training images per second.
    """
    validate.fit_call(model, task, train, val, cfg, monitor=monitor, checkpoint_dir=checkpoint_dir,
                      checkpoint_every=checkpoint_every, on_epoch_end=on_epoch_end, log=log,
                      epoch_metrics=epoch_metrics)
    n = len(next(iter(train.values())))
    if cfg.batch_size > n:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set ({n} examples)")
    steps = n // cfg.batch_size
    trainer = build_trainer(model, task, cfg, steps, data_parallel=data_parallel)
    trainer.dp.check_batch_size(cfg.batch_size)
    runner = _FitRunner(trainer, trainer.dp.replicate(train), trainer.dp.replicate(val) if val is not None else None,
                        cfg.eval_batch_size)
    ckpt_lib.sync_processes("fit start")   # the processes start their first collective together
    if val is None and monitor is not None and monitor.startswith("val_"):
        monitor = None                    # nothing to select on: keep the last epoch, as documented
    if maximize is None:
        maximize = monitor is not None and task.maximizes(monitor)
    fingerprint = {"config": dataclasses.asdict(cfg), "task": repr(task), "examples": n, "monitor": monitor,
                   "data": ckpt_lib.data_fingerprint(train, val)}
    if jax.process_count() > 1:   # a checkpoint of another process count is refused, not resumed
        fingerprint["processes"] = jax.process_count()
    automatic = checkpoint_dir is None and os.environ.get(RESUME_ENV, "1") != "0"
    if automatic:
        checkpoint_dir = _automatic_checkpoint_dir(fingerprint, model, train, trainer.dp.size)
    # A finished training is reused only without callbacks: their side effects (a GAN's
    # progression frames, early stopping) would not happen again.
    cacheable = automatic and on_epoch_end is None and epoch_metrics is None
    finished = cacheable and _finished_training(checkpoint_dir)
    done = _epoch_loop(runner, cfg, n, fingerprint=fingerprint, what="run", monitor=monitor, maximize=maximize,
                       keep_best=True, progress=show_progress(progress), log=None if finished else log,
                       checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                       on_epoch_end=None if on_epoch_end is None else (lambda row: on_epoch_end(row, trainer)),
                       epoch_metrics=None if epoch_metrics is None else (lambda: epoch_metrics(trainer)),
                       train=not finished)
    if finished and log is not None:
        log(f"reused the finished training in {checkpoint_dir} ({len(done.history)} epochs, "
            f"{done.train_seconds:.0f} s of training; {CACHE_ENV}=0 retrains)")
    model = trainer.sync_model(done.best_state)
    if automatic:
        _settle_automatic_checkpoint(checkpoint_dir, done, cacheable=cacheable, finished=finished)
    ckpt_lib.sync_processes("imgmine fit done")
    _runs.record_training("fit", cfg, done.history, reused=finished, task=repr(task),
                          cache_key=checkpoint_dir.name if automatic else None, train_seconds=done.train_seconds)
    return FitResult(model=model, history=done.history, best_epoch=done.best_epoch,
                     train_seconds=done.train_seconds, trainer=trainer, reused=finished)


def _finished_training(checkpoint_dir: Path) -> bool:
    """Whether an automatic checkpoint directory holds a finished training (marker and checkpoint).
    With ``$IMGMINE_CACHE=0`` a finished one is deleted, so the call trains from scratch."""
    if not (checkpoint_dir / FINISHED).is_file():
        return False
    if os.environ.get(CACHE_ENV, "1") == "0":
        if ckpt_lib.is_primary():
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        return False
    if ckpt_lib.latest_training(checkpoint_dir) is None:
        (checkpoint_dir / FINISHED).unlink()   # its checkpoint is gone: train again
        return False
    return True


def _settle_automatic_checkpoint(checkpoint_dir: Path, done: "_Progress", *, cacheable: bool,
                                 finished: bool) -> None:
    """After :func:`fit` or :func:`sweep` ran into an automatic checkpoint directory: keep it,
    marked finished, when the call may be reused and its last epoch is saved (the same call
    again -- a re-run notebook, a runner retry after a dead kernel -- then loads the result
    instead of training); otherwise delete it. Process 0 alone writes the shared directory."""
    if not ckpt_lib.is_primary():
        return
    latest = ckpt_lib.latest_training(checkpoint_dir)
    if (not cacheable or os.environ.get(CACHE_ENV, "1") == "0"
            or latest is None or latest.name != f"epoch-{done.epoch:04d}"):
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    elif not finished:
        atomic_write_bytes(checkpoint_dir / FINISHED,
                           json.dumps({"epochs": done.epoch, "train_seconds": done.train_seconds}).encode())


def _check_checkpoint_every(checkpoint_every) -> None:
    if not (_is_int(checkpoint_every) and checkpoint_every >= 1):
        raise ValueError(f"checkpoint_every must be an integer >= 1; got {checkpoint_every!r}")


def _resume(checkpoint_dir, like, fingerprint: dict, what: str,
            log: Callable[[str], None] | None) -> tuple[Any, dict] | None:
    """``(state, progress)`` from the newest complete checkpoint in ``checkpoint_dir``, or None.

    Refuses a checkpoint written with another ``fingerprint`` (configuration, task, data size).
    """
    latest = ckpt_lib.latest_training(checkpoint_dir) if checkpoint_dir is not None else None
    if latest is None:
        return None
    state, saved = ckpt_lib.restore_training(latest, like)
    if saved["fingerprint"] != json.loads(json.dumps(fingerprint, default=str)):
        raise ckpt_lib.CheckpointError(
            f"{latest} was written by a {what} with different parameters; resume with the same "
            f"configuration or use another checkpoint_dir (stored: {saved['fingerprint']}, now: {fingerprint})")
    if log is not None:
        log(f"resumed from {latest} (epoch {saved['epoch']}, step {saved['step']})")
    return state, saved


def _automatic_checkpoint_dir(fingerprint: dict, model: nnx.Module, train: dict[str, np.ndarray],
                              devices: int = 1) -> Path:
    """``artifacts/training/<hash>``: the same configuration, architecture, initial weights, data,
    device count and package code give the same directory (and so the same finished training)."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode())
    shapes = [(jax.tree_util.keystr(p), tuple(x.shape), str(x.dtype))
              for p, x in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))]
    digest.update(f"{type(model).__name__}{shapes} on {devices} device(s)".encode())
    # The static structure too: two networks with the same parameters and initial weights can
    # still compute different things (an output softmax switched on or off); function
    # addresses in the description change from process to process and are dropped.
    digest.update(re.sub(r" at 0x[0-9a-fA-F]+", "", str(nnx.graphdef(model))).encode())
    for leaf in jax.tree.leaves(nnx.state(model)):   # initial weights and RNG state: the seed it was built with
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        digest.update(np.ascontiguousarray(np.asarray(leaf)).data)
    for key in sorted(train):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(train[key]).data)
    digest.update(package_code_digest().encode())
    return ckpt_lib.artifacts_dir() / "training" / digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def package_code_digest() -> str:
    """A hash of the package's source files: a finished training is reused only by the same code."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def show_progress(progress: bool | None) -> bool:
    """Explicit choice, else on unless ``$IMGMINE_PROGRESS`` is ``0``."""
    return os.environ.get("IMGMINE_PROGRESS", "1") != "0" if progress is None else bool(progress)


def format_row(row: dict) -> str:
    """One line per epoch: ``epoch 3  train_loss 0.0412  val_accuracy 0.9921 ...``."""
    parts = [f"epoch {row['epoch']:>3}"]
    for k, v in row.items():
        if k == "epoch":
            continue
        if k == "images_per_sec":
            parts.append(f"{v:,.0f} img/s")
        elif k == "seconds":
            parts.append(f"{v:.1f}s")
        elif k == "lr":
            parts.append(f"lr {v:.2e}")
        else:
            parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


def apply_batched(model: nnx.Module, fn: Callable[[nnx.Module, Any], Any], inputs: Any,
                  batch_size: int = 1000, data_parallel: parallel_lib.DataParallel | None = None) -> Any:
    """``fn(model, batch)`` in eval mode over ``inputs`` (examples along the first axis), jitted
    once: fixed-size batches (the last one padded), the outputs (a pytree) cut back to
    ``len(inputs)`` rows. The one batched-inference helper of the package (:func:`predict`,
    the sequence models' completions and frames, embeddings, attributions and attacks).

    ``inputs`` is an array or a pytree of arrays of one length (e.g. ``(images, labels)``);
    ``fn`` gets a batch of the same structure. With several devices (``data_parallel``,
    default: this process's) each batch is split over them.
    """
    inputs = jax.tree.map(np.asarray, inputs)
    num = validate.same_length("apply_batched(inputs)", **{str(i): a for i, a in enumerate(jax.tree.leaves(inputs))})
    model.eval()
    graphdef, state = nnx.split(model)
    dp = data_parallel if data_parallel is not None else parallel_lib.DataParallel(jax.local_devices())
    state = dp.replicate(state)

    def apply(state, x):
        return fn(nnx.merge(graphdef, state), x)

    apply = jax.jit(apply, **dp.jit_kwargs())   # outputs replicated: every process gets every row

    idx, _ = data_lib.eval_batches(num, dp.eval_batch_size(batch_size, num))
    outs = [jax.device_get(apply(state, jax.tree.map(lambda a: dp.shard_batch(a[i]), inputs))) for i in idx]
    return jax.tree.map(lambda *parts: np.concatenate(parts)[:num], *outs)


def predict(model: nnx.Module, images: np.ndarray, batch_size: int = 1000,
            fn: Callable[[nnx.Module, jax.Array], jax.Array] | None = None,
            data_parallel: parallel_lib.DataParallel | None = None) -> np.ndarray:
    """Apply ``fn(model, normalized_images)`` (default: the logits) in eval mode, batched and jitted
    (:func:`apply_batched`).

    ``images`` are uint8 ``(N, H, W, C)`` as stored by :mod:`imgmine_jax.data`. With several
    devices (``data_parallel``, default: this process's) each batch is split over them.
    """
    validate.predict_call(model, images, batch_size, fn)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"predict expects uint8 images of shape (N, H, W, C); got {images.dtype} "
                         f"{images.shape}")
    fn = fn or (lambda m, x: m(x))
    return apply_batched(model, lambda m, x: fn(m, data_lib.normalize(x)), images, batch_size, data_parallel)


def tta_views(shift: int = 1, flip: bool = False) -> list[tuple[int, int, bool]]:
    """Test-time augmentation views ``(dy, dx, flip)``: the image, its ``shift``-pixel moves
    up/down/left/right (if ``shift``), and the mirror image of each (if ``flip``)."""
    if not validate.is_int(shift) or shift < 0:
        raise ValueError(f"shift must be a non-negative integer (pixels); got {shift!r}")
    validate.boolean(flip, "tta_views(flip)")
    moves = [(0, 0)] + ([(-shift, 0), (shift, 0), (0, -shift), (0, shift)] if shift else [])
    return [(dy, dx, f) for f in ((False, True) if flip else (False,)) for dy, dx in moves]


def predict_tta(model: nnx.Module, images: np.ndarray, *, shift: int = 1, flip: bool = False,
                batch_size: int = 1000) -> np.ndarray:
    """Class probabilities averaged over test-time augmentation views (:func:`tta_views`).

    The views should be transformations the model was trained to be invariant to (its
    ``augment_shift`` / ``augment_flip``); mirror images are wrong for digits. All views of
    a batch are made and classified on the device, in the one program :func:`predict` jits.
    """
    views = tta_views(shift, flip)
    black = data_lib.normalize(jnp.zeros((), jnp.uint8))   # the fill, after normalisation

    def mean_probabilities(m, x):
        probs = 0.0
        for dy, dx, f in views:
            v = shift_images(x, dy, dx, fill=black)
            probs = probs + jax.nn.softmax(m(v[:, :, ::-1] if f else v), axis=-1)
        return probs / len(views)

    return predict(model, images, batch_size, fn=mean_probabilities)


# --------------------------------------------------------------------------- vmapped sweeps

@dataclasses.dataclass
class SweepResult:
    """Per-member results of :func:`sweep`: one entry per ``(learning_rate, seed)``."""

    learning_rates: np.ndarray
    seeds: np.ndarray
    history: list[dict]           # per epoch; metric values are arrays over members
    train_seconds: float
    states: Any = None            # the members' stacked (model, optimiser) states after training
    reused: bool = False          # loaded from a finished sweep with the same key, not trained

    def final(self, name: str) -> np.ndarray:
        return np.asarray(self.history[-1][name])


def sweep_program(make_model: Callable[[nnx.Rngs], nnx.Module], task: Task, cfg: TrainConfig,
                  steps_per_epoch: int, learning_rates: np.ndarray, seeds: np.ndarray,
                  mesh: jax.sharding.Mesh | None = None) -> tuple[Any, Callable, Callable]:
    """The stacked states and the jitted, vmapped steps that :func:`sweep` runs.

    Member ``i`` is ``make_model(nnx.Rngs(seeds[i]))`` with its optimiser at peak
    ``learning_rates[i]``. Returns ``(states, step_fn, eval_fn)``: ``step_fn(states, arrays,
    idx, key)`` (states donated) and ``eval_fn(model_states, arrays, idx, mask)`` share the
    batch and key across members.

    ``mesh`` (:func:`imgmine_jax.parallel.member_mesh`): split the members over its devices
    with ``jax.shard_map``, each device running the vmapped step on its share; the arrays,
    batch and key must then be replicated on the mesh.
    """
    def init(seed, lr):
        model = make_model(nnx.Rngs(jax.random.key(seed)))  # == nnx.Rngs(seed), traceable
        model.train()
        return nnx.state((model, task.make_optimizer(model, cfg, steps_per_epoch, lr)))

    template = make_model(nnx.Rngs(0))
    template.train()
    graph_train = nnx.graphdef((template, task.make_optimizer(template, cfg, steps_per_epoch)))
    template.eval()
    graph_eval = nnx.graphdef(template)
    step = jax.vmap(train_step_fn(graph_train, task), in_axes=(0, None, None, None))
    evaluate_members = jax.vmap(eval_step_fn(graph_eval, task), in_axes=(0, None, None, None))
    placement = {}
    if mesh is not None:
        members, shared = jax.sharding.PartitionSpec(parallel_lib.MEMBERS), jax.sharding.PartitionSpec()
        specs = dict(mesh=mesh, in_specs=(members, shared, shared, shared), out_specs=members,
                     check_vma=False)   # the members' custom-VJP convolution carries no varying-axis types
        step, evaluate_members = jax.shard_map(step, **specs), jax.shard_map(evaluate_members, **specs)
        placement = {"out_shardings": jax.sharding.NamedSharding(mesh, members)}
    states = jax.jit(jax.vmap(init), **placement)(seeds, learning_rates)
    return states, jax.jit(step, donate_argnums=0), jax.jit(evaluate_members)


class _SweepRunner:
    """:func:`sweep`'s side of the epoch loop: the stacked members' states and vmapped steps."""

    label = "sweep "

    def __init__(self, states, step_fn, eval_fn, train_dev, val_dev, cfg: TrainConfig, lrs: np.ndarray,
                 member_seeds: np.ndarray, schedule: optax.Schedule):
        self.state, self.step_fn, self.eval_fn = states, step_fn, eval_fn
        self.train_dev, self.val_dev, self.cfg = train_dev, val_dev, cfg
        self.lrs, self.member_seeds, self.schedule = lrs, member_seeds, schedule
        self.base_key = jax.random.key(cfg.seed)
        self.step = 0
        self.best_state = None

    model_state = property(lambda self: self.state[0])

    def learning_rate(self) -> np.ndarray:
        return self.lrs * float(self.schedule(self.step))

    def run_epoch(self, idx, bar) -> dict:
        sums, losses, first_step = None, [], self.step
        for batch_idx in idx:
            self.state, metrics = self.step_fn(self.state, self.train_dev, batch_idx,
                                               jax.random.fold_in(self.base_key, self.step))
            sums = _sum_metrics(sums, metrics)
            losses.append(metrics["loss"])
            self.step += 1
            bar.update(1)
        finite = np.isfinite(np.stack(jax.device_get(losses))).all(axis=1)
        if not finite.all():
            bad = int(np.argmin(finite))
            loss = np.asarray(jax.device_get(losses[bad]))
            raise NonFiniteLossError(first_step + bad, float(loss[~np.isfinite(loss)][0]))
        return {k: np.asarray(v) / len(idx) for k, v in jax.device_get(sums).items()}

    def evaluate(self) -> dict:
        return evaluate(self.eval_fn, self.state[0], self.val_dev, self.cfg.eval_batch_size)

    def restore(self, state, best_state) -> None:
        self.state = state

    def describe(self, row: dict) -> str:
        best = int(np.argmax(row.get("val_accuracy", -row["val_loss"])))
        return (f"sweep epoch {row['epoch']:>3}  {row['seconds']:.1f}s  {len(self.lrs)} members  best: "
                f"lr {self.lrs[best]:.1e} seed {self.member_seeds[best]}  " +
                "  ".join(f"{k} {float(np.asarray(v)[best]):.4f}" for k, v in row.items()
                          if k.startswith(("train_", "val_"))))


def sweep(make_model: Callable[[nnx.Rngs], nnx.Module], task: Task, train: dict, val: dict,
          cfg: TrainConfig, learning_rates: Sequence[float], seeds: Sequence[int], *,
          progress: bool | None = None, log: Callable[[str], None] | None = print,
          checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 1,
          devices: Sequence[jax.Device] | None = None) -> SweepResult:
    """Train one model per ``(learning_rate, seed)`` pair *together*, in one compiled program.

    Every member is built by ``make_model(nnx.Rngs(seed))`` and trained with ``cfg``
    except for its own peak learning rate; the states are stacked along a leading axis
    and the training step is ``jax.vmap``-ed over it. The member seed sets the
    initialisation (and the dropout stream, which lives in the model); batches and
    augmentation draws come from ``cfg.seed`` and are shared. So member ``i`` is
    exactly ``fit(make_model(nnx.Rngs(seeds[i])), ..., replace(cfg, learning_rate=lrs[i]))``.

    With several devices (``devices``, default: every local one; more than one CPU device
    with :func:`imgmine_jax.parallel.use_cpu_devices`), the members are split over as many
    of them as divide their number evenly, each device training its share in the same
    program (:func:`imgmine_jax.parallel.member_mesh`).

    The epochs run in :func:`fit`'s loop: the history has :func:`fit`'s columns (each an
    array over members; ``"lr"`` is each member's rate), a NaN/inf loss in any member stops
    training with :class:`NonFiniteLossError`, and ``checkpoint_dir`` / ``checkpoint_every``
    save the stacked states, step, history and time with Orbax so that a rerun with the same
    arguments resumes from the newest complete checkpoint and ends bitwise where an
    uninterrupted sweep ends. Without ``checkpoint_dir`` the directory is automatic, as
    :func:`fit`'s: an interrupted sweep resumes, and a finished one called again is loaded,
    history and training time included, instead of trained (``SweepResult.reused``;
    ``$IMGMINE_CACHE=0`` retrains, ``$IMGMINE_RESUME=0`` runs without checkpoints).
    """
    validate.sweep_call(make_model, task, train, val, cfg, learning_rates, seeds, checkpoint_dir=checkpoint_dir,
                        checkpoint_every=checkpoint_every)
    lrs = np.array([lr for lr in learning_rates for _ in seeds], dtype=np.float32)
    member_seeds = np.array([s for _ in learning_rates for s in seeds], dtype=np.uint32)
    if len(lrs) == 0 or np.any(lrs <= 0):
        raise ValueError(f"sweep needs positive learning rates and at least one seed; got "
                         f"learning_rates={list(learning_rates)}, seeds={list(seeds)}")
    n = len(next(iter(train.values())))
    if cfg.batch_size > n:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set ({n} examples)")
    steps = n // cfg.batch_size
    mesh = parallel_lib.member_mesh(len(lrs), devices)
    states, step_fn, eval_fn = sweep_program(make_model, task, cfg, steps, lrs, member_seeds, mesh)
    shared = None if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    runner = _SweepRunner(states, step_fn, eval_fn, data_lib.to_device(train, shared), data_lib.to_device(val, shared),
                          cfg, lrs, member_seeds, lr_schedule(cfg, steps))
    fingerprint = {"config": dataclasses.asdict(cfg), "task": repr(task), "examples": n,
                   "learning_rates": lrs.tolist(), "seeds": member_seeds.tolist(),
                   "data": ckpt_lib.data_fingerprint(train, val)}
    # As fit: without checkpoint_dir, an automatic one keyed by the configuration, the members,
    # the architecture (a member built from seed 0), the data and the package code, so an
    # interrupted sweep resumes and a finished one is loaded instead of trained again.
    automatic = checkpoint_dir is None and os.environ.get(RESUME_ENV, "1") != "0"
    if automatic:
        checkpoint_dir = _automatic_checkpoint_dir(fingerprint, make_model(nnx.Rngs(0)), train,
                                                   1 if mesh is None else mesh.size)
    finished = automatic and _finished_training(checkpoint_dir)
    done = _epoch_loop(runner, cfg, n, fingerprint=fingerprint, what="sweep", monitor=None, maximize=False,
                       keep_best=False, progress=show_progress(progress), log=None if finished else log,
                       checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, train=not finished)
    if finished and log is not None:
        log(f"reused the finished sweep in {checkpoint_dir} ({len(done.history)} epochs, "
            f"{done.train_seconds:.0f} s of training; {CACHE_ENV}=0 retrains)")
    if automatic:
        _settle_automatic_checkpoint(checkpoint_dir, done, cacheable=True, finished=finished)
    _runs.record_training("sweep", cfg, done.history, reused=finished, task=repr(task),
                          cache_key=checkpoint_dir.name if automatic else None, train_seconds=done.train_seconds,
                          members=[{"learning_rate": float(lr), "seed": int(s)} for lr, s in zip(lrs, member_seeds)])
    return SweepResult(learning_rates=lrs, seeds=member_seeds, history=done.history,
                       train_seconds=done.train_seconds, states=runner.state, reused=finished)
