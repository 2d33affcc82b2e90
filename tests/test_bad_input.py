"""Bad input gets a clear error: one table of the mistakes a user makes, and what they are told.

Each case calls the public API the way a notebook or a user would, with one thing wrong,
and checks the exception type and that the message names the bad value and what was
expected. (TrainConfig's field-by-field checks are tabulated in test_train.py.)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from imgmine_jax import checkpoint, classifier, data, models, run, train

NB01 = run.NOTEBOOK_DIR / "01_cnn_classification.ipynb"


def _model(name="seed_cnn"):
    return models.build(name, models.classifier_config(name, 10, (28, 28, 1)))


def _saved(tmp: Path, name="resnet") -> Path:
    return checkpoint.save_model(tmp / "ckpt", _model(name), name,
                                 models.classifier_config(name, 10, (28, 28, 1)))


def _edit_meta(path: Path, **changes) -> Path:
    meta = json.loads((path / "meta.json").read_text())
    for key, value in changes.items():
        if key == "widths":
            meta["config"]["widths"] = value
        else:
            meta[key] = value
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def _truncate_state(path: Path) -> Path:
    for f in (path / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
            f.write_bytes(b"\0" * 7)
    return path


def _fit(n=100, batch_size=128, **kw):
    tiny = data.load("mnist", "test").head(n)
    return train.fit(_model(), train.Classification(10), tiny.arrays(), None,
                     train.TrainConfig(epochs=1, batch_size=batch_size), progress=False, log=None, **kw)


F32 = np.float32
CASES = [
    # --- data
    ("unknown dataset", lambda t: data.load("not_a_dataset"),
     data.DatasetError, r"unknown TFDS dataset 'not_a_dataset'"),
    ("unknown split", lambda t: data.load("mnist", "validation"),
     data.DatasetError, r"no split 'validation'.*\['test', 'train'\]"),
    ("empty dataset name", lambda t: data.load(""),
     data.DatasetError, r"dataset name must be a non-empty string; got ''"),
    ("validation split larger than the data", lambda t: data.train_val_split(data.load("mnist", "test"), 10_000),
     data.DatasetError, r"val_size must be an integer in \[1, 9999\].*10000"),
    ("head of a negative size", lambda t: data.load("mnist", "test").head(-3),
     data.DatasetError, r"head\(n\) expects a positive integer or None; got -3"),
    ("batch larger than the epoch", lambda t: data.epoch_batches(__import__("jax").random.key(0), 100, 128),
     data.DatasetError, r"batch_size must be in \[1, 100\].*128"),
    # --- images handed to a model
    ("image batch without batch axis", lambda t: _model()(jnp.zeros((28, 28, 1))),
     ValueError, r"shape \(N, 28, 28, 1\); got an input of shape \(28, 28, 1\)"),
    ("image of the wrong size", lambda t: _model("resnet")(jnp.zeros((2, 32, 32, 1))),
     ValueError, r"\(H, W, C\) = \(28, 28, 1\); got \(32, 32, 1\)"),
    ("RGB image for a grey model", lambda t: _model()(jnp.zeros((2, 28, 28, 3))),
     ValueError, r"\(H, W, C\) = \(28, 28, 1\); got \(28, 28, 3\)"),
    ("uint8 image to a model", lambda t: _model()(jnp.zeros((2, 28, 28, 1), jnp.uint8)),
     TypeError, r"floating-point images normalised.*got dtype uint8"),
    ("unnormalised 0..255 floats to a model", lambda t: _model("resnet")(jnp.full((2, 28, 28, 1), 255.0)),
     ValueError, r"normalised to \[-1, 1\].*got values in \[255, 255\]"),
    # --- images handed to predict (uint8 as stored)
    ("float images to predict", lambda t: train.predict(_model(), np.zeros((2, 28, 28, 1), F32)),
     ValueError, r"predict expects uint8 images of shape \(N, H, W, C\); got float32"),
    ("predict without channel axis", lambda t: train.predict(_model(), np.zeros((2, 28, 28), np.uint8)),
     ValueError, r"uint8 images of shape \(N, H, W, C\); got uint8 \(2, 28, 28\)"),
    ("predict on images of another size", lambda t: train.predict(_model(), np.zeros((2, 32, 32, 1), np.uint8)),
     ValueError, r"\(H, W, C\) = \(28, 28, 1\); got \(32, 32, 1\)"),
    # --- models and notebook-level hyperparameters
    ("unknown model name", lambda t: models.classifier_config("vgg", 10, (28, 28, 1)),
     ValueError, r"unknown model 'vgg'; expected one of \[.*'resnet', 'seed_cnn'\]"),
    ("non-square images", lambda t: models.classifier_config("resnet", 10, (28, 32, 1)),
     ValueError, r"expects square images; got image shape \(28, 32, 1\)"),
    ("unknown classifier to load", lambda t: classifier.train_classifier("mnist", "vgg"),
     ValueError, r"unknown classifier 'vgg'; expected one of"),
    ("negative epochs", lambda t: train.TrainConfig(epochs=-1),
     ValueError, r"epochs must be an integer >= 1; got -1"),
    ("batch size larger than the dataset", lambda t: _fit(n=100, batch_size=128),
     ValueError, r"batch_size=128 is larger than the training set \(100 examples\)"),
    ("checkpoint interval of zero", lambda t: _fit(n=64, batch_size=32, checkpoint_dir=t, checkpoint_every=0),
     ValueError, r"checkpoint_every must be an integer >= 1; got 0"),
    # --- notebook runner and notebook parameters
    ("unknown profile", lambda t: run.run_notebook(NB01, t, "fast"),
     ValueError, r"profile must be one of \('quick', 'full'\); got 'fast'"),
    ("unknown notebook", lambda t: run.find_notebooks(["07"]),
     SystemExit, r"notebook '07' matches 0 of .*expected exactly one"),
    ("misspelt notebook parameter", lambda t: run.run_notebook(NB01, t, "quick", {"epoch": 3}),
     ValueError, r"01_cnn_classification has no parameter 'epoch'; expected one of .*'epochs'"),
    ("string where a number is expected", lambda t: run.run_notebook(NB01, t, "quick", {"epochs": "3"}),
     ValueError, r"parameter epochs='3' of 01_cnn_classification must be a int like its default 10; got a str"),
    ("float where an integer is expected", lambda t: run.check_parameters(NB01, {"batch_size": 32.5}),
     ValueError, r"batch_size=32.5 .* must be a int"),
    ("malformed -p option", lambda t: run.main(["-p", "epochs3", "01"]),
     SystemExit, r"-p expects name=value; got 'epochs3'"),
    # --- checkpoints
    ("missing checkpoint", lambda t: checkpoint.load_model(t / "nothing-here"),
     checkpoint.CheckpointError, r"no checkpoint at .*nothing-here"),
    ("partial checkpoint", lambda t: checkpoint.load_model(shutil.rmtree(_saved(t) / "state") or t / "ckpt"),
     checkpoint.CheckpointError, r"incomplete: expected meta.json and state/"),
    ("corrupt meta.json", lambda t: checkpoint.load_model(
        (_saved(t) / "meta.json").write_text("{not json") and t / "ckpt"),
     checkpoint.CheckpointError, r"corrupt meta.json"),
    ("corrupt weights", lambda t: checkpoint.load_model(_truncate_state(_saved(t))),
     checkpoint.CheckpointError, r"ckpt/state is (corrupt|unreadable)"),
    ("checkpoint of another architecture", lambda t: checkpoint.load_model(_saved(t), expect_architecture="seed_cnn"),
     checkpoint.CheckpointError, r"holds a 'resnet' model; expected 'seed_cnn'"),
    ("checkpoint of another configuration", lambda t: checkpoint.load_model(_edit_meta(_saved(t), widths=[8, 16, 32])),
     checkpoint.CheckpointError, r"does not match architecture 'resnet' with config"),
    ("checkpoint naming code to run", lambda t: checkpoint.load_model(_edit_meta(_saved(t), architecture="os.system")),
     checkpoint.CheckpointError, r"unknown architecture 'os.system'; expected one of"),
    ("saving an unregistered architecture", lambda t: checkpoint.save_model(t / "x", _model(), "mlp", {}),
     checkpoint.CheckpointError, r"unknown architecture 'mlp'; expected one of"),
]


def test_the_table_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("call,error,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(call, error, match, tmp_path):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_misspelt_parameter_leaves_results_untouched(tmp_path):
    """Parameter checks happen before anything is executed or written."""
    with pytest.raises(ValueError):
        run.run_notebook(NB01, tmp_path, "quick", {"epoch": 3})
    assert list(tmp_path.iterdir()) == []
