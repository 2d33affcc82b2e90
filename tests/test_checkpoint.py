"""Orbax checkpoints: exact round trip, and clear refusals."""
from __future__ import annotations

import json

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


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match=r"no checkpoint at .*nothing-here"):
        checkpoint.load_model(tmp_path / "nothing-here")


def test_partial_checkpoint_is_refused(tmp_path):
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "meta.json").write_text("{}")
    with pytest.raises(checkpoint.CheckpointError, match=r"incomplete: expected meta.json and state/"):
        checkpoint.load_model(tmp_path / "partial")


def test_corrupt_meta_is_refused(tmp_path, trained):
    model, config = trained
    path = checkpoint.save_model(tmp_path / "ckpt", model, "resnet", config)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="corrupt meta.json"):
        checkpoint.load_model(path)


def test_other_architecture_is_refused(tmp_path, trained):
    model, config = trained
    path = checkpoint.save_model(tmp_path / "ckpt", model, "resnet", config)
    with pytest.raises(checkpoint.CheckpointError, match=r"holds a 'resnet' model; expected 'seed_cnn'"):
        checkpoint.load_model(path, expect_architecture="seed_cnn")
    meta = json.loads((path / "meta.json").read_text())
    meta["config"]["widths"] = [8, 16, 32]            # same class, different shapes
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="does not match architecture 'resnet'"):
        checkpoint.load_model(path)
    meta["architecture"] = "os.system"
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="unknown architecture 'os.system'"):
        checkpoint.load_model(path)
