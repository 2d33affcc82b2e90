"""Convolutional classifiers for small fixed-size images (28x28 digits and clothes).

Two families:

* :class:`SeedCNN` -- the classic Keras/Flax-tutorial baseline.
* :class:`ResNet` -- a small residual network with batch normalisation, dropout and
  global average pooling: what a researcher would pick for 28x28 images today.

Both take a batch of images ``(N, H, W, C)`` as float32, already normalised
(see :func:`imgmine_jax.data.normalize`), and return class logits ``(N, classes)``.
Both expose :meth:`features` (the penultimate activations) for mining embeddings.

Max pooling is written as a reshape + max rather than ``nnx.max_pool``: on XLA:CPU
the gradient of ``reduce_window`` (``select_and_scatter``) is several times slower
than the gradient of a plain reduction (``benchmarks/cnn_step_throughput.py`` times the
SeedCNN step on a machine at hand).

Every convolution uses :func:`imgmine_jax.models.common.conv_general_dilated`, which is
``lax.conv_general_dilated`` except under ``jax.vmap`` on XLA:CPU: there a sweep's members
(``train.sweep``) run one ordinary convolution each instead of one grouped convolution,
which XLA:CPU runs several times slower.
"""
from __future__ import annotations

import jax
from flax import nnx

from imgmine_jax import validate
from imgmine_jax.models.common import check_images, conv_general_dilated, max_pool_2x2


class SeedCNN(nnx.Module):
    """Conv(32,3x3)-relu -> pool -> Conv(64,3x3)-relu -> pool -> Dense(128)-relu -> Dense(classes).

    Valid (unpadded) convolutions as in the Keras MNIST example: 28 -> 26 -> 13 -> 11 -> 5.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 hidden: int = 128, *, rngs: nnx.Rngs):
        validate.classifier_args("SeedCNN", num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                                 hidden=hidden, min_image_size=10)
        self.image_shape = (image_size, image_size, in_channels)
        self.conv1 = nnx.Conv(in_channels, 32, (3, 3), padding="VALID",
                              conv_general_dilated=conv_general_dilated, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="VALID",
                              conv_general_dilated=conv_general_dilated, rngs=rngs)
        side = ((image_size - 2) // 2 - 2) // 2
        self.dense1 = nnx.Linear(side * side * 64, hidden, rngs=rngs)
        self.dense2 = nnx.Linear(hidden, num_classes, rngs=rngs)

    def feature_maps(self, x: jax.Array) -> list[jax.Array]:
        """Activations after each convolution (for visualisation)."""
        check_images(x, self.image_shape, where=type(self).__name__)
        a1 = nnx.relu(self.conv1(x))
        a2 = nnx.relu(self.conv2(max_pool_2x2(a1)))
        return [a1, a2]

    def features(self, x: jax.Array) -> jax.Array:
        """The penultimate (128-d) representation."""
        check_images(x, self.image_shape, where=type(self).__name__)
        x = max_pool_2x2(nnx.relu(self.conv1(x)))
        x = max_pool_2x2(nnx.relu(self.conv2(x)))
        return nnx.relu(self.dense1(x.reshape(x.shape[0], -1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dense2(self.features(x))


class ResidualBlock(nnx.Module):
    """conv-BN-relu-conv-BN plus identity, then relu (He et al., 2016).

    The ablations of notebook 05 switch parts off: ``batch_norm=False`` drops both batch
    norms (the convolutions get a bias instead); ``residual=False`` drops the identity (a
    plain two-convolution block). Without the identity the last batch norm's scale starts
    at one, as in a plain network: the zero start that makes a residual block the identity
    would make a plain block output nothing.
    """

    def __init__(self, channels: int, *, batch_norm: bool = True, residual: bool = True, rngs: nnx.Rngs):
        self.residual = residual
        self.conv1 = nnx.Conv(channels, channels, (3, 3), use_bias=not batch_norm,
                              conv_general_dilated=conv_general_dilated, rngs=rngs)
        if batch_norm:
            self.bn1 = nnx.BatchNorm(channels, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), use_bias=not batch_norm,
                              conv_general_dilated=conv_general_dilated, rngs=rngs)
        if batch_norm:
            # Zero-initialised last BN scale: each block starts as the identity, which
            # lets a short schedule use a high learning rate from the first epoch.
            self.bn2 = nnx.BatchNorm(channels, momentum=0.9, rngs=rngs,
                                     scale_init=nnx.initializers.zeros if residual else nnx.initializers.ones)
        self.batch_norm = batch_norm

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv1(x)
        y = nnx.relu(self.bn1(y) if self.batch_norm else y)
        y = self.conv2(y)
        y = self.bn2(y) if self.batch_norm else y
        return nnx.relu(x + y if self.residual else y)


class ConvBN(nnx.Module):
    """conv-BN-relu, the transition between stages (conv-relu with a bias when ``batch_norm=False``)."""

    def __init__(self, cin: int, cout: int, *, batch_norm: bool = True, rngs: nnx.Rngs):
        self.conv = nnx.Conv(cin, cout, (3, 3), use_bias=not batch_norm,
                             conv_general_dilated=conv_general_dilated, rngs=rngs)
        if batch_norm:
            self.bn = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
        self.batch_norm = batch_norm

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(x)
        return nnx.relu(self.bn(y) if self.batch_norm else y)


class ResNet(nnx.Module):
    """A small ResNet for 28x28 images.

    ``stem(widths[0])`` at full resolution, then for every further width a 2x2 max
    pool, a conv-BN-relu transition to that width and ``blocks`` residual blocks;
    global average pooling, dropout and a linear classifier. The default
    ``widths=(16, 32, 64)`` runs at 28 -> 14 -> 7 pixels with ~0.1 M parameters:
    wider versions are more accurate per epoch but, on a 2-core CPU, not per minute
    (XLA:CPU's convolution gradients are slow for wide layers at high resolution).

    ``batch_norm`` and ``residual`` exist for notebook 05's ablations (see
    :class:`ResidualBlock`); their defaults build exactly the network of notebook 01 (same
    parameter tree, same numbers), so saved checkpoints load unchanged.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 widths: tuple[int, ...] = (16, 32, 64), blocks: int = 1,
                 dropout: float = 0.2, batch_norm: bool = True, residual: bool = True, *, rngs: nnx.Rngs):
        validate.classifier_args("ResNet", num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                                 widths=widths, blocks=blocks, dropout=dropout)
        validate.boolean(batch_norm, "ResNet(batch_norm)")
        validate.boolean(residual, "ResNet(residual)")
        batch_norm, residual = bool(batch_norm), bool(residual)
        widths = tuple(int(w) for w in widths)
        if image_size % 2 ** (len(widths) - 1):
            raise ValueError(f"image_size={image_size} must be divisible by "
                             f"2**{len(widths) - 1} for widths={widths}")
        self.image_shape = (image_size, image_size, in_channels)
        self.stem = ConvBN(in_channels, widths[0], batch_norm=batch_norm, rngs=rngs)
        self.transitions = nnx.List([ConvBN(a, b, batch_norm=batch_norm, rngs=rngs)
                                     for a, b in zip(widths, widths[1:])])
        self.stages = nnx.List([
            nnx.List([ResidualBlock(w, batch_norm=batch_norm, residual=residual, rngs=rngs) for _ in range(blocks)])
            for w in widths[1:]
        ])
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

    def feature_maps(self, x: jax.Array) -> list[jax.Array]:
        """Activations at the end of the stem and of every stage."""
        check_images(x, self.image_shape, where=type(self).__name__)
        x = self.stem(x)
        maps = [x]
        for transition, stage in zip(self.transitions, self.stages):
            x = transition(max_pool_2x2(x))
            for block in stage:
                x = block(x)
            maps.append(x)
        return maps

    def features(self, x: jax.Array) -> jax.Array:
        """Global-average-pooled last stage (``widths[-1]``-d)."""
        return self.feature_maps(x)[-1].mean(axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.dropout(self.features(x)))




