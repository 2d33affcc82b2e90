"""The benchmark models in Keras 3 on TensorFlow, trained the way a Keras script trains: ``model.fit``.

Layer by layer the same as the project's Flax models (``imgmine_jax.models``), NHWC,
``keras.optimizers.Adam``. Models are compiled with Keras's defaults: on a CPU-only
machine ``jit_compile="auto"`` resolves to False, so each step is a ``tf.function``
graph running TensorFlow's oneDNN kernels (no XLA) -- the speed of the seed Keras
script's ``model.fit``. The GAN overrides ``keras.Model.train_step`` (one D step, then
one G step, as the Keras DCGAN example) and is driven by ``fit`` too.

Each :class:`Peer` has ``train_step(x, y)`` (``model.train_on_batch``: one step on one
batch) and ``run(steps)``: one ``model.fit`` call over ``steps`` consecutive batches
(``epochs=1, shuffle=False, verbose=0``). ``run`` returns the seconds from the start of
the first batch to the end of training, measured by a callback, so the per-call set-up of
``fit`` (wrapping the arrays in a data adapter, about as much as one epoch's set-up) is
not charged to a few-step repeat; :attr:`Peer.last_call_seconds` holds the whole call.
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402

FRAMEWORK = "keras"
LEAK = 0.2
BN = dict(momentum=0.9, epsilon=1e-5)   # Flax's BatchNorm defaults (Keras's epsilon is 1e-3)


def version() -> str:
    return f"keras {keras.__version__} on tensorflow {tf.__version__} (backend {keras.backend.backend()})"


# --------------------------------------------------------------------------- models

def seed_cnn(num_classes: int = 10) -> keras.Model:
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(num_classes),
    ])


def _conv_bn(x, c, gamma_zero=False):
    x = layers.Conv2D(c, 3, padding="same", use_bias=False)(x)
    return layers.BatchNormalization(gamma_initializer="zeros" if gamma_zero else "ones", **BN)(x)


def resnet(num_classes: int = 10, widths=(16, 32, 64), blocks: int = 1, dropout: float = 0.2) -> keras.Model:
    inp = keras.Input((28, 28, 1))
    x = layers.ReLU()(_conv_bn(inp, widths[0]))
    for w in widths[1:]:
        x = layers.ReLU()(_conv_bn(layers.MaxPooling2D(2)(x), w))
        for _ in range(blocks):
            y = layers.ReLU()(_conv_bn(x, w))
            x = layers.ReLU()(layers.Add()([x, _conv_bn(y, w, gamma_zero=True)]))
    x = layers.Dropout(dropout)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, layers.Dense(num_classes)(x))


def row_lstm(num_classes: int = 10, hidden: int = 128) -> keras.Model:
    """Rows as time steps; ``layers.LSTM`` (forget-gate bias 1 by default, ``unit_forget_bias``)."""
    inp = keras.Input((28, 28, 1))
    x = layers.LSTM(hidden)(layers.Reshape((28, 28))(inp))
    return keras.Model(inp, layers.Dense(num_classes)(x))


class DepthToSpace(layers.Layer):
    def __init__(self, block: int, **kw):
        super().__init__(**kw)
        self.block = block

    def call(self, x):
        n, h, w, c = ops.shape(x)
        b = self.block
        x = ops.reshape(x, (n, h, w, b, b, c // (b * b)))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (n, h * b, w * b, c // (b * b)))


class SpaceToDepth(layers.Layer):
    def __init__(self, block: int, **kw):
        super().__init__(**kw)
        self.block = block

    def call(self, x):
        n, h, w, c = ops.shape(x)
        b = self.block
        x = ops.reshape(x, (n, h // b, b, w // b, b, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (n, h // b, w // b, b * b * c))


def _upsample(x, cout, mode, use_bias=True):
    if mode == "depth_to_space":
        return DepthToSpace(2)(layers.Conv2D(4 * cout, 3, padding="same", use_bias=use_bias)(x))
    if mode == "transpose":
        return layers.Conv2DTranspose(cout, 4, strides=2, padding="same", use_bias=use_bias)(x)
    return layers.Conv2D(cout, 3, padding="same", use_bias=use_bias)(layers.UpSampling2D(2)(x))


def generator(latent_dim=64, width=64, upsample="depth_to_space") -> keras.Model:
    z = keras.Input((latent_dim,))
    x = layers.Reshape((7, 7, 2 * width))(layers.Dense(7 * 7 * 2 * width, use_bias=False)(z))
    x = layers.LeakyReLU(LEAK)(layers.BatchNormalization(**BN)(x))
    x = layers.LeakyReLU(LEAK)(layers.BatchNormalization(**BN)(_upsample(x, width, upsample, False)))
    return keras.Model(z, layers.Activation("tanh")(_upsample(x, 1, upsample)))


def discriminator(width=64, dropout=0.3) -> keras.Model:
    x = inp = keras.Input((28, 28, 1))
    x = layers.Dropout(dropout)(layers.LeakyReLU(LEAK)(layers.Conv2D(width, 4, strides=2, padding="same")(x)))
    x = layers.Dropout(dropout)(layers.LeakyReLU(LEAK)(layers.Conv2D(2 * width, 4, strides=2, padding="same")(x)))
    return keras.Model(inp, layers.Dense(1)(layers.Flatten()(x)))


class GAN(keras.Model):
    """As ``GANTask.update``: a D step on real + fakes, then a G step through the updated D (G run
    again on the same noise), non-saturating loss, Adam(2e-4, 0.5, 0.999) each; then the averaged
    generator: an EMA of G's weights, G's batch-norm statistics copied."""

    def __init__(self, latent_dim=64, width=64, upsample="depth_to_space", dropout=0.3, ema_decay=0.995,
                 d_width=None):
        super().__init__()
        self.latent_dim, self.ema_decay = latent_dim, ema_decay
        self.generator = generator(latent_dim, width, upsample)
        self.generator_ema = generator(latent_dim, width, upsample)
        self.generator_ema.set_weights(self.generator.get_weights())
        self.generator_ema.trainable = False
        self.discriminator = discriminator(d_width or width, dropout)
        self.g_opt = keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999)
        self.d_opt = keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999)
        self.seed_gen = keras.random.SeedGenerator(0)

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def train_step(self, real):
        if isinstance(real, tuple):
            real = real[0]
        z = keras.random.normal((ops.shape(real)[0], self.latent_dim), seed=self.seed_gen)
        fake = self.generator(z, training=True)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            d_loss = (ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits)))
        dv = self.discriminator.trainable_weights
        self.d_opt.apply_gradients(zip(tape.gradient(d_loss, dv), dv))
        with tf.GradientTape() as tape:
            g_loss = ops.mean(ops.softplus(-self.discriminator(self.generator(z, training=True), training=True)))
        gv = self.generator.trainable_weights
        self.g_opt.apply_gradients(zip(tape.gradient(g_loss, gv), gv))
        for e, w in zip(self.generator_ema.weights, self.generator.weights):   # same layers, same order
            e.assign(self.ema_decay * e + (1.0 - self.ema_decay) * w if w.trainable else w)
        return {"loss": d_loss + g_loss}


class ConvLSTMCell(layers.Layer):
    """All four gates from one convolution over ``[x, h]`` (no input: over ``h`` only)."""

    def __init__(self, hidden: int, k: int = 3, **kw):
        super().__init__(**kw)
        self.hidden = hidden
        bias = np.zeros(4 * hidden, np.float32)
        bias[hidden:2 * hidden] = 1.0
        self.conv = layers.Conv2D(4 * hidden, k, padding="same",
                                  bias_initializer=keras.initializers.Constant(bias))

    def call(self, c, h, x=None):
        xh = h if x is None else ops.concatenate([x, h], axis=-1)
        i, f, g, o = ops.split(self.conv(xh), 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        return c, ops.sigmoid(o) * ops.tanh(c)


class EncoderForecaster(keras.Model):
    """The project's encoder-forecaster with one ConvLSTM layer per stack, time loops unrolled."""

    def __init__(self, patch=4, embed=32, hidden=32, future=10, **kw):
        super().__init__(**kw)
        self.patch, self.hidden, self.future = patch, hidden, future
        self.s2d, self.d2s = SpaceToDepth(patch), DepthToSpace(patch)
        self.embed = layers.Conv2D(embed, 3, padding="same", activation="relu")
        self.encoder, self.forecaster = ConvLSTMCell(hidden), ConvLSTMCell(hidden)
        self.decode = layers.Conv2D(patch * patch, 3, padding="same",
                                    bias_initializer=keras.initializers.Constant(-3.0))

    def call(self, frames):              # (N, T, S, S, 1) in [0, 1]
        shape = ops.shape(frames)
        n, t = shape[0], frames.shape[1]
        x = self.embed(self.s2d(ops.reshape(frames, (-1,) + tuple(frames.shape[2:]))))
        g = x.shape[1]
        x = ops.reshape(x, (n, t, g, g, x.shape[-1]))
        c = h = ops.zeros((n, g, g, self.hidden))
        for step in range(t):
            c, h = self.encoder(c, h, x[:, step])
        states = []
        for _ in range(self.future):
            c, h = self.forecaster(c, h)
            states.append(h)
        s = ops.reshape(ops.stack(states, axis=1), (-1, g, g, self.hidden))
        out = self.d2s(self.decode(s))
        return ops.reshape(out, (n, self.future) + tuple(out.shape[1:]))


