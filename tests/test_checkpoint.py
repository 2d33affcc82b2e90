"""Orbax checkpoints: exact round trip, and clear refusals."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from flax import nnx

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


def _fail_on_rename(monkeypatch):
    """Fail the rename that moves a freshly written temporary directory into place."""
    import imgmine_jax.files as files

    real = files.os.replace

    def broken(src, dst):
        if ".tmp-" in str(src):
            raise OSError("disk full (injected)")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", broken)


def test_failed_model_save_keeps_the_previous_checkpoint(tmp_path, trained, mnist_test, monkeypatch):
    model, config = trained
    path = checkpoint.save_model(tmp_path / "ckpt", model, "resnet", config, info={"version": 1})
    before = train.predict(model, mnist_test.images[:100])
    _fail_on_rename(monkeypatch)
    with pytest.raises(OSError, match="injected"):
        checkpoint.save_model(tmp_path / "ckpt", models.build("resnet", config, seed=9), "resnet", config,
                              info={"version": 2})
    monkeypatch.undo()
    restored, meta = checkpoint.load_model(path)
    assert meta["info"]["version"] == 1
    np.testing.assert_array_equal(train.predict(restored, mnist_test.images[:100]), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"], "temporary files left behind"


def test_failed_training_save_keeps_the_newest_complete_checkpoint(tmp_path, trained, monkeypatch):
    model, _ = trained
    state = nnx.state(model)
    checkpoint.save_training(tmp_path, 1, state, {"epoch": 1})
    _fail_on_rename(monkeypatch)
    with pytest.raises(OSError, match="injected"):
        checkpoint.save_training(tmp_path, 2, state, {"epoch": 2})
    monkeypatch.undo()
    latest = checkpoint.latest_training(tmp_path)
    assert latest is not None and latest.name == "epoch-0001"
    _, progress = checkpoint.restore_training(latest, state)
    assert progress == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001"]


_SAVER = """
import sys
from imgmine_jax import checkpoint, models
config = models.classifier_config("resnet", 10, (28, 28, 1), widths=[32, 64, 128])
for i in range(10_000):
    checkpoint.save_model(sys.argv[1], models.build("resnet", config, seed=i % 3), "resnet", config, info={"i": i})
    print(i, flush=True)
"""


def test_sigkill_while_saving_leaves_a_loadable_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(tmp_path / "ckpt")], stdout=subprocess.PIPE, text=True)
    for _ in range(3):                        # let it complete a few saves, then kill it mid-way
        assert proc.stdout.readline(), "the saver died"
    time.sleep(0.15)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    restored, meta = checkpoint.load_model(tmp_path / "ckpt", expect_architecture="resnet")
    assert meta["info"]["i"] >= 2
    assert models.count_params(restored) > 0


def test_crash_between_the_two_renames_is_recovered_on_read(tmp_path, trained):
    model, config = trained
    path = checkpoint.save_model(tmp_path / "ckpt", model, "resnet", config, info={"version": 1})
    path.rename(tmp_path / ".old-ckpt-12345")         # what a SIGKILL right after the first rename leaves
    _, meta = checkpoint.load_model(path)
    assert meta["info"]["version"] == 1 and path.is_dir()
