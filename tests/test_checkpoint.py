"""Orbax checkpoints: exact round trip, and clear refusals."""
from __future__ import annotations


import numpy as np
import pytest

from imgmine_jax import checkpoint, models, train


@pytest.fixture(scope="module")
def trained(mnist_train):
    """A ResNet after one short epoch (batch statistics differ from their initial values)."""
    config = models.classifier_config("resnet", 10, (28, 28, 1))
    model = models.build("resnet", config)
    cfg = train.TrainConfig(epochs=1, batch_size=64, learning_rate=1e-3)
    train.fit(model, train.Classification(10), mnist_train.head(640).arrays(), None, cfg, progress=False, log=None)
    return model, config


def test_save_restore_gives_identical_predictions(tmp_path, trained, mnist_test):
    model, config = trained
    path = checkpoint.save_model(tmp_path / "ckpt", model, "resnet", config, info={"note": "test"})
    restored, meta = checkpoint.load_model(path)
    assert meta["info"]["note"] == "test" and meta["architecture"] == "resnet"
    images = mnist_test.images[:200]
    np.testing.assert_array_equal(train.predict(model, images), train.predict(restored, images))


def test_overwrite_keeps_a_single_complete_checkpoint(tmp_path, trained):
    model, config = trained
    for _ in range(2):
        checkpoint.save_model(tmp_path / "ckpt", model, "resnet", config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