# --------------------------------------------------------------------------- training

class _Clock(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()


class Peer:
    """One compiled Keras model and its data; ``train_step(x, y)`` and ``run(steps)``."""

    framework = FRAMEWORK

    def __init__(self, name: str, model: keras.Model, inputs: np.ndarray, targets: np.ndarray | None,
                 batch_size: int):
        self.name, self.model, self.batch_size = name, model, batch_size
        n = (len(inputs) // batch_size) * batch_size
        self.inputs, self.targets = inputs[:n], None if targets is None else targets[:n]
        self.num_batches, self.offset = n // batch_size, 0
        self.last_call_seconds = float("nan")

    def train_step(self, x: np.ndarray, y: np.ndarray | None):
        return self.model.train_on_batch(x, y)

    def run(self, steps: int) -> float:
        if steps > self.num_batches:
            raise ValueError(f"{self.name}: {steps} steps need {steps * self.batch_size} examples; "
                             f"have {len(self.inputs)}")
        if self.offset + steps > self.num_batches:
            self.offset = 0
        s = slice(self.offset * self.batch_size, (self.offset + steps) * self.batch_size)
        self.offset += steps
        clock = _Clock()
        t0 = time.perf_counter()
        self.model.fit(self.inputs[s], None if self.targets is None else self.targets[s],
                       batch_size=self.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[clock])
        self.last_call_seconds = time.perf_counter() - t0
        return clock.end - clock.start


def build(name: str, spec: dict, data: dict[str, np.ndarray], seed: int = 0) -> Peer:
    """The peer of benchmark model ``name`` (``data`` as for :func:`benchmarks.peers.torch_models.build`)."""
    keras.utils.set_random_seed(seed)
    cfg, b = spec["config"], spec["batch_size"]
    if name == "convlstm":
        obs, fut = cfg["observed"], cfg["future"]
        model = EncoderForecaster(cfg["patch"], cfg["embed"], cfg["hidden"], fut)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True))
        frames = data["frames"]
        return Peer(name, model, frames[:, :obs], frames[:, obs:obs + fut], b)
    images, labels = data["image"], data["label"].astype(np.int32)
    if name == "dcgan":
        model = GAN(cfg["latent_dim"], cfg["width"], cfg["upsample"], cfg["dropout"], cfg["ema_decay"],
                    cfg["d_width"])
        model.compile()
        return Peer(name, model, images, None, b)
    if name == "seed_cnn":
        model = seed_cnn()
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif name == "resnet":
        model = resnet(10, cfg["widths"], cfg["blocks"], cfg["dropout"])
        # label smoothing needs one-hot targets in Keras
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg["label_smoothing"])
        labels = np.eye(10, dtype=np.float32)[labels]
    elif name == "lstm":
        model = row_lstm(10, cfg["hidden"])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        raise ValueError(f"no Keras peer for {name!r}")
    # metrics=["accuracy"] as the seed Keras script (the project's step computes accuracy too)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    return Peer(name, model, images, labels, b)
