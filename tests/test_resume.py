"""Resumable training: a run killed with SIGKILL and rerun ends exactly where an uninterrupted run ends."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from imgmine_jax import checkpoint, files, models, train

WORKER = Path(__file__).with_name("resume_worker.py")


def _run(ckpt, out, kill_after_epoch=None, mode="fit"):
    proc = subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(out), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
    if kill_after_epoch is None:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output.decode()[-3000:]
        return output.decode()
    marker = Path(ckpt) / f"epoch-{kill_after_epoch:04d}"
    deadline = time.time() + 600
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "worker never reached the checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None


@pytest.mark.parametrize("mode,epochs", [("fit", 5), ("sweep", 3)])
def test_sigkill_then_rerun_matches_uninterrupted_run(tmp_path, mode, epochs):
    _run(tmp_path / "a", tmp_path / "a.npz", mode=mode)
    _run(tmp_path / "b", tmp_path / "b.npz", kill_after_epoch=2, mode=mode)
    assert not (tmp_path / "b.npz").exists(), "the worker finished before it was killed"
    log = _run(tmp_path / "b", tmp_path / "b.npz", mode=mode)
    assert "resumed from" in log and "epoch-0002" in log
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert json.loads(str(a["history"])) == json.loads(str(b["history"]))
    assert len(json.loads(str(a["history"]))) == epochs
    if mode == "fit":
        assert int(a["best_epoch"]) == int(b["best_epoch"])
    names = [k for k in a.files if k not in ("history", "best_epoch")]
    assert names
    for name in names:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)   # bitwise on CPU


def test_resume_with_other_parameters_is_refused(tmp_path, mnist_train):
    tr = mnist_train.head(400)
    config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
    cfg = train.TrainConfig(epochs=1, batch_size=50)
    task = train.Classification(10)
    train.fit(models.build("seed_cnn", config), task, tr.arrays(), None, cfg, checkpoint_dir=tmp_path,
              progress=False, log=None)
    other = train.TrainConfig(epochs=2, batch_size=50, learning_rate=5e-3)
    with pytest.raises(checkpoint.CheckpointError, match="different parameters"):
        train.fit(models.build("seed_cnn", config), task, tr.arrays(), None, other, checkpoint_dir=tmp_path,
                  progress=False, log=None)
    with pytest.raises(checkpoint.CheckpointError, match="different model or optimiser"):
        train.fit(models.build("resnet", models.classifier_config("resnet", 10, (28, 28, 1))), task,
                  tr.arrays(), None, cfg, checkpoint_dir=tmp_path, progress=False, log=None)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path, mnist_train):
    import jax.numpy as jnp

    tr = mnist_train.head(400)
    config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
    cfg = train.TrainConfig(epochs=3, batch_size=50, learning_rate=1e-3)

    def poison_after_first_epoch(row, trainer):     # what a diverging update would leave behind
        if row["epoch"] == 1:
            nan = lambda x: x * jnp.nan if jnp.issubdtype(x.dtype, jnp.floating) else x
            trainer.state = jax.tree.map(nan, trainer.state)

    with pytest.raises(train.NonFiniteLossError,
                       match=r"non-finite training loss nan at step 8; .*last good checkpoint is .*epoch-0001"):
        train.fit(models.build("seed_cnn", config), train.Classification(10), tr.arrays(), None, cfg,
                  checkpoint_dir=tmp_path, on_epoch_end=poison_after_first_epoch, progress=False, log=None)
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-0001"]
    state, progress = checkpoint.restore_training(
        tmp_path / "epoch-0001", _like(config, cfg, tr))
    assert progress["epoch"] == 1 and progress["step"] == 8
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state)
               if jnp.issubdtype(leaf.dtype, jnp.floating))


def _like(config, cfg, tr):
    """A (state, best weights) pytree of the shape fit() checkpoints for this setup."""
    trainer = train.Trainer(models.build("seed_cnn", config), train.Classification(10),
                            train.make_optimizer(cfg, len(tr) // cfg.batch_size))
    return trainer.state, trainer.model_state


def test_fit_resumes_by_itself_after_an_interruption_then_reuses_the_finished_training(tmp_path, monkeypatch,
                                                                                      mnist_train):
    """No checkpoint_dir given: a rerun of an interrupted notebook cell picks up where it stopped."""
    monkeypatch.setenv("IMGMINE_ARTIFACTS", str(tmp_path))
    tr = mnist_train.head(300)
    config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
    cfg = train.TrainConfig(epochs=3, batch_size=50, seed=2)
    run = lambda **kw: train.fit(models.build("seed_cnn", config, seed=2), train.Classification(10), tr.arrays(),
                                 None, cfg, progress=False, **kw)

    def interrupt_after_epoch_2(row, trainer):
        if row["epoch"] == 2:
            raise KeyboardInterrupt          # what a notebook's stop button does

    with pytest.raises(KeyboardInterrupt):
        run(on_epoch_end=interrupt_after_epoch_2, log=None)
    assert [p.name for p in (tmp_path / "training").iterdir()], "no automatic checkpoint was kept"
    lines = []
    resumed = run(log=lines.append)
    assert any(line.startswith("resumed from") and "epoch-0002" in line for line in lines), lines
    assert not resumed.reused
    [entry] = (tmp_path / "training").iterdir()
    assert (entry / train.FINISHED).is_file(), "a finished training is kept, marked finished"

    lines = []
    again = run(log=lines.append)                 # the same call again: loaded, not trained
    assert again.reused and any(line.startswith("reused the finished training") for line in lines), lines
    assert again.history == resumed.history and again.train_seconds == resumed.train_seconds
    other = train.fit(models.build("seed_cnn", config, seed=3), train.Classification(10), tr.arrays(), None,
                      dataclasses.replace(cfg, seed=3), progress=False, log=None)
    assert not other.reused, "another seed must miss the finished-training cache"
    other_init = train.fit(models.build("seed_cnn", config, seed=7), train.Classification(10), tr.arrays(), None,
                           cfg, progress=False, log=None)
    assert not other_init.reused, "other initial weights under the same configuration must miss the cache"
    monkeypatch.setenv("IMGMINE_CACHE", "0")
    assert not run(log=None).reused, "IMGMINE_CACHE=0 trains again even where a finished training is kept"
    monkeypatch.delenv("IMGMINE_CACHE")

    monkeypatch.setenv("IMGMINE_RESUME", "0")
    fresh = run(log=None)
    assert not fresh.reused
    timing = ("seconds", "images_per_sec")
    strip = lambda h: [{k: v for k, v in row.items() if k not in timing} for row in h]
    assert strip(resumed.history) == strip(fresh.history)
    for a, b, c in zip(*(jax.tree.leaves(nnx.state(r.model)) for r in (resumed, fresh, again))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_a_finished_sweep_is_reused_with_its_history_and_time(tmp_path, monkeypatch, mnist_train):
    """notebook 01 re-run: the vmapped sweep is loaded like fit's trainings, not trained again."""
    monkeypatch.setenv("IMGMINE_ARTIFACTS", str(tmp_path))
    tr, va = mnist_train.head(200), mnist_train.take(slice(200, 300))
    config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
    make = lambda rngs: models.REGISTRY["seed_cnn"](**config, rngs=rngs)
    cfg = train.TrainConfig(epochs=2, batch_size=50, schedule="constant", warmup_epochs=0.0, seed=1)
    run = lambda lrs, **kw: train.sweep(make, train.Classification(10), tr.arrays(), va.arrays(), cfg, lrs, [0, 1],
                                        progress=False, **kw)
    first = run([1e-3, 3e-3], log=None)
    assert not first.reused
    lines = []
    again = run([1e-3, 3e-3], log=lines.append)
    assert again.reused and any(line.startswith("reused the finished sweep") for line in lines), lines
    assert again.train_seconds == first.train_seconds
    as_json = lambda history: json.dumps(history, default=files.json_default)
    assert as_json(again.history) == as_json(first.history)
    for a, b in zip(jax.tree.leaves(first.states), jax.tree.leaves(again.states)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not run([1e-3, 1e-2], log=None).reused, "another learning rate must miss the cache"
    monkeypatch.setenv("IMGMINE_CACHE", "0")
    assert not run([1e-3, 3e-3], log=None).reused


def test_cache_off_or_callbacks_leave_no_finished_training(tmp_path, monkeypatch, mnist_train):
    monkeypatch.setenv("IMGMINE_ARTIFACTS", str(tmp_path))
    tr = mnist_train.head(200)
    config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
    cfg = train.TrainConfig(epochs=1, batch_size=50, seed=4)
    run = lambda **kw: train.fit(models.build("seed_cnn", config, seed=4), train.Classification(10), tr.arrays(),
                                 None, cfg, progress=False, log=None, **kw)
    monkeypatch.setenv("IMGMINE_CACHE", "0")
    run()
    assert not any((tmp_path / "training").iterdir())
    monkeypatch.delenv("IMGMINE_CACHE")
    calls = []
    run(epoch_metrics=lambda trainer: calls.append(trainer.step) or {})
    assert calls and not any((tmp_path / "training").iterdir()), "a call with callbacks must not be reused"


# --------------------------------------------------------------------------- what a resume may accept

def _small_fit(tr, va=None, **kw):
    config = models.classifier_config("seed_cnn", 10, (28, 28, 1), hidden=32)
    cfg = train.TrainConfig(epochs=2, batch_size=50, seed=1)
    return train.fit(models.build("seed_cnn", config, seed=1), train.Classification(10), tr.arrays(),
                     None if va is None else va.arrays(), cfg, progress=False, **{"log": None, **kw})


def _stop_after_epoch_1(row, trainer):
    if row["epoch"] == 1:
        raise KeyboardInterrupt


def _params(result):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(result.model, nnx.Param))]


