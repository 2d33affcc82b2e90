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


# --------------------------------------------------------------------------- integrity and faults

def _flip_one_bit(path):
    f = max((f for f in (path / "state").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    f.write_bytes(bytes(raw))


def test_a_flipped_bit_in_a_saved_model_is_refused(tmp_path, trained):
    model, config = trained
    path = checkpoint.save_model(tmp_path / "ckpt", model, "resnet", config)
    checkpoint.verify(path)
    _flip_one_bit(path)
    with pytest.raises(checkpoint.CheckpointError, match=r"ckpt is damaged: file state/.* has SHA-256"):
        checkpoint.load_model(path)


def test_damaged_newest_training_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
    state = {"w": np.arange(1000, dtype=np.float32)}
    for epoch in (1, 2, 3):
        checkpoint.save_training(tmp_path, epoch, {"w": state["w"] * epoch}, {"epoch": epoch}, keep=3)
    _flip_one_bit(tmp_path / "epoch-0003")
    for f in (tmp_path / "epoch-0002" / "state").rglob("*"):     # truncated, as a full disk leaves it
        if f.is_file() and f.stat().st_size > 16:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"skipping a damaged training checkpoint"):
        latest = checkpoint.latest_training(tmp_path)
    assert latest == tmp_path / "epoch-0001"
    restored, progress = checkpoint.restore_training(latest, state)
    assert progress == {"epoch": 1}
    np.testing.assert_array_equal(restored["w"], state["w"])
    with pytest.raises(checkpoint.CheckpointError, match="epoch-0003 is damaged"):
        checkpoint.restore_training(tmp_path / "epoch-0003", state)


_KILLED_WRITER = """
import os, signal, sys
import numpy as np
from imgmine_jax import checkpoint, files, models
where, mode = sys.argv[1], sys.argv[2]
config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
if mode == "model":
    checkpoint.save_model(where + "/ckpt", models.build("seed_cnn", config), "seed_cnn", config, info={"v": 1})
else:
    checkpoint.save_training(where, 1, {"w": np.array([1.0, 2.0], np.float32)}, {"epoch": 1})
real_replace = files.os.replace

def die(*args):                               # SIGKILL at the chosen moment of the second write
    os.kill(os.getpid(), signal.SIGKILL)

def die_after_first_rename(src, dst):
    real_replace(src, dst)
    if ".old-" in str(dst):
        die()

if sys.argv[3] == "while-writing":
    checkpoint._write_manifest = die
else:
    files.os.replace = die_after_first_rename
if mode == "model":
    checkpoint.save_model(where + "/ckpt", models.build("seed_cnn", config, seed=1), "seed_cnn", config, info={"v": 2})
else:
    checkpoint.save_training(where, 1, {"w": np.array([3.0, 4.0], np.float32)}, {"epoch": 1})
"""


@pytest.mark.parametrize("mode", ["model", "training"])
@pytest.mark.parametrize("moment", ["while-writing", "between-renames"])
def test_a_writer_killed_mid_save_leaves_nothing_behind_after_the_next_read(tmp_path, mode, moment):
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path), mode, moment], timeout=300)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())
    assert any(".tmp-" in n or n.startswith(".old-") for n in left), f"the kill left nothing to clean: {left}"
    if mode == "model":
        _, meta = checkpoint.load_model(tmp_path / "ckpt")
        assert meta["info"]["v"] == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    else:
        latest = checkpoint.latest_training(tmp_path)
        _, progress = checkpoint.restore_training(latest, {"w": np.zeros(2, np.float32)})
        assert progress == {"epoch": 1}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001"]


def test_save_over_a_file_is_refused_and_leaves_no_hidden_copy(tmp_path, trained):
    model, config = trained
    (tmp_path / "ckpt").write_text("a file")
    with pytest.raises(checkpoint.CheckpointError, match="which is a file"):
        checkpoint.save_model(tmp_path / "ckpt", model, "resnet", config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


_WRITER_LOOP = """
import sys
from imgmine_jax import checkpoint, models
config = models.classifier_config("seed_cnn", 10, (28, 28, 1), hidden=32)
for i in range(100_000):
    checkpoint.save_model(sys.argv[1], models.build("seed_cnn", config, seed=i % 3), "seed_cnn", config, info={"i": i})
    print(i, flush=True)
"""


def test_a_reader_beside_a_writer_never_sees_a_damaged_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER_LOOP, str(tmp_path / "ckpt")], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline(), "the writer died"
        seen = set()
        for _ in range(400):                  # until several versions were read (bounded)
            _, meta = checkpoint.load_model(tmp_path / "ckpt", expect_architecture="seed_cnn")
            seen.add(meta["info"]["i"])
            if len(seen) >= 4:
                break
        assert proc.poll() is None, "the writer stopped: the reads did not overlap the writes"
        assert len(seen) > 1, "every read saw the same version: the reads did not overlap the writes"
    finally:
        proc.kill()
        proc.wait()


def test_relative_checkpoint_paths_save_and_load(tmp_path, trained, monkeypatch):
    model, config = trained
    monkeypatch.chdir(tmp_path)
    path = checkpoint.save_model("models/relative", model, "resnet", config)
    assert path == tmp_path / "models" / "relative"
    checkpoint.load_model("models/relative")
    checkpoint.save_training("runs/relative", 1, {"w": np.ones(2)}, {"epoch": 1})
    assert checkpoint.latest_training("runs/relative") == tmp_path / "runs" / "relative" / "epoch-0001"
