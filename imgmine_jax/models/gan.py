"""DCGAN and conditional DCGAN networks for 28x28 images, and the source articles' dense GAN
(networks only; training, sampling and scoring are in :mod:`imgmine_jax.gan`).

* :class:`Generator` -- noise (plus, if conditional, a label embedding) -> dense 7x7 map
  -> two 2x upsamplings to 28x28, batch norm and leaky ReLU between, ``tanh`` output in
  [-1, 1] (the range of :func:`imgmine_jax.data.normalize`).
* :class:`Discriminator` -- two stride-2 4x4 convolutions with leaky ReLU and dropout,
  no batch norm, one logit. Conditional: a projection discriminator (Miyato & Koyama,
  2018): ``logit = w . h + embed(y) . h`` for the flattened features ``h``.
* :class:`DenseGenerator` / :class:`DenseDiscriminator` -- article C's multilayer perceptrons
  (``z(100) -> Dense(128, relu) -> Dense(784, sigmoid)`` and ``784 -> Dense(128, relu) ->
  Dense(1, sigmoid)``), with the two fixes that let them meet: the generator's pixels are
  reshaped to an image and the discriminator flattens its input (as written, a (28, 28)
  output met a (784,) input); the sigmoid in [0, 1] is mapped linearly onto the data's
  [-1, 1], and the discriminator's sigmoid moves into the loss (one logit out).
* :class:`GAN` -- both networks in one module (``architecture="dcgan"`` or ``"dense"``), so
  that one ``nnx.split`` state holds everything that trains (and one checkpoint saves it).

Upsampling is a choice (``upsample``): ``"transpose"`` (4x4 transposed convolution,
stride 2, as in DCGAN), ``"depth_to_space"`` (3x3 convolution to 4x the channels, then a
reshape that moves each group of 4 channels to a 2x2 pixel block, as in ESPCN), or
``"resize"`` (nearest-neighbour 2x, then a 3x3 convolution). All three give 28x28 images;
``benchmarks/gan_step.md`` measures their speed on XLA:CPU.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from imgmine_jax.models.common import check_images, depth_to_space

UPSAMPLE = ("transpose", "depth_to_space", "resize")
ARCHITECTURES = ("dcgan", "dense")
LEAK = 0.2
# DCGAN's initialisation (Radford et al., 2016): kernels from N(0, 0.02)
_init = nnx.initializers.normal(0.02)


class Upsample(nnx.Module):
    """2x spatial upsampling from ``cin`` to ``cout`` channels (see the module docstring)."""

    def __init__(self, cin: int, cout: int, mode: str = "transpose", *, use_bias: bool = True,
                 rngs: nnx.Rngs):
        if mode not in UPSAMPLE:
            raise ValueError(f"upsample must be one of {UPSAMPLE}; got {mode!r}")
        self.mode = mode
        if mode == "transpose":
            self.conv = nnx.ConvTranspose(cin, cout, (4, 4), strides=(2, 2), padding="SAME",
                                          use_bias=use_bias, kernel_init=_init, rngs=rngs)
        elif mode == "depth_to_space":
            self.conv = nnx.Conv(cin, 4 * cout, (3, 3), use_bias=use_bias, kernel_init=_init, rngs=rngs)
        else:
            self.conv = nnx.Conv(cin, cout, (3, 3), use_bias=use_bias, kernel_init=_init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mode == "depth_to_space":
            return depth_to_space(self.conv(x))
        if self.mode == "resize":
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x)


def _check_labels(labels, num_classes: int, n: int, where: str):
    if num_classes and labels is None:
        raise ValueError(f"{where} is conditional on {num_classes} classes; pass labels of shape ({n},)")
    if labels is not None and not num_classes:
        raise ValueError(f"{where} is unconditional (num_classes=0); got labels")
    if labels is not None and tuple(labels.shape) != (n,):
        raise ValueError(f"{where} expects labels of shape ({n},); got {tuple(labels.shape)}")


class Generator(nnx.Module):
    """``G(z[, y])``: latent vectors ``(N, latent_dim)`` -> images ``(N, 28, 28, C)`` in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, width: int = 64, channels: int = 1, image_size: int = 28,
                 num_classes: int = 0, embed_dim: int = 32, upsample: str = "transpose", *,
                 rngs: nnx.Rngs):
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x upsamplings); got {image_size}")
        self.latent_dim, self.num_classes, self.image_size = latent_dim, num_classes, image_size
        self.side, self.width = image_size // 4, width
        self.embed = nnx.Embed(num_classes, embed_dim, rngs=rngs) if num_classes else None
        cin = latent_dim + (embed_dim if num_classes else 0)
        self.dense = nnx.Linear(cin, self.side * self.side * 2 * width, use_bias=False,
                                kernel_init=_init, rngs=rngs)
        self.bn0 = nnx.BatchNorm(2 * width, momentum=0.9, rngs=rngs)
        self.up1 = Upsample(2 * width, width, upsample, use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        self.up2 = Upsample(width, channels, upsample, rngs=rngs)

    def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"Generator expects latents of shape (N, {self.latent_dim}); got {tuple(z.shape)}")
        _check_labels(labels, self.num_classes, z.shape[0], "Generator")
        if self.embed is not None:
            z = jnp.concatenate([z, self.embed(labels)], axis=-1)
        x = self.dense(z).reshape(z.shape[0], self.side, self.side, 2 * self.width)
        x = nnx.leaky_relu(self.bn0(x), LEAK)
        x = nnx.leaky_relu(self.bn1(self.up1(x)), LEAK)
        return jnp.tanh(self.up2(x))


