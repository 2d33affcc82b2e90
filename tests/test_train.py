"""Training steps and loops on real MNIST batches."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imgmine_jax import data, models, train

SEED_CFG = models.classifier_config("seed_cnn", 10, (28, 28, 1))


def _seed_cnn(seed=0):
    return models.build("seed_cnn", SEED_CFG, seed=seed)


def test_train_steps_lower_the_loss_on_a_fixed_real_batch(mnist_train):
    batch = mnist_train.head(128).arrays()
    cfg = train.TrainConfig(epochs=1, batch_size=128, learning_rate=1e-3, schedule="constant", warmup_epochs=0)
    trainer = train.Trainer(_seed_cnn(), train.Classification(10), train.make_optimizer(cfg, 1))
    arrays = data.to_device(batch)
    before = trainer.evaluate(arrays)["loss"]
    trainer.run_epoch(arrays, np.tile(np.arange(128), (10, 1)))
    after = trainer.evaluate(arrays)["loss"]
    assert after < 0.5 * before, (before, after)


def test_an_epoch_is_the_jitted_step_per_batch_with_the_step_numbers_key(mnist_train):
    """run_epoch prepares keys and batches up front; the updates must be those of one
    train_step per batch keyed by fold_in(seed key, step), across epoch boundaries."""
    arrays = data.to_device(mnist_train.head(256).arrays())
    batches = data.epoch_batches(jax.random.key(1), 256, 32)
    cfg = train.TrainConfig(epochs=1, batch_size=32, augment_shift=2)
    make = lambda: train.Trainer(models.build("resnet", models.classifier_config("resnet", 10, (28, 28, 1))),
                                 train.Classification(10, augment_shift=2), train.make_optimizer(cfg, 8), seed=3)
    epochs, by_hand = make(), make()
    first = epochs.run_epoch(arrays, batches[:3])
    epochs.run_epoch(arrays, batches[3:])
    losses = []
    for step, idx in enumerate(batches):
        key = jax.random.fold_in(jax.random.key(3), step)
        by_hand.state, metrics = by_hand.train_step(by_hand.state, arrays, idx, key)
        losses.append(float(metrics["loss"]))
    assert epochs.step == 8 and first["loss"] == pytest.approx(np.mean(losses[:3]), rel=1e-6)
    a, b = nnx.state(epochs.sync_model(), nnx.Param), nnx.state(by_hand.sync_model(), nnx.Param)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_small_model_overfits_256_real_images(mnist_train):
    subset = mnist_train.head(256)
    cfg = train.TrainConfig(epochs=25, batch_size=32, learning_rate=1e-3, schedule="constant", warmup_epochs=0)
    result = train.fit(_seed_cnn(), train.Classification(10), subset.arrays(), None, cfg, progress=False, log=None)
    assert result.trainer.evaluate(data.to_device(subset.arrays()))["accuracy"] >= 0.99


def test_steps_compile_once_across_epochs(mnist_train):
    tr, va = data.train_val_split(mnist_train.head(1200), 200, seed=0)
    cfg = train.TrainConfig(epochs=3, batch_size=64, learning_rate=1e-3)
    model = models.build("resnet", models.classifier_config("resnet", 10, (28, 28, 1)))
    result = train.fit(model, train.Classification(10, augment_shift=2), tr.arrays(), va.arrays(), cfg,
                       progress=False, log=None)
    assert len(result.history) == 3
    # one training program (1000 // 64 = 15 steps x 3 epochs) and one evaluation program
    assert result.trainer.compilations() == 2
    assert result.trainer.step == 45


def test_fit_history_and_best_epoch(mnist_train):
    tr, va = data.train_val_split(mnist_train.head(1500), 500, seed=0)
    cfg = train.TrainConfig(epochs=2, batch_size=50, learning_rate=2e-3, schedule="cosine", warmup_epochs=1)
    result = train.fit(_seed_cnn(), train.Classification(10), tr.arrays(), va.arrays(), cfg,
                       progress=False, log=None)
    row = result.history[-1]
    assert {"epoch", "lr", "seconds", "images_per_sec", "train_loss", "train_accuracy",
            "val_loss", "val_accuracy"} <= set(row)
    assert result.history[0]["lr"] == 0.0 and result.history[1]["lr"] == pytest.approx(2e-3, rel=1e-3)
    best = max(result.history, key=lambda r: r["val_accuracy"])
    assert result.best_epoch == best["epoch"]
    # the returned model carries the best epoch's weights
    assert result.trainer.evaluate(data.to_device(va.arrays()))["accuracy"] >= 0.0
    preds = train.predict(result.model, va.images).argmax(-1)
    assert np.mean(preds == va.labels) == pytest.approx(best["val_accuracy"], abs=1e-6)


def test_same_seed_same_numbers(mnist_train):
    tr, va = data.train_val_split(mnist_train.head(700), 200, seed=0)
    cfg = train.TrainConfig(epochs=1, batch_size=50, seed=7, augment_shift=1)
    runs = [train.fit(_seed_cnn(7), train.Classification(10, augment_shift=1), tr.arrays(), va.arrays(), cfg,
                      progress=False, log=None) for _ in range(2)]
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert runs[0].history[0][key] == runs[1].history[0][key]


def test_vmapped_sweep_reproduces_sequential_runs(mnist_train):
    tr, va = data.train_val_split(mnist_train.head(800), 200, seed=0)
    cfg = train.TrainConfig(epochs=1, batch_size=50, learning_rate=1e-3, schedule="constant", warmup_epochs=0)
    task = train.Classification(10, augment_shift=1)
    make = lambda rngs: models.REGISTRY["seed_cnn"](**SEED_CFG, rngs=rngs)
    swept = train.sweep(make, task, tr.arrays(), va.arrays(), cfg, [3e-4, 3e-3], [0, 1], progress=False, log=None)
    assert swept.final("val_accuracy").shape == (4,)
    for i, (lr, seed) in enumerate(zip(swept.learning_rates, swept.seeds)):
        member_cfg = dataclasses.replace(cfg, learning_rate=float(lr))
        single = train.fit(_seed_cnn(int(seed)), task, tr.arrays(), va.arrays(), member_cfg, progress=False, log=None)
        # same numbers up to float reassociation in the batched kernels
        assert swept.final("val_loss")[i] == pytest.approx(single.history[-1]["val_loss"], rel=1e-3)
        assert swept.final("val_accuracy")[i] == pytest.approx(single.history[-1]["val_accuracy"], abs=0.006)
    assert len(set(np.round(swept.final("val_loss"), 4))) == 4       # the members really differ


def test_random_shift_moves_content_without_changing_mass(mnist_train):
    import jax

    images = mnist_train.images[:200]
    frame = np.ones((28, 28), bool)
    frame[2:-2, 2:-2] = False
    images = images[images[:, frame, 0].max(axis=1) == 0][:16]    # digits with an empty 2-pixel border
    shifted = np.asarray(train.random_shift(jax.random.key(0), images, 2))
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    assert not np.array_equal(shifted, images)
    # with an empty border, a shift of at most 2 pixels loses no ink
    np.testing.assert_array_equal(shifted.reshape(len(images), -1).sum(1, dtype=np.int64),
                                  images.reshape(len(images), -1).sum(1, dtype=np.int64))


@pytest.mark.parametrize("field,value,match", [
    ("epochs", -1, r"epochs must be an integer >= 1; got -1"),
    ("epochs", 2.5, r"epochs must be an integer >= 1; got 2.5"),
    ("batch_size", 0, r"batch_size must be an integer >= 1"),
    ("learning_rate", 0.0, r"learning_rate must be a number > 0"),
    ("learning_rate", float("nan"), r"learning_rate must be a number > 0"),
    ("schedule", "linear",
     r"schedule must be one of \('constant', 'cosine', 'onecycle', 'linear_decay'\); got 'linear'"),
    ("warmup_epochs", 20, r"warmup_epochs must be a number in \[0, epochs=10\]"),
    ("weight_decay", -1e-4, r"weight_decay must be a number >= 0"),
    ("label_smoothing", 1.0, r"label_smoothing must be a number in \[0, 1\)"),
    ("augment_shift", -2, r"augment_shift must be an integer >= 0"),
    ("augment_flip", "yes", r"augment_flip must be True or False"),
    ("seed", "0", r"seed must be an integer; got '0'"),
])
def test_bad_train_config_is_rejected(field, value, match):
    with pytest.raises(ValueError, match=match):
        train.TrainConfig(**{field: value})


def test_batch_size_larger_than_training_set_is_rejected(mnist_train):
    small = mnist_train.head(100)
    with pytest.raises(ValueError, match=r"batch_size=128 is larger than the training set \(100 examples\)"):
        train.fit(_seed_cnn(), train.Classification(10), small.arrays(), None,
                  train.TrainConfig(epochs=1, batch_size=128), progress=False, log=None)


def test_without_validation_the_last_epoch_is_kept(mnist_train):
    result = train.fit(_seed_cnn(), train.Classification(10), mnist_train.head(200).arrays(), None,
                       train.TrainConfig(epochs=3, batch_size=50), progress=False, log=None)
    assert result.best_epoch == 3
    final = np.asarray(jax.tree.leaves(nnx.state(result.trainer.state[0], nnx.Param))[0])
    np.testing.assert_array_equal(np.asarray(jax.tree.leaves(nnx.state(result.model, nnx.Param))[0]), final)


def test_shift_images_moves_pixels_and_fills_zeros(mnist_test):
    x = mnist_test.images[:3]
    moved = train.shift_images(x, 2, -1)
    np.testing.assert_array_equal(moved[:, 2:, :-1], x[:, :-2, 1:])
    assert not moved[:, :2].any() and not moved[:, :, -1:].any()
    np.testing.assert_array_equal(train.shift_images(x, 0, 0), x)
    np.testing.assert_array_equal(train.shift_images(train.shift_images(x, 0, 3), 0, -3)[:, :, :-3], x[:, :, :-3])


def test_predict_tta_averages_the_views(mnist_test):
    assert train.tta_views(0) == [(0, 0, False)]
    assert len(train.tta_views(1)) == 5 and len(train.tta_views(2, flip=True)) == 10
    with pytest.raises(ValueError, match="shift"):
        train.tta_views(-1)
    model = _seed_cnn()
    x = mnist_test.images[:50]
    single = np.asarray(jax.nn.softmax(train.predict(model, x), axis=-1))
    np.testing.assert_allclose(train.predict_tta(model, x, shift=0), single, rtol=1e-5, atol=1e-7)
    views = [np.asarray(jax.nn.softmax(train.predict(model, train.shift_images(x, dy, dx)[:, :, ::-1] if f
                                                     else train.shift_images(x, dy, dx)), axis=-1))
             for dy, dx, f in train.tta_views(1, flip=True)]
    tta = train.predict_tta(model, x, shift=1, flip=True)
    np.testing.assert_allclose(tta, np.mean(views, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(tta.sum(-1), 1.0, rtol=1e-5)


def test_sweep_runs_fits_epoch_loop_and_stops_on_a_non_finite_loss(mnist_train):
    tr, va = data.train_val_split(mnist_train.head(400), 100, seed=0)
    cfg = train.TrainConfig(epochs=1, batch_size=50, learning_rate=1e-3, schedule="constant", warmup_epochs=0)
    task = train.Classification(10)
    make = lambda rngs: models.REGISTRY["seed_cnn"](**SEED_CFG, rngs=rngs)
    swept = train.sweep(make, task, tr.arrays(), va.arrays(), cfg, [1e-3, 2e-3], [0], progress=False, log=None)
    single = train.fit(_seed_cnn(0), task, tr.arrays(), va.arrays(), cfg, progress=False, log=None)
    assert list(swept.history[0]) == list(single.history[0])          # the same columns, in the same order
    np.testing.assert_allclose(swept.history[0]["lr"], [1e-3, 2e-3], rtol=1e-6)   # each member's rate
    assert single.history[0]["lr"] == pytest.approx(1e-3)
    with pytest.raises(train.NonFiniteLossError, match=r"non-finite training loss .* at step \d+"):
        train.sweep(make, task, tr.arrays(), va.arrays(), cfg, [1e-3, 1e30], [0], progress=False, log=None)


def test_the_task_contract_declares_defaults_and_metric_directions(mnist_train):
    from imgmine_jax import gan

    cls = train.Classification(10)
    assert isinstance(cls, train.Task) and cls.maximizes("val_accuracy") and not cls.maximizes("val_loss")
    assert gan.GANTask().maximizes("is") and not gan.GANTask().maximizes("fid")

    class SquaredLogits(train.Task):   # only a loss and its evaluation: the rest are the defaults
        def loss(self, model, batch, key):
            loss = (model(data.normalize(batch["image"])) ** 2).mean()
            return loss, {"loss": loss}

        def eval_sums(self, model, batch, mask):
            return {"loss": jnp.sum((model(data.normalize(batch["image"])) ** 2).mean(axis=1) * mask)}

    tr, va = data.train_val_split(mnist_train.head(300), 100, seed=0)
    cfg = train.TrainConfig(epochs=2, batch_size=50, learning_rate=1e-3, schedule="constant", warmup_epochs=0)
    result = train.fit(_seed_cnn(0), SquaredLogits(), tr.arrays(), va.arrays(), cfg, monitor="val_loss",
                       progress=False, log=None)
    losses = result.column("val_loss")
    assert result.best_epoch == int(np.argmin(losses)) + 1            # a loss is minimised
    assert result.history[1]["lr"] == cfg.learning_rate                # from the schedule, not the optimiser state
    kept = train.fit(_seed_cnn(0), SquaredLogits(), tr.arrays(), va.arrays(), cfg, monitor="val_loss",
                     maximize=True, progress=False, log=None)
    assert kept.best_epoch == int(np.argmax(kept.column("val_loss"))) + 1
