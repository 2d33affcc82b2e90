"""GAN training, sampling and scoring: the task :func:`imgmine_jax.train.fit` trains the
networks of :mod:`imgmine_jax.models.gan` with, and what notebook 03 measures them by.

* :class:`GANTask` -- a :class:`~imgmine_jax.train.Task` with its own pair of Adam
  optimisers (:class:`GANOptimizer`) and an update that takes one discriminator step and
  then one generator step inside the same jitted step, with the non-saturating loss
  (Goodfellow et al., 2014).
* Self-conditioning (Liu et al., 2020): :func:`pixel_clusters` gives unsupervised
  pseudo-labels (k-means on pixels) on which the conditional networks train as if they
  were classes, and :func:`draw_labels` samples them with their frequencies -- an
  unconditional model of the images built from the conditional one, with no labels.
* Sampling (:class:`Sampler`, :func:`sample`, :func:`latents`, :func:`slerp`) and
  classifier FID / Inception Score (:class:`ClassifierScorer`, :class:`EpochScores`).

The networks are re-exported here (``gan.GAN``, ``gan.Generator``, ``gan.Discriminator``)
so that a notebook imports one module.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imgmine_jax import data as data_lib
from imgmine_jax import metrics, mining
from imgmine_jax.models.gan import GAN, UPSAMPLE, Discriminator, Generator
from imgmine_jax.train import Task, lr_schedule

__all__ = ["GAN", "UPSAMPLE", "ClassifierScorer", "Discriminator", "EpochScores", "GANOptimizer", "GANTask",
           "Generator", "Sampler", "draw_labels", "generator_state", "latents", "pixel_clusters", "sample", "slerp",
           "to_uint8"]


class GANOptimizer(nnx.Object):
    """Two optimisers: ``g`` over the generator's parameters, ``d`` over the discriminator's."""

    def __init__(self, model: GAN, tx_g: optax.GradientTransformation, tx_d: optax.GradientTransformation):
        self.g = nnx.Optimizer(model.generator, tx_g, wrt=nnx.Param)
        self.d = nnx.Optimizer(model.discriminator, tx_d, wrt=nnx.Param)


def _d_loss(d: Discriminator, real, fake, labels, key, real_target):
    kr, kf = jax.random.split(key)
    real_logits = d(real, labels, rngs=kr)
    fake_logits = d(fake, labels, rngs=kf)
    loss = (optax.sigmoid_binary_cross_entropy(real_logits, jnp.full_like(real_logits, real_target)).mean()
            + jax.nn.softplus(fake_logits).mean())
    return loss, (real_logits, fake_logits)


def _g_loss(g: Generator, d: Discriminator, z, labels, key):
    logits = d(g(z, labels), labels, rngs=key)
    # non-saturating: maximise log D(G(z)) instead of minimising log(1 - D(G(z)))
    return jax.nn.softplus(-logits).mean(), logits


@dataclasses.dataclass(frozen=True)
class GANTask(Task):
    """Adversarial training on ``{"image": uint8[, "label"]}`` batches, one D then one G step per batch.

    Each batch: draw noise ``z`` from the step key; the discriminator takes an Adam step on
    ``-log D(x) - log(1 - D(G(z)))`` (real target ``real_label``, < 1 for one-sided label
    smoothing); then the generator takes an Adam step on ``-log D(G(z))`` through the
    *updated* discriminator. Dropout masks come from keys split off the same step key.
    Conditional GANs use the batch's labels for the generated images too (so classes are
    balanced as in the data).

    After the generator step, ``model.generator_ema`` moves towards the generator:
    ``ema <- ema_decay * ema + (1 - ema_decay) * weights`` (0: a plain copy).

    Logged per step: ``loss`` (D + G loss, the NaN guard), ``d_loss``, ``g_loss``,
    ``d_real`` (mean D(x), a probability) and ``d_fake`` (mean D(G(z)) before the D step).
    """

    latent_dim: int = 64
    conditional: bool = False
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    real_label: float = 1.0
    ema_decay: float = 0.995
    higher_is_better = frozenset({"d_real", "is", "class_accuracy"})

    def __post_init__(self):
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GANTask.{name} must be > 0; got {getattr(self, name)!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"GANTask.{name} must be in [0, 1); got {getattr(self, name)!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"GANTask.ema_decay must be in [0, 1) (0: no averaging); got {self.ema_decay!r}")
        if not 0.5 < self.real_label <= 1:
            raise ValueError(f"GANTask.real_label must be in (0.5, 1]; got {self.real_label!r}")

    # -- what train.fit asks of a task that brings its own optimiser and update
    def make_optimizer(self, model: GAN, cfg=None, steps_per_epoch: int | None = None,
                       learning_rate=None) -> GANOptimizer:
        """Adam for each network at ``lr_g`` / ``lr_d``, both shaped by ``cfg.schedule`` when a
        :class:`~imgmine_jax.train.TrainConfig` and the epoch length are given (else constant);
        ``cfg.learning_rate`` is not used, and a per-member ``learning_rate`` (a vmapped
        sweep's) is refused."""
        if learning_rate is not None:
            raise ValueError("GANTask takes its learning rates from lr_g / lr_d; a learning-rate sweep "
                             "of a GAN is not supported")
        if not isinstance(model, GAN):
            raise TypeError(f"GANTask trains a models.gan.GAN; got {type(model).__name__}")
        shape = None
        if cfg is not None and steps_per_epoch is not None:
            shape = lr_schedule(cfg, steps_per_epoch)

        def adam(lr: float) -> optax.GradientTransformation:
            rate = lr if shape is None else (lambda step: lr * shape(step))
            return optax.adam(rate, self.beta1, self.beta2)

        return GANOptimizer(model, adam(self.lr_g), adam(self.lr_d))

    def peak_learning_rate(self, cfg=None) -> float:
        """The generator's peak learning rate (the discriminator's is ``lr_d``), the history's ``"lr"``."""
        return float(self.lr_g)

    def _labels(self, batch):
        return batch["label"] if self.conditional else None

    def update(self, model: GAN, optimizer: GANOptimizer, batch: dict, key: jax.Array) -> dict:
        real = data_lib.normalize(batch["image"])
        labels = self._labels(batch)
        z_key, d_key, g_key = jax.random.split(key, 3)
        z = jax.random.normal(z_key, (real.shape[0], self.latent_dim))
        fake = jax.lax.stop_gradient(model.generator(z, labels))
        (d_loss, (real_logits, fake_logits)), d_grads = nnx.value_and_grad(_d_loss, has_aux=True)(
            model.discriminator, real, fake, labels, d_key, self.real_label)
        optimizer.d.update(model.discriminator, d_grads)
        (g_loss, _), g_grads = nnx.value_and_grad(_g_loss, has_aux=True)(
            model.generator, model.discriminator, z, labels, g_key)
        optimizer.g.update(model.generator, g_grads)
        # the averaged generator: EMA of the weights, the live generator's batch-norm statistics
        ema = jax.tree.map(lambda e, p: self.ema_decay * e + (1.0 - self.ema_decay) * p,
                           nnx.state(model.generator_ema, nnx.Param), nnx.state(model.generator, nnx.Param))
        nnx.update(model.generator_ema, ema, nnx.state(model.generator, nnx.BatchStat))
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss,
                "d_real": jax.nn.sigmoid(real_logits).mean(), "d_fake": jax.nn.sigmoid(fake_logits).mean()}

    def loss(self, model, batch, key):  # pragma: no cover - GANs train through update()
        raise NotImplementedError("GANTask trains through update(); it has no single loss")

    def eval_sums(self, model: GAN, batch: dict, mask: jax.Array) -> dict:
        """The discriminator on real images (eval mode): summed D(x) and real-image loss."""
        logits = model.discriminator(data_lib.normalize(batch["image"]), self._labels(batch))
        return {"d_real": jnp.sum(jax.nn.sigmoid(logits) * mask),
                "d_loss_real": jnp.sum(jax.nn.softplus(-logits) * mask)}


# --------------------------------------------------------------------------- sampling

def to_uint8(images: jax.Array | np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 [0, 255], as a saved image file would hold it."""
    return np.asarray(jnp.clip(jnp.round((jnp.asarray(images) + 1.0) * 127.5), 0, 255).astype(jnp.uint8))


class Sampler:
    """Jitted generation from a generator's state: ``sampler(state, z, labels) -> uint8 images``.

    Compiled once per batch shape; the generator runs in eval mode (running BN statistics).
    """

    def __init__(self, generator: Generator, batch_size: int = 500):
        generator.eval()
        self._graphdef = nnx.graphdef(generator)
        self.batch_size = batch_size
        graphdef = self._graphdef

        @jax.jit
        def apply(state, z, labels):
            g = nnx.merge(graphdef, state)
            out = g(z, labels)
            return jnp.clip(jnp.round((out + 1.0) * 127.5), 0, 255).astype(jnp.uint8)

        self._apply = apply

    def __call__(self, state, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        n = len(z)
        b = min(self.batch_size, n)
        steps = -(-n // b)
        pad = steps * b - n
        z = np.concatenate([np.asarray(z), np.zeros((pad, z.shape[1]), np.float32)]) if pad else np.asarray(z)
        if labels is not None:
            labels = np.concatenate([np.asarray(labels), np.zeros(pad, np.int32)]) if pad else np.asarray(labels)
        outs = [np.asarray(self._apply(state, z[i * b:(i + 1) * b],
                                       None if labels is None else labels[i * b:(i + 1) * b]))
                for i in range(steps)]
        return np.concatenate(outs)[:n]


def generator_state(model_state, averaged: bool = True) -> Any:
    """The (weight-averaged, by default) generator's part of a :class:`GAN` state (``Trainer.model_state``)."""
    return model_state["generator_ema" if averaged else "generator"]


def sample(model: GAN, z: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 500,
           averaged: bool = True) -> np.ndarray:
    """Generate uint8 images from ``model`` (eval mode) for latents ``z`` (and ``labels``)."""
    g = model.generator_ema if averaged else model.generator
    return Sampler(g, batch_size)(nnx.state(g), z, labels)


def pixel_clusters(images: np.ndarray, k: int, *, seed: int = 0, dims: int = 50) -> np.ndarray:
    """Pseudo-labels without labels: k-means cluster ids ``(N,)`` int32 of images' pixels.

    The pixels are reduced to ``dims`` principal components first, which keeps k-means on
    tens of thousands of images to seconds. A self-conditioned GAN (Liu et al., 2020) trains as a
    conditional GAN on these ids and samples ids from their frequencies
    (:func:`draw_labels`): it learns p(x) = sum_k p(k) p(x | k) without ever seeing a class.
    """
    reduced = mining.pca(mining.pixels(images), dims, seed=seed)
    return mining.kmeans(reduced, k, seed=seed).astype(np.int32)


def draw_labels(labels: np.ndarray, n: int, seed: int, num_classes: int | None = None) -> np.ndarray:
    """``n`` labels drawn with the frequencies of ``labels`` (e.g. :func:`pixel_clusters`' ids)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not len(labels) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"labels must be a non-empty 1-D array of non-negative integers; got {labels.dtype} "
                         f"{labels.shape}")
    freq = np.bincount(labels, minlength=num_classes or 0).astype(np.float64)
    return np.random.default_rng(seed).choice(len(freq), size=n, p=freq / freq.sum()).astype(np.int32)


def latents(seed: int, n: int, latent_dim: int) -> np.ndarray:
    """``n`` standard-normal latent vectors from ``seed`` (a fixed noise batch)."""
    return np.asarray(jax.random.normal(jax.random.key(seed), (n, latent_dim)), dtype=np.float32)


def slerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """Spherical interpolation between latents ``a`` and ``b`` (``steps`` points, ends included).

    Gaussian latents concentrate near a sphere; a straight line between two of them passes
    through the low-norm interior the generator never saw in training (White, 2016).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return ((1 - t) * a + t * b).astype(np.float32)
    return ((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)).astype(np.float32)


# --------------------------------------------------------------------------- evaluation

class ClassifierScorer:
    """Classifier FID and Inception Score from a trained classifier (notebook 01's ResNet).

    The classifier's penultimate features (``model.features``) give the FID; its
    temperature-calibrated class probabilities give the IS (see
    :func:`imgmine_jax.metrics.fit_temperature`). These numbers are comparable across runs
    of this project, *not* with Inception-network FID/IS from papers.
    """

    def __init__(self, classifier: nnx.Module, temperature: float = 1.0, batch_size: int = 1000):
        classifier.eval()
        graphdef, self._state = nnx.split(classifier)
        self.temperature = float(temperature)
        self.batch_size = batch_size

        @jax.jit
        def apply(state, images):
            m = nnx.merge(graphdef, state)
            feats = m.features(data_lib.normalize(images))
            return feats, m.head(feats)   # eval mode: dropout is the identity

        self._apply = apply

    def outputs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(features, logits)`` of uint8 images ``(N, H, W, C)``."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"ClassifierScorer expects uint8 images (N, H, W, C); got {images.dtype} {images.shape}")
        idx, _ = data_lib.eval_batches(len(images), min(self.batch_size, len(images)))
        feats, logits = zip(*(self._apply(self._state, images[i]) for i in idx))
        n = len(images)
        return np.concatenate(jax.device_get(feats))[:n], np.concatenate(jax.device_get(logits))[:n]

    def calibrate(self, images: np.ndarray, labels: np.ndarray, logits: np.ndarray | None = None) -> float:
        """Fit and keep the temperature on held-out labelled real images; returns it.

        ``logits``: the images' logits if already computed (``outputs(images)[1]``).
        """
        self.temperature = metrics.fit_temperature(self.outputs(images)[1] if logits is None else logits, labels)
        return self.temperature

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return metrics.softmax(np.asarray(logits, np.float64) / self.temperature)

    def score(self, images: np.ndarray, reference: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
        """``{"is", "fid"(vs reference stats), "predictions"}`` of uint8 ``images``."""
        return self.score_outputs(*self.outputs(images), reference)

    def score_outputs(self, feats: np.ndarray, logits: np.ndarray,
                      reference: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
        """:meth:`score` from already computed ``(features, logits) = outputs(images)``."""
        probs = self.probabilities(logits)
        out = {"is": metrics.inception_score(probs), "predictions": probs.argmax(-1),
               "confidence": probs.max(-1)}
        if reference is not None:
            out["fid"] = metrics.frechet_distance(*metrics.feature_statistics(feats), *reference)
        return out

    def statistics(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature mean and covariance of uint8 ``images`` (a FID reference)."""
        return metrics.feature_statistics(self.outputs(images)[0])


class EpochScores:
    """``fit(..., epoch_metrics=EpochScores(...))``: classifier FID and IS of a GAN after every epoch.

    Generates ``num_samples`` images from a fixed noise batch (and balanced labels if the
    GAN is conditional) with the current generator in eval mode, scores them against
    ``reference`` feature statistics, and keeps the images of the first ``keep`` latents
    per epoch in ``frames`` (for the progression animation).

    ``labels``: the conditioning labels to generate with instead of balanced classes
    (e.g. cluster ids drawn by :func:`draw_labels`); the classifier's accuracy on the
    requested class is then not reported, since such labels are not its classes.
    """

    def __init__(self, generator: Generator, scorer: ClassifierScorer, reference, *, num_samples: int,
                 seed: int, keep: int = 64, prefix: str = "", labels: np.ndarray | None = None):
        self.sampler = Sampler(generator)
        self.scorer, self.reference, self.prefix = scorer, reference, prefix
        self.z = latents(seed, num_samples, generator.latent_dim)
        if labels is not None and not generator.num_classes:
            raise ValueError("labels were given for an unconditional generator (num_classes=0)")
        if labels is not None and np.shape(labels) != (num_samples,):
            raise ValueError(f"labels must have shape ({num_samples},); got {np.shape(labels)}")
        self.requested_classes = labels is None
        if labels is None and generator.num_classes:
            labels = np.arange(num_samples, dtype=np.int32) % generator.num_classes
        self.labels = None if labels is None else np.asarray(labels, np.int32)
        self.keep = keep
        self.frames: dict[int, np.ndarray] = {}   # training step -> uint8 images

    def __call__(self, trainer) -> dict[str, float]:
        images = self.sampler(generator_state(trainer.model_state), self.z, self.labels)
        self.frames[trainer.step] = images[: self.keep]   # keyed by step: survives a resume
        s = self.scorer.score(images, self.reference)
        out = {f"{self.prefix}fid": s["fid"], f"{self.prefix}is": s["is"]}
        if self.labels is not None and self.requested_classes:
            out[f"{self.prefix}class_accuracy"] = float(np.mean(s["predictions"] == self.labels))
        return out