class ArticleCNN(nnx.Module):
    """The source articles' Keras CNNs: 3x3 valid convolutions with ReLU, 2x2 max pooling after
    the first two, Flatten, Dense(64)-relu, Dense(classes).

    ``convs=(32, 64)`` is article A's network (28 -> 26 -> 13 -> 11 -> 5); ``convs=(32, 64, 64)``
    the TensorFlow-tutorial shape of articles C and E, whose third convolution is not pooled
    (... -> 5 -> 3).

    ``softmax_output=True`` ends the network in a softmax, as the articles' last layer
    ``Dense(10, activation="softmax")`` does. Article C combines that layer with
    ``SparseCategoricalCrossentropy(from_logits=True)``, which applies a softmax again; the
    package's losses all take logits, so training this network with them reproduces that
    error faithfully (see :func:`imgmine_jax.baselines.double_softmax_cost`). Its outputs are
    then probabilities, and the loss's second softmax maps them into ``[e^0, e^1]`` ratios:
    the cross-entropy cannot fall below ``log(e + classes - 1) - 1`` (1.46 for ten classes).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 convs: tuple[int, ...] = (32, 64, 64), hidden: int = 64, softmax_output: bool = False, *,
                 rngs: nnx.Rngs):
        validate.classifier_args("ArticleCNN", num_classes=num_classes, in_channels=in_channels,
                                 image_size=image_size, hidden=hidden, widths=convs)
        validate.boolean(softmax_output, "ArticleCNN(softmax_output)")
        convs = tuple(int(c) for c in convs)
        side = image_size
        for i in range(len(convs)):
            side = side - 2 if i >= 2 else (side - 2) // 2
        if side < 1:
            raise ValueError(f"ArticleCNN(image_size) of {image_size} pixels is too small for {len(convs)} "
                             f"convolutions; expected an image size that leaves at least one pixel")
        self.image_shape = (image_size, image_size, in_channels)
        self.softmax_output = bool(softmax_output)
        self.convs = nnx.List([nnx.Conv(cin, cout, (3, 3), padding="VALID",
                                        conv_general_dilated=conv_general_dilated, rngs=rngs)
                               for cin, cout in zip((in_channels,) + convs, convs)])
        self.dense1 = nnx.Linear(side * side * convs[-1], hidden, rngs=rngs)
        self.dense2 = nnx.Linear(hidden, num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """The penultimate (``hidden``-d) representation."""
        check_images(x, self.image_shape, where=type(self).__name__)
        for i, conv in enumerate(self.convs):
            x = nnx.relu(conv(x))
            if i < 2:
                x = max_pool_2x2(x)
        return nnx.relu(self.dense1(x.reshape(x.shape[0], -1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        out = self.dense2(self.features(x))
        return nnx.softmax(out, axis=-1) if self.softmax_output else out
