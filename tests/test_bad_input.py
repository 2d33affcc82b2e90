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

from imgmine_jax import (
    attribution,
    baselines,
    checkpoint,
    classifier,
    data,
    metrics,
    models,
    moving_mnist,
    recipes,
    robustness,
    run,
    train,
)

NB01 = run.NOTEBOOK_DIR / "01_cnn_classification.ipynb"


def _model(name="seed_cnn"):
    return models.build(name, models.classifier_config(name, 10, (28, 28, 1)))


def _saved(tmp: Path, name="resnet") -> Path:
    return checkpoint.save_model(tmp / "ckpt", _model(name), name,
                                 models.classifier_config(name, 10, (28, 28, 1)))


def _edit_meta(path: Path, **changes) -> Path:
    """Edit ``meta.json`` as a crafted checkpoint would, *with* matching checksums (so that the
    check under test is the one that catches it, not the checksum)."""
    meta = json.loads((path / "meta.json").read_text())
    for key, value in changes.items():
        if key in ("widths", "hidden", "dropout", "evil"):
            meta["config"][key] = value
        else:
            meta[key] = value
    (path / "meta.json").write_text(json.dumps(meta))
    checkpoint._write_manifest(path)
    return path


def _truncate_state(path: Path) -> Path:
    for f in (path / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
            f.write_bytes(b"\0" * 7)
    return path


def _flip_a_bit(path: Path) -> Path:
    f = max((f for f in (path / "state").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    f.write_bytes(bytes(raw))
    return path


def _tiny(n=64) -> data.ImageDataset:
    return data.load("mnist", "test").head(n)


def _arrays(n=64, **changes) -> dict:
    arrays = dict(_tiny(n).arrays())
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def _fit(n=100, batch_size=128, model=None, task=None, train_arrays=None, val=None, cfg=None, **kw):
    tiny = _tiny(n)
    return train.fit(model if model is not None else _model(), task if task is not None else train.Classification(10),
                     train_arrays if train_arrays is not None else tiny.arrays(), val,
                     cfg if cfg is not None else train.TrainConfig(epochs=1, batch_size=batch_size),
                     progress=False, log=None, **kw)


def _fit_ok(**kw):
    """fit on 64 valid examples, batch 32, with one argument changed."""
    return _fit(n=64, batch_size=32, **kw)


def _sweep(learning_rates=(1e-3,), seeds=(0,), train_arrays=None, val="default", **kw):
    make = lambda rngs: models.REGISTRY["seed_cnn"](**models.classifier_config("seed_cnn", 10, (28, 28, 1)), rngs=rngs)
    tr = train_arrays if train_arrays is not None else _arrays(64)
    return train.sweep(make, train.Classification(10), tr, _arrays(32) if val == "default" else val,
                       train.TrainConfig(epochs=1, batch_size=32), learning_rates, seeds, progress=False, log=None, **kw)


def _dataset(images=None, labels=None, classes=10):
    images = np.zeros((3, 28, 28, 1), np.uint8) if images is None else images
    labels = np.array([0, 1, 2], np.int32) if labels is None else labels
    return data.ImageDataset("toy", "train", images, labels, tuple(str(i) for i in range(classes)))


def _file(t: Path) -> Path:
    (t / "afile").write_text("not a directory")
    return t / "afile"


def _with_env(name, value, call):
    import os

    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return call()
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _resnet(**kw):
    return models.build("resnet", {**models.classifier_config("resnet", 10, (28, 28, 1)), **kw})


def _seed_cnn(**kw):
    return models.build("seed_cnn", {**models.classifier_config("seed_cnn", 10, (28, 28, 1)), **kw})


def _save_training(t, **kw):
    args = {"directory": t / "ckpts", "epoch": 1, "state": {"w": np.zeros(3, np.float32)}, "progress": {}, **kw}
    return checkpoint.save_training(**args)


F32 = np.float32
U8 = np.uint8
NAN = float("nan")
IMG = lambda *shape: np.zeros(shape, U8)
CE = checkpoint.CheckpointError
DE = data.DatasetError
CASES = [
    # --- data: names, splits, sizes, the dataset container
    ("unknown dataset", lambda t: data.load("not_a_dataset"), DE, r"unknown TFDS dataset 'not_a_dataset'"),
    ("unknown split", lambda t: data.load("mnist", "validation"), DE, r"no split 'validation'.*\['test', 'train'\]"),
    ("empty dataset name", lambda t: data.load(""), DE, r"dataset name must be a non-empty string; got ''"),
    ("dataset name with a path", lambda t: data.load("../../etc/mnist"), DE, r"dataset name must be .*got '\.\./\.\./etc/mnist'"),
    ("dataset name not a string", lambda t: data.load(5), DE, r"dataset name must be a non-empty string; got 5"),
    ("split not a string", lambda t: data.load("mnist", 3), DE, r"split must be a non-empty string .*got 3"),
    ("download not a bool", lambda t: data.load("mnist", download="yes"), DE, r"download must be True, False or None; got 'yes'"),
    ("validation split larger than the data", lambda t: data.train_val_split(data.load("mnist", "test"), 10_000),
     DE, r"val_size must be an integer in \[1, 9999\].*10000"),
    ("validation size True", lambda t: data.train_val_split(_tiny(), True), DE, r"val_size must be an integer .*got True"),
    ("validation size a fraction", lambda t: data.train_val_split(_tiny(), 0.1), DE, r"val_size must be an integer .*got 0\.1"),
    ("split of a dict", lambda t: data.train_val_split({"image": 1}, 10), DE, r"must be an ImageDataset .*got dict"),
    ("split seed a string", lambda t: data.train_val_split(_tiny(), 10, seed="a"), TypeError, r"seed\) must be an integer; got 'a'"),
    ("head of a negative size", lambda t: data.load("mnist", "test").head(-3), DE, r"head\(n\) expects a positive integer or None; got -3"),
    ("head of a fractional size", lambda t: _tiny().head(2.5), DE, r"positive integer or None; got 2\.5"),
    ("head of True", lambda t: _tiny().head(True), DE, r"positive integer or None; got True"),
    ("batch larger than the epoch", lambda t: data.epoch_batches(__import__("jax").random.key(0), 100, 128),
     DE, r"batch_size must be in \[1, 100\].*128"),
    ("epoch batches of size zero", lambda t: data.epoch_batches(__import__("jax").random.key(0), 100, 0), DE, r"got 0"),
    ("eval batches of size zero", lambda t: data.eval_batches(100, 0), DE, r"batch_size must be a positive integer; got 0"),
    ("label beyond the classes", lambda t: _dataset(labels=np.array([0, 1, 12], np.int32)), DE, r"must lie in \[0, 9\].*got label 12"),
    ("negative label", lambda t: _dataset(labels=np.array([0, -1, 2], np.int32)), DE, r"must lie in \[0, 9\].*got label -1"),
    ("float labels", lambda t: _dataset(labels=np.array([0.5, 1, 2], F32)), DE, r"integer class labels; got an array of dtype float32"),
    ("fewer labels than images", lambda t: _dataset(labels=np.array([0, 1], np.int32)), DE, r"expected 3 labels; got shape \(2,\)"),
    ("float images in a dataset", lambda t: _dataset(images=np.zeros((3, 28, 28, 1), F32)), DE, r"uint8 \(N, H, W, C\); got float32"),
    ("no class names", lambda t: _dataset(classes=0), DE, r"class_names must be a non-empty tuple.*got \(\)"),
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
    # --- model configurations
    ("unknown model name", lambda t: models.classifier_config("vgg", 10, (28, 28, 1)),
     ValueError, r"unknown model 'vgg'; expected one of \[.*'resnet', 'seed_cnn'\]"),
    ("non-square images", lambda t: models.classifier_config("resnet", 10, (28, 32, 1)),
     ValueError, r"expects square images; got image shape \(28, 32, 1\)"),
    ("zero classes", lambda t: models.classifier_config("resnet", 0, (28, 28, 1)), ValueError, r"num_classes\) must be an integer in .*got 0"),
    ("fractional class count", lambda t: models.classifier_config("resnet", 9.5, (28, 28, 1)), TypeError, r"num_classes\) must be an integer.*got 9\.5"),
    ("image shape without channels", lambda t: models.classifier_config("resnet", 10, (28, 28)), TypeError, r"image_shape\) must be a tuple \(H, W, C\).*got \(28, 28\)"),
    ("image shape with zero channels", lambda t: models.classifier_config("resnet", 10, (28, 28, 0)), ValueError, r"image_shape\[2\]\) must be an integer >= 1; got 0"),
    ("dropout above one", lambda t: _resnet(dropout=1.5), ValueError, r"ResNet\(dropout\) must be a finite number in \[0, 1\); got 1\.5"),
    ("negative dropout", lambda t: _resnet(dropout=-0.5), ValueError, r"ResNet\(dropout\) must be .*got -0\.5"),
    ("NaN dropout", lambda t: _resnet(dropout=NAN), ValueError, r"ResNet\(dropout\) must be .*got nan"),
    ("empty widths", lambda t: _resnet(widths=[]), ValueError, r"ResNet\(widths\) must be a non-empty list .*got \[\]"),
    ("zero width", lambda t: _resnet(widths=[16, 0]), ValueError, r"ResNet\(widths\[1\]\) must be an integer in .*got 0"),
    ("zero residual blocks", lambda t: _resnet(blocks=0), ValueError, r"ResNet\(blocks\) must be an integer in .*got 0"),
    ("zero classes at build", lambda t: _resnet(num_classes=0), ValueError, r"ResNet\(num_classes\) must be .*got 0"),
    ("zero hidden units", lambda t: _seed_cnn(hidden=0), ValueError, r"SeedCNN\(hidden\) must be an integer in .*got 0"),
    ("a million hidden units", lambda t: _seed_cnn(hidden=10**6), ValueError, r"SeedCNN\(hidden\) must be .*got 1000000"),
    ("images too small for SeedCNN", lambda t: _seed_cnn(image_size=4), ValueError, r"SeedCNN\(image_size\) must be .*got 4"),
    ("misspelt config key", lambda t: _seed_cnn(hiden=64), TypeError, r"got arguments \['hiden'\] that SeedCNN does not take"),
    ("build seed a string", lambda t: models.build("seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1)), seed="0"),
     TypeError, r"build\(seed\) must be an integer >= 0; got '0'"),
    ("build config a list", lambda t: models.build("seed_cnn", [1]), TypeError, r"config\) must be a dict .*got \[1\]"),
    ("unknown recurrent cell", lambda t: __import__("imgmine_jax.models.rnn", fromlist=["x"])
     .RowClassifier(cell="rnn", rngs=__import__("flax").nnx.Rngs(0)), ValueError, r"unknown recurrent cell 'rnn'; expected one of"),
    ("zero recurrent layers", lambda t: __import__("imgmine_jax.models.rnn", fromlist=["x"])
     .RowClassifier(num_layers=0, rngs=__import__("flax").nnx.Rngs(0)), ValueError, r"RowClassifier\(num_layers\) must be .*got 0"),
    # --- the task and the training configuration
    ("task with zero classes", lambda t: train.Classification(0), ValueError, r"Classification\(num_classes\) must be an integer >= 1; got 0"),
    ("task with a fractional class count", lambda t: train.Classification(2.5), TypeError, r"num_classes\) must be an integer >= 1; got 2\.5"),
    ("label smoothing of one", lambda t: train.Classification(10, label_smoothing=1.0), ValueError, r"label_smoothing\) must be .*got 1\.0"),
    ("negative augmentation shift", lambda t: train.Classification(10, augment_shift=-1), ValueError, r"augment_shift\) must be .*got -1"),
    ("augmentation flip a string", lambda t: train.Classification(10, augment_flip="yes"), TypeError, r"augment_flip\) must be True or False; got 'yes'"),
    ("negative epochs", lambda t: train.TrainConfig(epochs=-1), ValueError, r"epochs must be an integer >= 1; got -1"),
    ("NaN learning rate", lambda t: train.TrainConfig(learning_rate=NAN), ValueError, r"learning_rate must be a number > 0; got nan"),
    ("misspelt schedule", lambda t: train.TrainConfig(schedule="cosin"), ValueError, r"schedule must be one of .*got 'cosin'"),
    ("batch size zero", lambda t: train.TrainConfig(batch_size=0), ValueError, r"batch_size must be an integer >= 1; got 0"),
    # --- fit: everything is checked before the first step
    ("batch size larger than the dataset", lambda t: _fit(n=100, batch_size=128),
     ValueError, r"batch_size=128 is larger than the training set \(100 examples\)"),
    ("checkpoint interval of zero", lambda t: _fit(n=64, batch_size=32, checkpoint_dir=t, checkpoint_every=0),
     ValueError, r"checkpoint_every must be an integer >= 1; got 0"),
    ("fractional checkpoint interval", lambda t: _fit_ok(checkpoint_every=1.5), TypeError, r"checkpoint_every must be an integer >= 1; got 1\.5"),
    ("training label beyond the classes", lambda t: _fit_ok(train_arrays=_arrays(label=np.full(64, 12, np.int32))),
     ValueError, r"fit\(train\)\['label'\] must lie in \[0, 9\].*got label 12"),
    ("negative training label", lambda t: _fit_ok(train_arrays=_arrays(label=np.full(64, -1, np.int32))),
     ValueError, r"\['label'\] must lie in \[0, 9\].*got label -1"),
    ("float training labels", lambda t: _fit_ok(train_arrays=_arrays(label=np.zeros(64, F32))),
     TypeError, r"\['label'\] must be an array of integer class labels; got an array of dtype float32"),
    ("fewer training labels than images", lambda t: _fit_ok(train_arrays=_arrays(label=np.zeros(63, np.int32))),
     ValueError, r"one length; got lengths \{'image': 64, 'label': 63\}"),
    ("images already scaled to [0, 1]", lambda t: _fit_ok(train_arrays=_arrays(image=np.zeros((64, 28, 28, 1), F32))),
     TypeError, r"\['image'\] must be a uint8 array .*got an array of dtype float32"),
    ("images of another size than the model's", lambda t: _fit_ok(train_arrays=_arrays(image=IMG(64, 32, 32, 1))),
     ValueError, r"\(H, W, C\) = \(28, 28, 1\); got \(32, 32, 1\)"),
    ("class count of model and task differ", lambda t: _fit_ok(model=_seed_cnn(num_classes=5)),
     ValueError, r"num_classes=10 but the model outputs 5 logits"),
    ("empty training dict", lambda t: _fit_ok(train_arrays={}), ValueError, r"fit\(train\) must be a non-empty dict .*got \{\}"),
    ("training data without labels", lambda t: _fit_ok(train_arrays=_arrays(label=None)), ValueError, r"missing \['label'\]"),
    ("training data as a list", lambda t: _fit_ok(train_arrays=[1, 2]), TypeError, r"fit\(train\) must be a dict .*got \[1, 2\]"),
    ("validation images of another size", lambda t: _fit_ok(val=_arrays(image=IMG(64, 14, 14, 1))),
     ValueError, r"fit\(val\)\['image'\].*got \(14, 14, 1\)"),
    ("validation label beyond the classes", lambda t: _fit_ok(val=_arrays(label=np.full(64, 10, np.int32))),
     ValueError, r"fit\(val\)\['label'\] must lie in \[0, 9\].*got label 10"),
    ("misspelt monitor", lambda t: _fit_ok(monitor="val_acc"), ValueError, r"fit\(monitor\) must be a history column.*got 'val_acc'"),
    ("checkpoint_dir that is a file", lambda t: _fit_ok(checkpoint_dir=_file(t)), ValueError, r"fit\(checkpoint_dir\) must be a directory; got '.*afile', which is a file"),
    ("checkpoint_dir under a file", lambda t: _fit_ok(checkpoint_dir=_file(t) / "sub"), ValueError, r"got '.*afile/sub', which lies under"),
    ("configuration as a dict", lambda t: _fit_ok(cfg={"epochs": 1}), TypeError, r"fit\(cfg\) must be a TrainConfig; got \{'epochs': 1\}"),
    ("model given by name", lambda t: _fit_ok(model="resnet"), TypeError, r"fit\(model\) must be a Flax NNX module .*got 'resnet'"),
    ("task given by name", lambda t: _fit_ok(task="classification"), TypeError, r"fit\(task\) must be a task .*got 'classification'"),
    ("epoch callback not callable", lambda t: _fit_ok(on_epoch_end=3), TypeError, r"fit\(on_epoch_end\) must be a function or None; got 3"),
    # --- sweep
    ("NaN learning rate in a sweep member", lambda t: _sweep(learning_rates=[1e-3, NAN]), ValueError, r"sweep\(learning_rates\[1\]\) must be .*got nan"),
    ("negative sweep learning rate", lambda t: _sweep(learning_rates=[-1e-3]), ValueError, r"learning_rates\[0\]\) must be .*got -0\.001"),
    ("sweep learning rates as a string", lambda t: _sweep(learning_rates="0.1"), TypeError, r"sweep\(learning_rates\) must be a non-empty list; got '0\.1'"),
    ("sweep without seeds", lambda t: _sweep(seeds=[]), ValueError, r"sweep\(seeds\) must be a non-empty list; got \[\]"),
    ("negative sweep seed", lambda t: _sweep(seeds=[-1]), ValueError, r"sweep\(seeds\[0\]\) must be an integer in .*got -1"),
    ("fractional sweep seed", lambda t: _sweep(seeds=[1.5]), TypeError, r"sweep\(seeds\[0\]\) must be an integer .*got 1\.5"),
    ("sweep label beyond the classes", lambda t: _sweep(train_arrays=_arrays(label=np.full(64, 11, np.int32))),
     ValueError, r"sweep\(train\)\['label'\] must lie in \[0, 9\].*got label 11"),
    ("sweep without validation data", lambda t: _sweep(val=None), TypeError, r"sweep\(val\) must be a dict .*got None"),
    ("sweep checkpoint_dir that is a file", lambda t: _sweep(checkpoint_dir=_file(t)), ValueError, r"which is a file"),
    # --- predict (uint8 images as stored)
    ("float images to predict", lambda t: train.predict(_model(), np.zeros((2, 28, 28, 1), F32)),
     ValueError, r"predict expects uint8 images of shape \(N, H, W, C\); got float32"),
    ("predict without channel axis", lambda t: train.predict(_model(), np.zeros((2, 28, 28), np.uint8)),
     ValueError, r"uint8 images of shape \(N, H, W, C\); got uint8 \(2, 28, 28\)"),
    ("predict on images of another size", lambda t: train.predict(_model(), np.zeros((2, 32, 32, 1), np.uint8)),
     ValueError, r"\(H, W, C\) = \(28, 28, 1\); got \(32, 32, 1\)"),
    ("predict on no images", lambda t: train.predict(_model(), IMG(0, 28, 28, 1)), ValueError, r"non-empty array; got an array .*shape \(0, 28, 28, 1\)"),
    ("predict batch size zero", lambda t: train.predict(_model(), IMG(2, 28, 28, 1), batch_size=0), ValueError, r"predict\(batch_size\) must be .*got 0"),
    ("predict with a model name", lambda t: train.predict("resnet", IMG(2, 28, 28, 1)), TypeError, r"predict\(model\) must be a Flax NNX module.*got 'resnet'"),
    ("test-time flip a string", lambda t: train.predict_tta(_model(), IMG(2, 28, 28, 1), flip="no"), TypeError, r"flip\) must be True or False; got 'no'"),
    ("negative test-time shift", lambda t: train.predict_tta(_model(), IMG(2, 28, 28, 1), shift=-1), ValueError, r"shift must be a non-negative integer .*got -1"),
    # --- metrics
    ("accuracy of arrays of two shapes", lambda t: metrics.accuracy([1, 2, 3], [1, 2]), ValueError, r"labels \(3,\) and predictions \(2,\)"),
    ("accuracy of nothing", lambda t: metrics.accuracy([], []), ValueError, r"accuracy\(labels\) must be a non-empty array; got \[\]"),
    ("confusion matrix label beyond the classes", lambda t: metrics.confusion_matrix([0, 10], [0, 1], 10), ValueError, r"must lie in \[0, 9\].*got label 10"),
    ("confusion matrix of zero classes", lambda t: metrics.confusion_matrix([0], [0], 0), ValueError, r"num_classes\) must be an integer >= 1; got 0"),
    ("confusion matrix of float labels", lambda t: metrics.confusion_matrix([0.5, 1.0], [0, 1], 2), TypeError, r"confusion_matrix\(labels\) must be an array of integer class labels; got \[0\.5, 1\.0\]"),
    ("confusion matrix of predictions of another length", lambda t: metrics.confusion_matrix([0, 1], [0], 2), ValueError, r"one label per example \(2\); got 1"),
    ("report of a non-square matrix", lambda t: metrics.per_class_report(np.ones((2, 3))), ValueError, r"must be a square matrix .*shape \(2, 3\)"),
    ("report of negative counts", lambda t: metrics.per_class_report(-np.eye(2)), ValueError, r"non-negative counts; got an array .*\(2, 2\)"),
    ("report with too few class names", lambda t: metrics.per_class_markdown(np.eye(3), ["a", "b"]), ValueError, r"3 class names .*got \['a', 'b'\]"),
    ("purity of nothing", lambda t: metrics.purity([], []), ValueError, r"purity\(labels\) must be a non-empty array; got \[\]"),
    ("feature statistics with NaN", lambda t: metrics.feature_statistics(np.array([[0.0, NAN], [1.0, 2.0]])), ValueError, r"must be finite; got 1 non-finite values \(e\.g\. nan\)"),
    ("FID on NaN features", lambda t: metrics.fid_from_features(np.full((4, 2), NAN), np.ones((4, 2))), ValueError, r"fid_from_features\(a\) must be finite.*nan"),
    ("FID of features of two dimensions", lambda t: metrics.fid_from_features(np.ones((4, 2)), np.ones((4, 3))), ValueError, r"one dimension D; got \(4, 2\) and \(4, 3\)"),
    ("Frechet distance with an infinite mean", lambda t: metrics.frechet_distance([np.inf], [[1.0]], [0.0], [[1.0]]), ValueError, r"mu1\) must be finite.*inf"),
    ("Inception Score over zero splits", lambda t: metrics.inception_score(np.full((4, 2), 0.5), splits=0), ValueError, r"splits\) must be an integer >= 1; got 0"),
    ("Inception Score of NaN probabilities", lambda t: metrics.inception_score(np.full((4, 2), NAN)), ValueError, r"probs\) must be finite.*nan"),
    ("SSIM with an even window", lambda t: metrics.ssim(np.zeros((1, 16, 16)), np.zeros((1, 16, 16)), window=4), ValueError, r"window\) must be an odd integer >= 1; got 4"),
    ("SSIM with a zero data range", lambda t: metrics.ssim(np.zeros((1, 16, 16)), np.zeros((1, 16, 16)), data_range=0), ValueError, r"data_range\) must be .*got 0\.0"),
    ("temperature fit with a label beyond the classes", lambda t: metrics.fit_temperature(np.zeros((2, 3)), [0, 7]), ValueError, r"must lie in \[0, 2\].*got label 7"),
    ("temperature bounds reversed", lambda t: metrics.fit_temperature(np.zeros((2, 3)), [0, 1], bounds=(1.0, 0.5)), ValueError, r"bounds\[1\]\) must be .*got 0\.5"),
    # --- Moving MNIST
    ("no sequences", lambda t: moving_mnist.generate(_tiny(), 0), ValueError, r"num_sequences must be a positive integer; got 0"),
    ("every frame observed", lambda t: moving_mnist.generate(_tiny(), 2, num_frames=20, num_observed=20), ValueError, r"num_observed\) must be an integer in \[1, 19\]; got 20"),
    ("digits that do not move", lambda t: moving_mnist.generate(_tiny(), 2, step_length=0), ValueError, r"step_length\) must be .*got 0\.0"),
    ("Moving MNIST from a name", lambda t: moving_mnist.generate("mnist", 2), TypeError, r"generate\(source\) must be an ImageDataset .*got 'mnist'"),
    ("negative Moving MNIST seed", lambda t: moving_mnist.generate(_tiny(), 2, seed=-1), ValueError, r"generate\(seed\) must be an integer >= 0; got -1"),
    ("canvas smaller than a digit", lambda t: moving_mnist.generate(_tiny(), 2, canvas=20), ValueError, r"canvas=20 must be at least the digit size"),
    ("trajectories of one frame", lambda t: moving_mnist.trajectories(np.random.default_rng(0), 2, num_frames=1), ValueError, r"num_frames\) must be an integer >= 2; got 1"),
    ("trajectories from a seed", lambda t: moving_mnist.trajectories(0, 2), TypeError, r"trajectories\(rng\) must be a numpy Generator .*got 0"),
    ("head of negative sequences", lambda t: moving_mnist.generate(_tiny(), 2).head(-1), ValueError, r"head\(n\) must be an integer >= 1; got -1"),
    # --- notebook runner and notebook parameters
    ("unknown profile", lambda t: run.run_notebook(NB01, t, "fast"),
     ValueError, r"profile must be one of \('quick', 'full'\); got 'fast'"),
    ("unknown notebook", lambda t: run.find_notebooks(["07"]),
     SystemExit, r"notebook '07' matches 0 of .*expected exactly one"),
    ("missing notebook file", lambda t: run.find_notebooks([str(t / "nope.ipynb")]), SystemExit, r"notebook '.*nope\.ipynb' does not exist"),
    ("notebook name not a string", lambda t: run.find_notebooks([5]), SystemExit, r"notebook names must be non-empty strings; got 5"),
    ("misspelt notebook parameter", lambda t: run.run_notebook(NB01, t, "quick", {"epoch": 3}),
     ValueError, r"01_cnn_classification has no parameter 'epoch'; expected one of .*'epochs'"),
    ("string where a number is expected", lambda t: run.run_notebook(NB01, t, "quick", {"epochs": "3"}),
     ValueError, r"parameter epochs='3' of 01_cnn_classification must be a int like its default 10; got a str"),
    ("float where an integer is expected", lambda t: run.check_parameters(NB01, {"batch_size": 32.5}),
     ValueError, r"batch_size=32.5 .* must be a int"),
    ("negative epochs for a notebook", lambda t: run.check_parameters(NB01, {"epochs": -5}), ValueError, r"parameter epochs must be an integer >= 1; got -5"),
    ("zero batch size for a notebook", lambda t: run.check_parameters(NB01, {"batch_size": 0}), ValueError, r"parameter batch_size must be an integer >= 1; got 0"),
    ("notebook dropout above one", lambda t: run.check_parameters(NB01, {"dropout": 1.5}), ValueError, r"parameter dropout must be .*got 1\.5"),
    ("negative notebook learning rate", lambda t: run.check_parameters(NB01, {"learning_rate": -0.1}), ValueError, r"parameter learning_rate must be a number >= 0 .*got -0\.1"),
    ("NaN notebook parameter", lambda t: run.check_parameters(NB01, {"weight_decay": NAN}), ValueError, r"parameter weight_decay must be a finite number; got nan"),
    ("malformed -p option", lambda t: run.main(["-p", "epochs3", "01"]),
     SystemExit, r"-p expects name=value; got 'epochs3'"),
    ("zero timeout", lambda t: run.main(["--timeout", "0", "01"]), SystemExit, r"--timeout must be a positive number of seconds; got 0"),
    # --- checkpoints
    ("missing checkpoint", lambda t: checkpoint.load_model(t / "nothing-here"),
     CE, r"no checkpoint at .*nothing-here"),
    ("partial checkpoint", lambda t: checkpoint.load_model(shutil.rmtree(_saved(t) / "state") or t / "ckpt"),
     CE, r"incomplete: expected meta.json and state/"),
    ("corrupt meta.json", lambda t: checkpoint.load_model(
        (_saved(t) / "meta.json").write_text("{not json") and t / "ckpt"),
     CE, r"corrupt meta.json"),
    ("truncated weights", lambda t: checkpoint.load_model(_truncate_state(_saved(t))),
     CE, r"ckpt is damaged: file state/\S+ has 7 bytes, expected \d+"),
    ("a flipped bit in the weights", lambda t: checkpoint.load_model(_flip_a_bit(_saved(t))),
     CE, r"ckpt is damaged: file state/\S+ has SHA-256 [0-9a-f]+\.\.\., expected"),
    ("checksums removed", lambda t: checkpoint.load_model((_saved(t) / "checksums.json").unlink() or t / "ckpt"),
     CE, r"ckpt is damaged: its checksums.json is missing"),
    ("checkpoint of another architecture", lambda t: checkpoint.load_model(_saved(t), expect_architecture="seed_cnn"),
     CE, r"holds a 'resnet' model; expected 'seed_cnn'"),
    ("checkpoint of another configuration", lambda t: checkpoint.load_model(_edit_meta(_saved(t), widths=[8, 16, 32])),
     CE, r"does not match architecture 'resnet' with config .*\[8, 16, 32\]"),
    ("crafted meta.json asking for a huge layer", lambda t: checkpoint.load_model(_edit_meta(_saved(t, "seed_cnn"), hidden=16000)),
     CE, r"does not match architecture 'seed_cnn' with config .*'hidden': 16000"),
    ("crafted meta.json beyond the size bounds", lambda t: checkpoint.load_model(_edit_meta(_saved(t, "seed_cnn"), hidden=60000)),
     CE, r"not valid for 'seed_cnn': SeedCNN\(hidden\) must be an integer in \[1, 16384\]; got 60000"),
    ("crafted meta.json with a bad dropout", lambda t: checkpoint.load_model(_edit_meta(_saved(t), dropout=1.5)),
     CE, r"ResNet\(dropout\) must be .*got 1\.5"),
    ("crafted meta.json with an unknown argument", lambda t: checkpoint.load_model(_edit_meta(_saved(t), evil="x")),
     CE, r"has arguments \['evil'\] that 'resnet' does not take"),
    ("checkpoint naming code to run", lambda t: checkpoint.load_model(_edit_meta(_saved(t), architecture="os.system")),
     CE, r"unknown architecture 'os.system'; expected one of"),
    ("loading as an unknown architecture", lambda t: checkpoint.load_model(t, expect_architecture="vgg"), CE, r"expect_architecture\) must be one of .*got 'vgg'"),
    ("saving an unregistered architecture", lambda t: checkpoint.save_model(t / "x", _model(), "mlp", {}),
     CE, r"unknown architecture 'mlp'; expected one of"),
    ("saving over a regular file", lambda t: checkpoint.save_model(_file(t), _model(), "seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1))),
     CE, r"save_model\(path\) must be a checkpoint directory or a new path; got '.*afile', which is a file"),
    ("saving under a regular file", lambda t: checkpoint.save_model(_file(t) / "m", _model(), "seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1))),
     ValueError, r"got '.*afile', which is a file"),
    ("saving with a config of another model", lambda t: checkpoint.save_model(t / "m", _model(), "seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1), hidden=64)),
     CE, r"the model is not a 'seed_cnn' built with config .*'hidden': 64"),
    ("saving with info not a dict", lambda t: checkpoint.save_model(t / "m", _model(), "seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1)), info="note"),
     TypeError, r"save_model\(info\) must be a dict or None; got 'note'"),
    ("checkpoint path a number", lambda t: checkpoint.save_model(5, _model(), "seed_cnn", {}), TypeError, r"save_model\(path\) must be a path .*got 5"),
    ("training checkpoint of a negative epoch", lambda t: _save_training(t, epoch=-1), ValueError, r"save_training\(epoch\) must be an integer in \[0, 9999\]; got -1"),
    ("keeping no training checkpoints", lambda t: _save_training(t, keep=0), ValueError, r"save_training\(keep\) must be an integer >= 1; got 0"),
    ("training checkpoints in a file", lambda t: _save_training(t, directory=_file(t)), ValueError, r"checkpoint_dir must be a directory; got '.*afile', which is a file"),
    ("latest training checkpoint in a file", lambda t: checkpoint.latest_training(_file(t)), ValueError, r"checkpoint_dir must be a directory; got '.*afile', which is a file"),
    ("classifier of a dataset name with a path", lambda t: classifier.checkpoint_path("../../etc"), ValueError, r"dataset must be a plain name .*got '\.\./\.\./etc'"),
    ("loading a classifier from outside artifacts", lambda t: classifier.load_or_train("../secrets", log=None), ValueError, r"got '\.\./secrets'"),
    ("unknown classifier to load", lambda t: classifier.train_classifier("mnist", "vgg"),
     ValueError, r"model must be one of \['resnet', 'seed_cnn'\]; got 'vgg'"),
    ("unknown classifier path", lambda t: classifier.checkpoint_path("mnist", "vgg"), ValueError, r"model must be one of \['resnet', 'seed_cnn'\]; got 'vgg'"),
    # --- notebook 05: baselines, learning curve, ablations, the articles' CNN
    ("unknown feature kind", lambda t: baselines.features(IMG(2, 28, 28, 1), "sift"), ValueError, r"features\(kind\) must be one of \['pixels', 'hog'\]; got 'sift'"),
    ("features of float images", lambda t: baselines.features(np.zeros((2, 28, 28, 1), F32), "hog"), TypeError, r"features\(images\) must be .*uint8.*float32"),
    ("unknown traditional model", lambda t: baselines.traditional_model("svm"), ValueError, r"traditional model must be one of \['logistic', 'linear_svm', 'knn', 'random_forest'\]; got 'svm'"),
    ("unknown model in a comparison", lambda t: baselines.compare(_tiny(), _tiny(), models=["logistic", "xgboost"], log=None),
     ValueError, r"compare\(models\)\[1\] must be one of .*got 'xgboost'"),
    ("comparison models as one string", lambda t: baselines.compare(_tiny(), _tiny(), models="knn", log=None), TypeError, r"compare\(models\) must be a non-empty list .*got 'knn'"),
    ("unknown feature kind in a comparison", lambda t: baselines.compare(_tiny(), _tiny(), feature_kinds=["edges"], log=None),
     ValueError, r"compare\(feature_kinds\)\[0\] must be one of \['pixels', 'hog'\]; got 'edges'"),
    ("comparison training size of zero", lambda t: baselines.compare(_tiny(), _tiny(), train_size={"knn": 0}, log=None),
     ValueError, r"compare\(train_size\['knn'\]\) must be an integer >= 10; got 0"),
    ("comparison on arrays", lambda t: baselines.compare(_arrays(), _tiny(), log=None), TypeError, r"compare\(train_set, test_set\) must be two ImageDatasets"),
    ("subset larger than the data", lambda t: baselines.subset(_tiny(), 65), ValueError, r"subset\(size\) must be an integer in \[1, 64\]; got 65"),
    ("learning-curve size above the training split", lambda t: baselines.learning_curve("mnist", [500, 60_000], log=None),
     ValueError, r"learning_curve\(sizes\)\[1\] must be an integer in \[32, 55000\]; got 60000"),
    ("learning-curve size below one batch", lambda t: baselines.learning_curve("mnist", [0, 500], log=None),
     ValueError, r"learning_curve\(sizes\)\[0\] must be an integer in \[32, 55000\]; got 0"),
    ("learning-curve sizes unsorted", lambda t: baselines.learning_curve("mnist", [5000, 500], log=None),
     ValueError, r"learning_curve\(sizes\) must be strictly increasing \(smallest first\); got \[5000, 500\]"),
    ("learning-curve sizes empty", lambda t: baselines.learning_curve("mnist", [], log=None), TypeError, r"learning_curve\(sizes\) must be a non-empty list .*got \[\]"),
    ("learning-curve fractional size", lambda t: baselines.learning_curve("mnist", [500.5], log=None), TypeError, r"learning_curve\(sizes\)\[0\] must be an integer .*got 500\.5"),
    ("learning curve of an unknown model", lambda t: baselines.learning_curve("mnist", [500], traditional="svm", log=None),
     ValueError, r"learning_curve\(traditional\) must be one of .*got 'svm'"),
    ("learning curve with zero steps", lambda t: baselines.learning_curve("mnist", [500], min_steps=0, log=None), ValueError, r"min_steps\) must be an integer >= 1; got 0"),
    ("crossing point of rows without a kind", lambda t: baselines.crossing_point([{"size": 500, "test_accuracy": 0.9}]),
     TypeError, r"crossing_point\(rows\[0\]\) must be a dict with 'size', 'kind'"),
    ("unknown ablation", lambda t: recipes.ablation("no_dropout"), ValueError, r"unknown ablation 'no_dropout'; expected one of \['full', 'no_batch_norm'"),
    ("unknown ablation arm", lambda t: baselines.ablate("mnist", ["full", "no_bn"], log=None), ValueError, r"ablate\(arms\)\[1\] must be one of .*got 'no_bn'"),
    ("ablation without seeds", lambda t: baselines.ablate("mnist", ["full"], seeds=[], log=None), TypeError, r"ablate\(seeds\) must be a non-empty list .*got \[\]"),
    ("ablation on more images than the split", lambda t: baselines.ablate("mnist", ["full"], train_size=60_000, log=None),
     ValueError, r"ablate\(train_size\) must be an integer in \[32, 55000\]; got 60000"),
    ("ablation of zero epochs", lambda t: recipes.ablation("full", epochs=0), ValueError, r"ablation\(epochs\) must be an integer >= 1 or None; got 0"),
    ("ResNet batch_norm a string", lambda t: _resnet(batch_norm="no"), TypeError, r"ResNet\(batch_norm\) must be True or False; got 'no'"),
    ("ResNet residual a number", lambda t: _resnet(residual=0), TypeError, r"ResNet\(residual\) must be True or False; got 0"),
    ("article CNN on images too small", lambda t: models.ArticleCNN(image_size=8, rngs=__import__("flax").nnx.Rngs(0)),
     ValueError, r"ArticleCNN\(image_size\) of 8 pixels is too small for 3 convolutions"),
    ("softmax-twice floor of one class", lambda t: baselines.softmax_twice_floor(1), ValueError, r"num_classes\) must be an integer >= 2; got 1"),
    ("double-softmax test set larger than the split", lambda t: baselines.double_softmax_cost("mnist", test_size=20_000, log=None),
     ValueError, r"double_softmax_cost\(test_size\) must be an integer in \[1, 10000\]; got 20000"),
    # --- attributions and attacks (notebook 05)
    ("unknown attack", lambda t: robustness.accuracy_under_attack(_model(), IMG(2, 28, 28, 1), [0, 1], attack="cw", epsilons=[0.1]),
     ValueError, r"accuracy_under_attack\(attack\) must be one of \['fgsm', 'pgd'\]; got 'cw'"),
    ("epsilon above one", lambda t: robustness.fgsm(_model(), IMG(2, 28, 28, 1), [0, 1], 8), ValueError, r"fgsm\(epsilon\) must be a finite number in \[0, 1\]; got 8"),
    ("negative epsilon", lambda t: robustness.pgd(_model(), IMG(2, 28, 28, 1), [0, 1], -0.1), ValueError, r"pgd\(epsilon\) must be .*\[0, 1\]; got -0\.1"),
    ("epsilon a string", lambda t: robustness.pgd(_model(), IMG(2, 28, 28, 1), [0, 1], "0.1"), TypeError, r"pgd\(epsilon\) must be a finite number in \[0, 1\]; got '0\.1'"),
    ("NaN epsilon in a list", lambda t: robustness.accuracy_under_attack(_model(), IMG(2, 28, 28, 1), [0, 1], attack="fgsm", epsilons=[0.1, NAN]),
     ValueError, r"epsilons\[1\]\) must be a finite number in \[0, 1\]; got nan"),
    ("no epsilons", lambda t: robustness.accuracy_under_attack(_model(), IMG(2, 28, 28, 1), [0, 1], attack="pgd", epsilons=[]),
     ValueError, r"epsilons\) must be a non-empty list of numbers in \[0, 1\]; got \[\]"),
    ("zero PGD steps", lambda t: robustness.pgd(_model(), IMG(2, 28, 28, 1), [0, 1], 0.1, steps=0), ValueError, r"pgd\(steps\) must be an integer >= 1; got 0"),
    ("PGD key a string", lambda t: robustness.pgd(_model(), IMG(2, 28, 28, 1), [0, 1], 0.1, key="a"), TypeError, r"pgd\(key\) must be a key from jax\.random\.key.*got 'a'"),
    ("fewer labels than attacked images", lambda t: robustness.fgsm(_model(), IMG(3, 28, 28, 1), [0, 1], 0.1), ValueError, r"fgsm\(labels\) must hold one label per example \(3\); got 2 labels"),
    ("attacked label beyond the classes", lambda t: robustness.fgsm(_model(), IMG(2, 28, 28, 1), [0, 10], 0.1), ValueError, r"fgsm\(labels\) must lie in \[0, 9\].*got label 10"),
    ("normalised images to an attack", lambda t: robustness.fgsm(_model(), np.full((2, 28, 28, 1), -1.0, F32), [0, 1], 0.1),
     ValueError, r"uint8 pixels \(0\.\.255\) or float pixels in \[0, 1\]; got float values in \[-1, -1\]"),
    ("attacked images of another size", lambda t: robustness.pgd(_model(), IMG(2, 32, 32, 1), [0, 1], 0.1), ValueError, r"\(H, W, C\) = \(28, 28, 1\); got \(32, 32, 1\)"),
    ("unknown corruption", lambda t: robustness.corrupt(IMG(2, 28, 28, 1), "fog", 1, key=0), ValueError, r"corrupt\(kind\) must be one of \['gaussian_noise', 'blur', 'rotation', 'contrast'\]; got 'fog'"),
    ("corruption severity six", lambda t: robustness.corrupt(IMG(2, 28, 28, 1), "blur", 6, key=0), ValueError, r"corrupt\(severity\) must be an integer in \[1, 5\]; got 6"),
    ("corruption severity zero in a list", lambda t: robustness.accuracy_under_corruptions(_model(), IMG(2, 28, 28, 1), [0, 1], severities=[0, 1], key=0),
     ValueError, r"severities\[0\]\) must be an integer in \[1, 5\]; got 0"),
    ("misspelt corruption in a list", lambda t: robustness.accuracy_under_corruptions(_model(), IMG(2, 28, 28, 1), [0, 1], kinds=["blurr"], key=0),
     ValueError, r"kinds\[0\]\) must be one of .*got 'blurr'"),
    ("rotation angles of another count", lambda t: robustness.rotate(IMG(3, 28, 28, 1), [0.0, 90.0]), ValueError, r"one angle or one per image \(3\); got 2"),
    ("zero integrated-gradient steps", lambda t: attribution.integrated_gradients(_model(), IMG(2, 28, 28, 1), [0, 1], steps=0),
     ValueError, r"integrated_gradients\(steps\) must be an integer >= 1; got 0"),
    ("baseline of another size", lambda t: attribution.integrated_gradients(_model(), IMG(2, 28, 28, 1), [0, 1], baseline=IMG(14, 14, 1)),
     ValueError, r"baseline\) must have images of shape \(H, W, C\) = \(28, 28, 1\); got \(14, 14, 1\)"),
    ("occlusion patch larger than the image", lambda t: attribution.occlusion(_model(), IMG(2, 28, 28, 1), [0, 1], patch=30),
     ValueError, r"occlusion\(patch\) must be an integer in \[1, 28\]; got 30"),
    ("occlusion stride beyond the patch", lambda t: attribution.occlusion(_model(), IMG(2, 28, 28, 1), [0, 1], patch=4, stride=5),
     ValueError, r"occlusion\(stride\) must be an integer in \[1, 4\]; got 5"),
    ("saliency with labels of another count", lambda t: attribution.saliency(_model(), IMG(2, 28, 28, 1), [0]), ValueError, r"saliency\(labels\) must hold one label per example \(2\); got 1"),
    ("deletion maps of another shape", lambda t: attribution.deletion_curve(_model(), IMG(2, 28, 28, 1), [0, 1], np.zeros((2, 14, 14)), key=0),
     ValueError, r"one \(H, W\) map per image, shape \(2, 28, 28\); got \(2, 14, 14\)"),
    ("deletion fraction above one", lambda t: attribution.deletion_curve(_model(), IMG(2, 28, 28, 1), [0, 1], np.zeros((2, 28, 28)), fractions=[0.5, 2], key=0),
     ValueError, r"fractions\[1\]\) must be a finite number in \[0, 1\]; got 2"),
    # --- environment
    ("artifacts directory that is a file", lambda t: _with_env("IMGMINE_ARTIFACTS", str(_file(t)), checkpoint.artifacts_dir),
     ValueError, r"\$IMGMINE_ARTIFACTS .* must be a directory; got '.*afile', which is a file"),
    ("artifacts directory under a file", lambda t: _with_env("IMGMINE_ARTIFACTS", str(_file(t) / "a"), lambda: classifier.checkpoint_path("mnist")),
     ValueError, r"\$IMGMINE_ARTIFACTS .*got '.*afile/a', which lies under"),
]


def test_the_table_is_large_enough():
    assert len(CASES) >= 100
    assert len({c[0] for c in CASES}) == len(CASES), "two cases share a name"


@pytest.mark.parametrize("call,error,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(call, error, match, tmp_path):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_misspelt_parameter_leaves_results_untouched(tmp_path):
    """Parameter checks happen before anything is executed or written."""
    with pytest.raises(ValueError):
        run.run_notebook(NB01, tmp_path, "quick", {"epoch": 3})
    assert list(tmp_path.iterdir()) == []