class Discriminator(nnx.Module):
    """``D(x[, y])``: images ``(N, 28, 28, C)`` in [-1, 1] -> one logit per image ``(N,)``."""

    def __init__(self, width: int = 64, channels: int = 1, image_size: int = 28, num_classes: int = 0,
                 dropout: float = 0.3, *, rngs: nnx.Rngs):
        self.num_classes = num_classes
        self.image_shape = (image_size, image_size, channels)
        self.conv1 = nnx.Conv(channels, width, (4, 4), strides=(2, 2), kernel_init=_init, rngs=rngs)
        self.conv2 = nnx.Conv(width, 2 * width, (4, 4), strides=(2, 2), kernel_init=_init, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        features = (image_size // 4) ** 2 * 2 * width
        self.head = nnx.Linear(features, 1, kernel_init=_init, rngs=rngs)
        self.project = nnx.Embed(num_classes, features, embedding_init=_init, rngs=rngs) if num_classes else None

    def __call__(self, x: jax.Array, labels: jax.Array | None = None, *,
                 rngs: jax.Array | None = None) -> jax.Array:
        """``rngs``: the dropout key (training); without one, dropout must be off (``eval()``)."""
        check_images(x, self.image_shape, where="Discriminator")
        _check_labels(labels, self.num_classes, x.shape[0], "Discriminator")
        k1, k2 = jax.random.split(rngs) if rngs is not None else (None, None)
        h = self.dropout(nnx.leaky_relu(self.conv1(x), LEAK), rngs=k1)
        h = self.dropout(nnx.leaky_relu(self.conv2(h), LEAK), rngs=k2)
        h = h.reshape(h.shape[0], -1)
        logit = self.head(h)[:, 0]
        if self.project is not None:
            logit = logit + jnp.sum(self.project(labels) * h, axis=-1)
        return logit


_glorot = nnx.initializers.glorot_uniform()   # Keras's Dense default, as the article's code has it


class DenseGenerator(nnx.Module):
    """Article C's generator: ``z -> Dense(hidden, relu) -> Dense(H*W*C, sigmoid)``, reshaped to
    ``(N, H, W, C)`` and mapped from [0, 1] onto the data's [-1, 1] (``2 * sigmoid - 1``)."""

    def __init__(self, latent_dim: int = 100, hidden: int = 128, channels: int = 1, image_size: int = 28, *,
                 rngs: nnx.Rngs):
        self.latent_dim, self.num_classes = latent_dim, 0
        self.image_shape = (image_size, image_size, channels)
        self.hidden = nnx.Linear(latent_dim, hidden, kernel_init=_glorot, rngs=rngs)
        self.out = nnx.Linear(hidden, image_size * image_size * channels, kernel_init=_glorot, rngs=rngs)

    def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"DenseGenerator expects latents of shape (N, {self.latent_dim}); got {tuple(z.shape)}")
        _check_labels(labels, 0, z.shape[0], "DenseGenerator")
        pixels = jax.nn.sigmoid(self.out(nnx.relu(self.hidden(z))))
        return (2.0 * pixels - 1.0).reshape(z.shape[0], *self.image_shape)


class DenseDiscriminator(nnx.Module):
    """Article C's discriminator: flatten -> ``Dense(hidden, relu) -> Dense(1)``, one logit per
    image (the article's output sigmoid is applied by the loss, as ``from_logits``)."""

    def __init__(self, hidden: int = 128, channels: int = 1, image_size: int = 28, *, rngs: nnx.Rngs):
        self.num_classes = 0
        self.image_shape = (image_size, image_size, channels)
        self.hidden = nnx.Linear(image_size * image_size * channels, hidden, kernel_init=_glorot, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, kernel_init=_glorot, rngs=rngs)

    def __call__(self, x: jax.Array, labels: jax.Array | None = None, *,
                 rngs: jax.Array | None = None) -> jax.Array:
        """``rngs`` is accepted for the task's common call and unused (no dropout)."""
        check_images(x, self.image_shape, where="DenseDiscriminator")
        _check_labels(labels, 0, x.shape[0], "DenseDiscriminator")
        return self.out(nnx.relu(self.hidden(x.reshape(x.shape[0], -1))))[:, 0]


class GAN(nnx.Module):
    """Generator and discriminator together (one state, one checkpoint).

    ``num_classes=0`` is the unconditional DCGAN; ``num_classes=10`` the conditional one.
    ``width`` sets the generator's channels, ``d_width`` (default: ``width``) the discriminator's.
    ``architecture="dense"`` builds article C's dense networks instead (``hidden`` units each;
    unconditional only; ``width``, ``d_width``, ``upsample``, ``embed_dim`` and ``dropout`` are
    the DCGAN's and unused).
    ``generator_ema`` is a second generator whose weights are an exponential moving
    average of the trained generator's (:attr:`imgmine_jax.gan.GANTask.ema_decay`); it is never trained
    directly and is what :func:`imgmine_jax.gan.sample` draws from. Averaging the iterates of a GAN's
    generator damps the oscillation of the adversarial game (Yazici et al., 2019).
    """

    def __init__(self, latent_dim: int = 64, width: int = 64, channels: int = 1, image_size: int = 28,
                 num_classes: int = 0, embed_dim: int = 32, upsample: str = "transpose",
                 dropout: float = 0.3, d_width: int | None = None, architecture: str = "dcgan",
                 hidden: int = 128, *, rngs: nnx.Rngs):
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}; got {architecture!r}")
        if architecture == "dense":
            if num_classes:
                raise ValueError(f"the dense GAN is unconditional: num_classes must be 0; got {num_classes!r}")
            self.generator = DenseGenerator(latent_dim, hidden, channels, image_size, rngs=rngs)
            self.discriminator = DenseDiscriminator(hidden, channels, image_size, rngs=rngs)
        else:
            self.generator = Generator(latent_dim, width, channels, image_size, num_classes, embed_dim,
                                       upsample, rngs=rngs)
            self.discriminator = Discriminator(d_width or width, channels, image_size, num_classes, dropout,
                                               rngs=rngs)
        self.generator_ema = nnx.clone(self.generator)
        # own buffers, not shared ones: the jitted step donates (and reuses) the state's arrays
        nnx.update(self.generator_ema, jax.tree.map(jnp.copy, nnx.state(self.generator)))

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes
