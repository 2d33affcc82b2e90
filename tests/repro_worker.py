"""Worker for test_reliability.py: one reduced-size training run of a model family.

    python tests/repro_worker.py FAMILY OUTPUT.npz

Writes every parameter and the history (without timings) so that two fresh processes
can be compared bit for bit.
"""
import json
import sys

import numpy as np
from flax import nnx

from imgmine_jax import data, models, train


def cnn():
    """The ResNet with batch norm, dropout and augmentation: every source of randomness."""
    tr, va = data.train_val_split(data.load("mnist", "train").head(1200), 200, seed=0)
    config = models.classifier_config("resnet", 10, (28, 28, 1), widths=[8, 8, 16], dropout=0.3)
    cfg = train.TrainConfig(epochs=2, batch_size=50, learning_rate=3e-3, augment_shift=2, label_smoothing=0.1,
                            seed=5)
    return models.build("resnet", config, seed=5), train.Classification.from_config(10, cfg), tr, va, cfg


def rnn():
    """The row-by-row LSTM classifier, two stacked layers."""
    from imgmine_jax.models.rnn import RowClassifier

    tr, va = data.train_val_split(data.load("mnist", "train").head(1200), 200, seed=0)
    cfg = train.TrainConfig(epochs=2, batch_size=50, learning_rate=3e-3, seed=5)
    model = RowClassifier(cell="lstm", hidden=32, num_layers=2, rngs=nnx.Rngs(5))
    return model, train.Classification(10), tr, va, cfg


def convlstm():
    """The ConvLSTM encoder-forecaster on Moving MNIST sequences rendered on the fly."""
    from imgmine_jax import moving_mnist, sequence
    from imgmine_jax.models.rnn import EncoderForecaster

    mnist = data.load("mnist", "train")
    short = {"num_frames": 6, "num_observed": 3}      # 3 observed, 3 predicted: a quick compile
    tr = moving_mnist.generate(mnist.head(1000), 24, seed=5, **short)
    va = moving_mnist.generate(mnist.head(1000), 8, seed=6, **short)
    cfg = train.TrainConfig(epochs=2, batch_size=8, learning_rate=3e-3, seed=5)
    model = EncoderForecaster(embed=8, hidden=(8,), future=3, rngs=nnx.Rngs(5))
    return model, sequence.NextFrames(observed=3), tr, va, cfg


def gan():
    """The conditional DCGAN: noise, labels, dropout-free D and G with batch norm, two optimisers."""
    from imgmine_jax import gan as gan_lib

    tr, _ = data.train_val_split(data.load("mnist", "train").head(700), 100, seed=0)
    cfg = train.TrainConfig(epochs=2, batch_size=32, schedule="constant", warmup_epochs=0.0, seed=5)
    model = gan_lib.GAN(latent_dim=16, width=8, num_classes=10, rngs=nnx.Rngs(5))
    return model, gan_lib.GANTask(latent_dim=16, conditional=True), tr, None, cfg


FAMILIES = {"cnn": cnn, "rnn": rnn, "convlstm": convlstm, "gan": gan}

if __name__ == "__main__":
    family, out = sys.argv[1], sys.argv[2]
    model, task, tr, va, cfg = FAMILIES[family]()
    monitor = {"cnn": "val_accuracy", "rnn": "val_accuracy", "convlstm": "val_loss", "gan": None}[family]
    result = train.fit(model, task, tr.arrays(), va.arrays() if va is not None else None, cfg, progress=False,
                       log=None, monitor=monitor)
    params = {"/".join(map(str, path)): np.asarray(v.get_value())
              for path, v in nnx.to_flat_state(nnx.state(result.trainer.state, nnx.Param))}
    history = [{k: v for k, v in row.items() if k not in ("seconds", "images_per_sec")} for row in result.history]
    np.savez(out, history=json.dumps(history), **params)
