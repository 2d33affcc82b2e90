"""Recurrent models and sequence tasks: shapes, a train step that learns, the cell contract, compile once."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imgmine_jax import data, moving_mnist, recipes, sequence, train
from imgmine_jax.models import rnn


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (1, True)])
def test_row_classifier_shapes(cell, layers, bidirectional, mnist_test):
    model = rnn.RowClassifier(cell=cell, hidden=16, num_layers=layers, bidirectional=bidirectional,
                              rngs=nnx.Rngs(0))
    x = data.normalize(jnp.asarray(mnist_test.images[:5]))
    assert model(x).shape == (5, 10)
    if not bidirectional:
        per_row = model.logits_after_each_row(x)
        assert per_row.shape == (5, 28, 10)
        np.testing.assert_allclose(per_row[:, -1], model(x), atol=1e-5)
    else:
        with pytest.raises(ValueError, match="unidirectional"):
            model.logits_after_each_row(x)


def test_row_classifier_rejects_wrong_images():
    model = rnn.RowClassifier(hidden=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="28, 28, 1"):
        model(jnp.zeros((2, 32, 32, 1)))
    with pytest.raises(ValueError, match="unknown recurrent cell"):
        rnn.RowClassifier(cell="rnn", rngs=nnx.Rngs(0))


def test_row_completer_shapes_and_given_rows_are_kept(mnist_test):
    model = rnn.RowCompleter(hidden=16, num_layers=2, rngs=nnx.Rngs(0))
    rows = sequence.image_rows(jnp.asarray(mnist_test.images[:3]))
    assert model(rows[:, :-1]).shape == (3, 27, 28)
    done = model.complete(rows[:, :14], 14)
    assert done.shape == (3, 14, 28) and float(done.min()) >= 0 and float(done.max()) <= 1
    full = sequence.complete_images(model, mnist_test.images[:3])
    assert full.shape == (3, 28, 28)
    np.testing.assert_allclose(full[:, :14], np.asarray(rows[:, :14]))


def test_convlstm_cell_shape_contract():
    cell = rnn.ConvLSTMCell(3, 8, 3, rngs=nnx.Rngs(0))
    carry = cell.initialize_carry((2, 16, 16, 3))
    assert [c.shape for c in carry] == [(2, 16, 16, 8)] * 2 and not any(jnp.any(c) for c in carry)
    (c, h), out = cell(carry, jnp.ones((2, 16, 16, 3)))
    assert c.shape == h.shape == out.shape == (2, 16, 16, 8)
    assert float(jnp.abs(h).max()) <= 1.0  # h = o * tanh(c)
    with pytest.raises(ValueError, match="ConvLSTMCell expects inputs"):
        cell(carry, jnp.ones((2, 16, 16, 4)))
    no_input = rnn.ConvLSTMCell(0, 8, 3, rngs=nnx.Rngs(0))
    (_, h0), _ = no_input((c, h), jnp.zeros((2, 16, 16, 0)))
    assert h0.shape == (2, 16, 16, 8)
    # over a sequence with nnx.RNN: (N, T, H, W, C) -> (N, T, H, W, hidden)
    seq = nnx.RNN(cell, rngs=False)(jnp.ones((2, 5, 16, 16, 3)))
    assert seq.shape == (2, 5, 16, 16, 8)


def test_space_to_depth_round_trip():
    x = jax.random.normal(jax.random.key(0), (2, 64, 64, 1))
    y = rnn.space_to_depth(x, 4)
    assert y.shape == (2, 16, 16, 16)
    np.testing.assert_array_equal(rnn.depth_to_space(y, 4), x)
    np.testing.assert_array_equal(y[0, 0, 0].reshape(4, 4), x[0, :4, :4, 0])


def test_encoder_forecaster_shapes():
    model = rnn.EncoderForecaster(embed=8, hidden=(8, 8), future=10, rngs=nnx.Rngs(0))
    out = model(jnp.zeros((2, 10, 64, 64, 1)))
    assert out.shape == (2, 10, 64, 64, 1)
    with pytest.raises(ValueError, match="EncoderForecaster expects frames"):
        model(jnp.zeros((2, 10, 32, 32, 1)))


def _steps_lower_loss(model, task, arrays, steps, lr):
    cfg = train.TrainConfig(epochs=1, batch_size=len(next(iter(arrays.values()))), learning_rate=lr,
                            schedule="constant", warmup_epochs=0.0, weight_decay=0.0)
    trainer = train.Trainer(model, task, train.make_optimizer(cfg, steps))
    dev = data.to_device(arrays)
    idx = np.arange(cfg.batch_size)
    losses = []
    for step in range(steps):
        trainer.state, metrics = trainer.train_step(trainer.state, dev, idx, jax.random.key(step))
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all()
    return losses, trainer


def test_train_step_lowers_loss_row_classifier(mnist_train):
    batch = mnist_train.head(64).arrays()
    losses, trainer = _steps_lower_loss(rnn.RowClassifier(hidden=32, rngs=nnx.Rngs(0)),
                                        train.Classification(10), batch, 40, 3e-3)
    assert losses[-1] < 0.6 * losses[0]
    assert trainer.compilations("train") == 1


def test_article_lstm_head_and_label_regression(mnist_train):
    """Article C's stacked LSTM (LSTM 50-50, a linear Dense-25 bottleneck): one output regressing
    the label's value learns, and its rounded output is the predicted class."""
    model = rnn.RowClassifier(num_classes=1, **recipes.ARTICLE_LSTM_ARCH, rngs=nnx.Rngs(0))
    assert isinstance(model.head, nnx.Sequential) and model.head.layers[0].out_features == 25
    assert len(model.rnn.layers) == 2 and model.rnn.hidden == 50
    task = train.LabelRegression(10)
    batch = mnist_train.head(64).arrays()
    losses, trainer = _steps_lower_loss(model, task, batch, 40, 3e-3)
    assert losses[-1] < 0.5 * losses[0]
    assert trainer.compilations("train") == 1
    np.testing.assert_array_equal(task.predicted_classes(np.array([[-3.2], [0.4], [4.5], [6.6], [12.0]])),
                                  [0, 0, 4, 7, 9])   # rounded half to even, clipped to the classes
    sums = task.eval_sums(trainer.sync_model(), {"image": batch["image"][:8], "label": batch["label"][:8]}, jnp.ones(8))
    assert 0 <= float(sums["accuracy"]) <= 8 and float(sums["loss"]) > 0
    with pytest.raises(ValueError, match=r"one output, shape \(N, 1\); got \(2, 10\)"):
        task.loss(rnn.RowClassifier(hidden=8, rngs=nnx.Rngs(0)), {"image": batch["image"][:2],
                                                                 "label": batch["label"][:2]}, None)
    with pytest.raises(ValueError, match="head_hidden"):
        rnn.RowClassifier(head_hidden=0, rngs=nnx.Rngs(0))