def test_relative_checkpoint_dir_resumes(tmp_path, monkeypatch, mnist_train):
    monkeypatch.chdir(tmp_path)
    tr = mnist_train.head(200)
    with pytest.raises(KeyboardInterrupt):
        _small_fit(tr, checkpoint_dir="runs/relative", on_epoch_end=_stop_after_epoch_1)
    lines = []
    _small_fit(tr, checkpoint_dir="runs/relative", log=lines.append)
    assert any(line.startswith("resumed from") and "epoch-0001" in line for line in lines), lines


def test_relative_artifacts_directory_resumes(tmp_path, monkeypatch, mnist_train):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMGMINE_ARTIFACTS", "relative-artifacts")
    tr = mnist_train.head(200)
    with pytest.raises(KeyboardInterrupt):
        _small_fit(tr, on_epoch_end=_stop_after_epoch_1)
    assert any((tmp_path / "relative-artifacts" / "training").iterdir())
    lines = []
    _small_fit(tr, log=lines.append)
    assert any(line.startswith("resumed from") for line in lines), lines


def test_truncated_newest_checkpoint_falls_back_and_ends_like_an_uninterrupted_run(tmp_path, mnist_train):
    tr, va = mnist_train.head(200), mnist_train.take(np.arange(1000, 1100))
    reference = _small_fit(tr, va, checkpoint_dir=tmp_path / "a")
    _small_fit(tr, va, checkpoint_dir=tmp_path / "b")
    newest = tmp_path / "b" / "epoch-0002"
    for f in (newest / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 16:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    lines = []
    with pytest.warns(UserWarning, match=r"epoch-0002 is damaged"):
        resumed = _small_fit(tr, va, checkpoint_dir=tmp_path / "b", log=lines.append)
    assert any(line.startswith("resumed from") and "epoch-0001" in line for line in lines), lines
    timing = ("seconds", "images_per_sec")
    strip = lambda h: [{k: v for k, v in row.items() if k not in timing} for row in h]
    assert strip(resumed.history) == strip(reference.history)
    for a, b in zip(_params(reference), _params(resumed)):
        np.testing.assert_array_equal(a, b)


def test_resume_on_other_data_of_the_same_size_is_refused(tmp_path, mnist_train):
    _small_fit(mnist_train.head(200), checkpoint_dir=tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="different parameters"):
        _small_fit(mnist_train.take(np.arange(5000, 5200)), checkpoint_dir=tmp_path)


def test_non_finite_validation_loss_stops_training(mnist_train):
    import dataclasses

    import jax.numpy as jnp

    @dataclasses.dataclass(frozen=True)
    class BrokenEvaluation(train.Classification):
        def eval_sums(self, model, batch, mask):
            sums = super().eval_sums(model, batch, mask)
            return {**sums, "loss": sums["loss"] * jnp.nan}

    config = models.classifier_config("seed_cnn", 10, (28, 28, 1), hidden=32)
    with pytest.raises(FloatingPointError, match=r"epoch 1: validation loss is not finite: nan"):
        train.fit(models.build("seed_cnn", config), BrokenEvaluation(10), mnist_train.head(100).arrays(),
                  mnist_train.head(50).arrays(), train.TrainConfig(epochs=2, batch_size=50), progress=False, log=None,
                  checkpoint_dir=None)


_KEY_SCRIPT = """
from flax import nnx
from imgmine_jax import models, train
import numpy as np
net = models.ArticleCNN(softmax_output={softmax}, rngs=nnx.Rngs(0))
arrays = {{"image": np.zeros((4, 28, 28, 1), np.uint8), "label": np.zeros(4, np.int32)}}
print(train._automatic_checkpoint_dir({{"config": 1}}, net, arrays).name)
"""


def test_the_finished_training_key_tells_networks_of_one_parameter_tree_apart_and_is_stable_across_processes():
    """Two networks with the same parameters and initial weights but another computation (an output
    softmax) must not share a finished training; the same network must find it again in a new process."""
    def key(softmax: bool, in_process: bool = True) -> str:
        if not in_process:
            out = subprocess.run([sys.executable, "-c", _KEY_SCRIPT.format(softmax=softmax)], capture_output=True,
                                 text=True, check=True, cwd=Path(__file__).resolve().parents[1])
            return out.stdout.strip().splitlines()[-1]
        arrays = {"image": np.zeros((4, 28, 28, 1), np.uint8), "label": np.zeros(4, np.int32)}
        return train._automatic_checkpoint_dir({"config": 1}, models.ArticleCNN(softmax_output=softmax,
                                                                               rngs=nnx.Rngs(0)), arrays).name

    assert key(True) != key(False)
    assert key(True) == key(True) == key(True, in_process=False)