def test_train_step_lowers_loss_row_completer(mnist_train):
    batch = {"image": mnist_train.images[:64]}
    losses, _ = _steps_lower_loss(rnn.RowCompleter(hidden=32, rngs=nnx.Rngs(0)),
                                  sequence.RowCompletion(), batch, 30, 3e-3)
    assert losses[-1] < 0.7 * losses[0]


def test_train_step_lowers_loss_encoder_forecaster(mnist_train):
    seqs = moving_mnist.generate(mnist_train.head(1000), 4, seed=0)
    losses, _ = _steps_lower_loss(rnn.EncoderForecaster(embed=8, hidden=(8,), rngs=nnx.Rngs(0)),
                                  sequence.NextFrames(), seqs.arrays(), 20, 1e-2)
    # the decoder starts near black (already a fair guess), so the drop is smaller than for rows
    assert np.mean(losses[-3:]) < 0.85 * losses[0]


@pytest.mark.parametrize("which", ["row", "completion", "video"])
def test_fit_compiles_each_step_once(which, mnist_train):
    if which == "row":
        model, task, arrays = rnn.RowClassifier(hidden=8, rngs=nnx.Rngs(0)), train.Classification(10), \
            mnist_train.head(96).arrays()
        monitor = "val_accuracy"
    elif which == "completion":
        model, task, arrays = rnn.RowCompleter(hidden=8, rngs=nnx.Rngs(0)), sequence.RowCompletion(), \
            {"image": mnist_train.images[:96]}
        monitor = "val_completion_mse"
    else:
        seqs = moving_mnist.generate(mnist_train.head(500), 12, seed=0)
        model, task, arrays = rnn.EncoderForecaster(embed=4, hidden=(4,), rngs=nnx.Rngs(0)), \
            sequence.NextFrames(), seqs.arrays()
        monitor = "val_mse"
    batch = 32 if which != "video" else 4
    cfg = train.TrainConfig(epochs=2, batch_size=batch, eval_batch_size=batch, warmup_epochs=0.5)
    result = train.fit(model, task, arrays, arrays, cfg, monitor=monitor, progress=False, log=None)
    assert len(result.history) == 2 and monitor in result.history[0]
    assert result.trainer.compilations() == 2  # one train program, one eval program


def test_accuracy_after_each_row_and_baselines(mnist_train, mnist_test):
    model = rnn.RowClassifier(hidden=8, rngs=nnx.Rngs(0))
    acc = sequence.accuracy_after_each_row(model, mnist_test.images[:50], mnist_test.labels[:50])
    assert acc.shape == (28,) and ((0 <= acc) & (acc <= 1)).all()
    base = sequence.completion_baselines(mnist_train.images[:2000], mnist_train.labels[:2000],
                                         mnist_test.images[:10], mnist_test.labels[:10])
    for name, images in base.items():
        assert images.shape == (10, 28, 28)
        np.testing.assert_allclose(images[:, :14], mnist_test.images[:10, :14, :, 0] / 255.0)
    np.testing.assert_allclose(base["repeat_last_row"][:, 20], mnist_test.images[:10, 13, :, 0] / 255.0)
    errors = sequence.completion_errors(base["class_mean"], mnist_test.images[:10])
    assert 0 < errors["mse"] < errors["mae"] < 1


def test_frame_mse_convention_and_baselines():
    pred = np.zeros((3, 10, 64, 64), np.float32)
    target = np.zeros_like(pred)
    target[:, :, :10, :10] = 0.5  # 100 pixels, each off by 0.5 -> 25 per frame
    out = sequence.horizon_errors(pred, target)
    np.testing.assert_allclose(out["mse"], 25.0)
    np.testing.assert_allclose(out["mae"], 50.0)
    assert out["mse"].shape == out["mae"].shape == out["ssim"].shape == (10,)
    observed = np.full((3, 10, 64, 64), 255, np.uint8)
    base = sequence.frame_baselines(observed, np.zeros((64, 64), np.float32), 10)
    assert base["copy_last"].shape == base["mean_frame"].shape == base["blank"].shape == (3, 10, 64, 64)
    assert base["blank"].max() == 0.0
    assert base["copy_last"].max() == 1.0
