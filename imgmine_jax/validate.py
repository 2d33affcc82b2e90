"""Argument checks shared by every public entry of the package.

Each check takes the value, the argument's name (as the caller spells it, e.g.
``"fit(train)"``) and returns the value in the form the caller uses (an ``int``, a
``float``, an absolute ``Path``, a numpy array). A value that does not fit raises
``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, wrong value) whose
message names the argument, the value and what was expected, before any work starts:
no training epoch runs, no file is written and no array is allocated on bad input.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

# A name that becomes one path component: no separators, no "..", no hidden files.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# A TFDS dataset name, optionally with a config and a version: "mnist", "emnist/letters:3.*.*".
_TFDS_NAME = re.compile(r"[a-z0-9][a-z0-9_]*(/[A-Za-z0-9_.-]+)?(:[0-9*]+\.[0-9*]+\.[0-9*]+)?")


def _show(value: Any) -> str:
    """``repr`` of a value for a message: arrays by dtype and shape, long texts shortened."""
    if isinstance(value, np.ndarray) or type(value).__module__.startswith(("jax", "jaxlib")):
        return f"an array of dtype {getattr(value, 'dtype', '?')} and shape {tuple(getattr(value, 'shape', ()))}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def fail(name: str, value: Any, expected: str, error: type[Exception] = ValueError) -> None:
    raise error(f"{name} must be {expected}; got {_show(value)}")


# --------------------------------------------------------------------------- scalars

def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def integer(value, name: str, *, min: int | None = None, max: int | None = None) -> int:
    """An ``int`` (not a bool, not a float with an integral value) in ``[min, max]``."""
    bounds = _bounds(min, max)
    if not is_int(value):
        fail(name, value, f"an integer{bounds}", TypeError)
    if (min is not None and value < min) or (max is not None and value > max):
        fail(name, value, f"an integer{bounds}")
    return int(value)


def number(value, name: str, *, min: float | None = None, max: float | None = None,
           min_open: bool = False, max_open: bool = False) -> float:
    """A finite real number (not a bool) in the interval; ``*_open`` excludes that end."""
    lo = "" if min is None else ("(" if min_open else "[") + f"{min:g}"
    hi = "" if max is None else f"{max:g}" + (")" if max_open else "]")
    where = f" in {lo or '(-inf'}, {hi or 'inf)'}" if (min is not None or max is not None) else ""
    if not is_number(value):
        fail(name, value, f"a finite number{where}", TypeError)
    value = float(value)
    if not math.isfinite(value):
        fail(name, value, f"a finite number{where}")
    if min is not None and (value < min or (min_open and value == min)):
        fail(name, value, f"a finite number{where}")
    if max is not None and (value > max or (max_open and value == max)):
        fail(name, value, f"a finite number{where}")
    return value


def boolean(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        fail(name, value, "True or False", TypeError)
    return bool(value)


def choice(value, name: str, options: Iterable) -> Any:
    options = tuple(options)
    if not isinstance(value, str if all(isinstance(o, str) for o in options) else object) or value not in options:
        fail(name, value, f"one of {list(options)}")
    return value


def string(value, name: str) -> str:
    if not isinstance(value, str) or not value:
        fail(name, value, "a non-empty string", TypeError if not isinstance(value, str) else ValueError)
    return value


def _bounds(min, max) -> str:
    if min is not None and max is not None:
        return f" in [{min}, {max}]"
    if min is not None:
        return f" >= {min}"
    if max is not None:
        return f" <= {max}"
    return ""


# --------------------------------------------------------------------------- names and paths

def safe_name(value, name: str) -> str:
    """A name that becomes one path component (a dataset or model name in ``artifacts/``)."""
    if not isinstance(value, str):
        fail(name, value, "a name (a string)", TypeError)
    if not _SAFE_NAME.fullmatch(value) or ".." in value:
        fail(name, value, "a plain name of letters, digits, '_', '-' and '.' (no path separators, no '..')")
    return value


def dataset_name(value, name: str = "dataset name") -> str:
    """A TFDS dataset name such as ``'mnist'`` (optionally ``'name/config:1.2.3'``)."""
    if not isinstance(value, str):
        fail(name, value, "a non-empty string such as 'mnist' or 'fashion_mnist'", TypeError)
    if not _TFDS_NAME.fullmatch(value) or ".." in value:
        fail(name, value, "a non-empty string such as 'mnist' or 'fashion_mnist' "
                          "(lower-case letters, digits and '_'; no path)")
    return value


def path(value, name: str) -> Path:
    """A ``str`` or ``os.PathLike`` path, returned absolute (relative to the working directory)."""
    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value):
        fail(name, value, "a path (a non-empty str or os.PathLike)", TypeError)
    return Path(os.path.abspath(os.fspath(value)))


def directory(value, name: str, *, create: bool = False) -> Path:
    """A path that is, or can become, a writable directory; returned absolute.

    Fails at once if it (or one of its parents) is a file, or cannot be created or written,
    so that a run does not train for an epoch before finding out.
    """
    p = path(value, name)
    for parent in [p, *p.parents]:
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == p else f"lies under {parent}, which is a file"
                raise ValueError(f"{name} must be a directory; got {str(value)!r}, which {what}")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PermissionError(f"{name} must be a writable directory; got {str(value)!r}, and "
                                      f"{parent} is not writable")
            break
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PermissionError(f"{name} must be a directory that can be created; got {str(value)!r}: "
                                  f"{err.strerror or err}") from None
    return p


# --------------------------------------------------------------------------- arrays

def array(value, name: str, *, ndim: int | tuple[int, ...] | None = None, dtype: str | None = None,
          finite: bool = False, nonempty: bool = False) -> np.ndarray:
    """``np.asarray(value)`` with checks: ``ndim``; ``dtype`` one of ``"integer"``, ``"float"``,
    ``"number"``, ``"uint8"``; all values finite; at least one element."""
    if isinstance(value, (str, bytes, dict, set)) or value is None:
        fail(name, value, "an array", TypeError)
    try:
        a = np.asarray(value)
    except Exception:
        fail(name, value, "an array", TypeError)
    if a.dtype == object:
        fail(name, value, "a numeric array", TypeError)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if ndims is not None and a.ndim not in ndims:
        fail(name, value, f"an array with {' or '.join(map(str, ndims))} dimensions")
    kinds = {"integer": "iu", "float": "f", "number": "iuf", "uint8": None}
    if dtype == "uint8" and a.dtype != np.uint8:
        fail(name, value, "a uint8 array (pixel values 0..255, as imgmine_jax.data stores images)", TypeError)
    if dtype in kinds and kinds[dtype] is not None and a.dtype.kind not in kinds[dtype]:
        fail(name, value, f"an array of {dtype} values", TypeError)
    if nonempty and a.size == 0:
        fail(name, value, "a non-empty array")
    if finite and a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        bad = a[~np.isfinite(a)].ravel()[0]
        raise ValueError(f"{name} must be finite; got {np.sum(~np.isfinite(a))} non-finite values "
                         f"(e.g. {bad}) in {_show(a)}")
    return a


def images(value, name: str, *, image_shape: tuple[int, ...] | None = None, nonempty: bool = True) -> np.ndarray:
    """uint8 images ``(N, H, W, C)`` as stored by :mod:`imgmine_jax.data`."""
    a = array(value, name, ndim=4, dtype="uint8", nonempty=nonempty)
    if image_shape is not None and tuple(a.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name} must have images of shape (H, W, C) = {tuple(image_shape)}; "
                         f"got {tuple(a.shape[1:])} (array shape {a.shape})")
    return a


def labels(value, name: str, *, num_classes: int | None = None, length: int | None = None) -> np.ndarray:
    """Integer class labels ``(N,)`` in ``[0, num_classes)``, ``length`` of them."""
    a = array(value, name, ndim=1)
    if a.size and a.dtype.kind not in "iu":
        fail(name, value, "an array of integer class labels", TypeError)
    if length is not None and len(a) != length:
        raise ValueError(f"{name} must hold one label per example ({length}); got {len(a)} labels")
    if num_classes is not None and a.size and (a.min() < 0 or a.max() >= num_classes):
        bad = a[(a < 0) | (a >= num_classes)][0]
        raise ValueError(f"{name} must lie in [0, {num_classes - 1}] (num_classes={num_classes}); got label "
                         f"{bad} (labels range over [{a.min()}, {a.max()}])")
    return a


def pixel_images(value, name: str, *, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Pixel images ``(N, H, W, C)``: uint8 0..255 as :mod:`imgmine_jax.data` stores them, or
    floats on [0, 1] (``images / 255``). Normalised [-1, 1] images are refused, not guessed."""
    a = array(value, name, ndim=4, dtype="number", finite=True, nonempty=True)
    if a.dtype != np.uint8:
        if a.dtype.kind != "f":
            fail(name, value, "uint8 pixels (0..255) or float pixels in [0, 1]", TypeError)
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} must be uint8 pixels (0..255) or float pixels in [0, 1]; got float values "
                             f"in [{lo:g}, {hi:g}] (normalised images? pass the uint8 images, or images / 255)")
    if image_shape is not None and tuple(a.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name} must have images of shape (H, W, C) = {tuple(image_shape)}; "
                         f"got {tuple(a.shape[1:])} (array shape {a.shape})")
    return a


def same_length(name: str, **arrays) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{name}: the arrays must have one length; got lengths {lengths}")
    return next(iter(lengths.values()))


def array_dict(value, name: str) -> int:
    """A non-empty dict of arrays of one length (``{"image": ..., "label": ...}``); returns the length."""
    if not isinstance(value, Mapping):
        fail(name, value, 'a dict of arrays such as ImageDataset.arrays() ({"image": ..., "label": ...})', TypeError)
    if not value:
        fail(name, value, 'a non-empty dict of arrays such as {"image": ..., "label": ...}')
    for key, v in value.items():
        if not isinstance(key, str):
            fail(f"{name} key", key, "a string", TypeError)
        if not hasattr(v, "shape") or not getattr(v, "shape", ()):
            fail(f"{name}[{key!r}]", v, "an array with a leading example axis", TypeError)
    n = same_length(name, **{k: v for k, v in value.items()})
    if n == 0:
        raise ValueError(f"{name} must hold at least one example; got 0")
    return n


def classification_arrays(value, name: str, *, num_classes: int, image_shape=None) -> int:
    """``{"image": uint8 (N, H, W, C), "label": int (N,) in [0, num_classes)}``; returns N."""
    n = array_dict(value, name)
    missing = {"image", "label"} - set(value)
    if missing:
        raise ValueError(f"{name} must have keys 'image' and 'label' (a classification task); got keys "
                         f"{sorted(value)}, missing {sorted(missing)}")
    images(value["image"], f"{name}['image']", image_shape=image_shape)
    labels(value["label"], f"{name}['label']", num_classes=num_classes, length=n)
    return n


def finite_metrics(metrics: Mapping[str, Any], name: str) -> None:
    """Raise ``FloatingPointError`` naming the first metric that is NaN or infinite."""
    for key, v in metrics.items():
        a = np.asarray(v)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            raise FloatingPointError(f"{name} {key} is not finite: {a.tolist()}; the model or the data "
                                     f"produced NaN/inf (check the inputs or lower the learning rate)")


# --------------------------------------------------------------------------- models

def model_output_classes(model) -> int | None:
    """How many logits ``model`` returns for an image, from its parameter shapes (no computation)."""
    for attr in ("head", "dense2"):
        layer = getattr(model, attr, None)
        if layer is not None and hasattr(layer, "out_features"):
            return int(layer.out_features)
    return None


def classifier_args(where: str, *, num_classes, in_channels, image_size, hidden=None, widths=None,
                    blocks=None, dropout=None, cell=None, num_layers=None, min_image_size: int = 1) -> None:
    """The constructor arguments of a classifier (what ``meta.json`` stores). Sizes are bounded
    (e.g. ``hidden`` <= 16,384), so a mistyped or crafted configuration cannot ask for
    gigabytes."""
    integer(num_classes, f"{where}(num_classes)", min=1, max=100_000)
    integer(in_channels, f"{where}(in_channels)", min=1, max=64)
    integer(image_size, f"{where}(image_size)", min=min_image_size, max=4096)
    if cell is not None:
        choice(cell, f"{where}(cell)", ("lstm", "gru"))
    if num_layers is not None:
        integer(num_layers, f"{where}(num_layers)", min=1, max=64)
    if hidden is not None:
        integer(hidden, f"{where}(hidden)", min=1, max=16_384)
    if widths is not None:
        if not isinstance(widths, (list, tuple)) or not widths:
            fail(f"{where}(widths)", widths, "a non-empty list of positive integers", TypeError
                 if not isinstance(widths, (list, tuple)) else ValueError)
        for i, w in enumerate(widths):
            integer(w, f"{where}(widths[{i}])", min=1, max=4096)
    if blocks is not None:
        integer(blocks, f"{where}(blocks)", min=1, max=64)
    if dropout is not None:
        number(dropout, f"{where}(dropout)", min=0.0, max=1.0, max_open=True)


def config_dict(value, name: str) -> dict:
    """A model configuration: a dict of JSON-like values keyed by argument names."""
    if not isinstance(value, Mapping):
        fail(name, value, "a dict of constructor arguments", TypeError)
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            fail(f"{name} key", key, "an argument name", TypeError)
    return dict(value)


# --------------------------------------------------------------------------- notebook parameters

# Integer parameters that count something: 0 or less is never meaningful.
_COUNT = re.compile(r"(^|_)(epochs|size|repeats|samples|sequences|folds|steps|layers|hidden|width|devices|"
                    r"queries|init|grid|clusters|dim|rows|k|embed)$")
_FRACTION = re.compile(r"(^|_)(dropout|smoothing|decay|beta1|beta2)$")


def notebook_parameter(name: str, value, default) -> None:
    """Range checks of a notebook parameter override, from its name and default.

    Numbers must be finite; a parameter whose default is >= 0 must stay >= 0; a count
    (``epochs``, ``*_size``, ``k``, ...; not a ``warmup``) must be >= 1; ``dropout``,
    ``*_smoothing``, ``*_decay`` and Adam's betas lie in [0, 1).
    """
    label = f"parameter {name}"
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            if is_number(v):
                notebook_parameter(f"{name}[{i}]", v, default[0] if isinstance(default, (list, tuple)) and default
                                   and is_number(default[0]) else None)
        return
    if not is_number(value):
        return
    number(value, label)
    if _FRACTION.search(name) and name != "weight_decay" and not name.endswith("weight_decay"):
        number(value, label, min=0.0, max=1.0, max_open=True)
    if is_int(value) and _COUNT.search(name) and "warmup" not in name:
        integer(value, label, min=1)
    if is_number(default) and default >= 0 and value < 0:
        fail(label, value, f"a number >= 0 (like its default {default!r})")


# --------------------------------------------------------------------------- training entries

def _callable_or_none(value, name: str) -> None:
    if value is not None and not callable(value):
        fail(name, value, "a function or None", TypeError)


def module(value, name: str) -> None:
    from flax import nnx

    if not isinstance(value, nnx.Module):
        fail(name, value, "a Flax NNX module (e.g. models.build(...))", TypeError)


def classification_task(task) -> None:
    """The fields of :class:`imgmine_jax.train.Classification`."""
    integer(task.num_classes, "Classification(num_classes)", min=1)
    number(task.label_smoothing, "Classification(label_smoothing)", min=0.0, max=1.0, max_open=True)
    integer(task.augment_shift, "Classification(augment_shift)", min=0)
    boolean(task.augment_flip, "Classification(augment_flip)")


def _task_data(model, task, arrays, name: str) -> int:
    """Checks ``arrays`` against the task (and, for classification, the model); returns N."""
    from imgmine_jax.train import Classification

    if isinstance(task, Classification):
        return classification_arrays(arrays, name, num_classes=task.num_classes,
                                     image_shape=getattr(model, "image_shape", None))
    return array_dict(arrays, name)


def fit_call(model, task, train, val, cfg, *, monitor, checkpoint_dir, checkpoint_every,
             on_epoch_end=None, log=None, epoch_metrics=None) -> None:
    """Everything :func:`imgmine_jax.train.fit` is given, checked before it builds anything."""
    from imgmine_jax.train import Classification, TrainConfig

    module(model, "fit(model)")
    if not isinstance(cfg, TrainConfig):
        fail("fit(cfg)", cfg, "a TrainConfig", TypeError)
    if not (callable(getattr(task, "loss", None)) or callable(getattr(task, "update", None))) \
            or not callable(getattr(task, "eval_sums", None)):
        fail("fit(task)", task, "a task with loss() (or update()) and eval_sums(), e.g. Classification(10)",
             TypeError)
    if isinstance(task, Classification):
        classes = model_output_classes(model)
        if classes is not None and classes != task.num_classes:
            raise ValueError(f"fit(task) has num_classes={task.num_classes} but the model outputs {classes} "
                             f"logits; build the model with num_classes={task.num_classes}")
    n = _task_data(model, task, train, "fit(train)")
    if val is not None:
        _task_data(model, task, val, "fit(val)")
    if cfg.batch_size > n:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set ({n} examples)")
    if monitor is not None:
        string(monitor, "fit(monitor)")
        if isinstance(task, Classification) and epoch_metrics is None:
            columns = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch"]
            if monitor not in columns:
                fail("fit(monitor)", monitor, f"a history column, one of {columns} (or None)")
    integer(checkpoint_every, "checkpoint_every", min=1)
    if checkpoint_dir is not None:
        directory(checkpoint_dir, "fit(checkpoint_dir)")
    _callable_or_none(on_epoch_end, "fit(on_epoch_end)")
    _callable_or_none(log, "fit(log)")
    _callable_or_none(epoch_metrics, "fit(epoch_metrics)")


def monitored(row: Mapping[str, Any], monitor: str | None):
    """The score of ``row`` that picks the best epoch; a ``monitor`` missing from it is an error."""
    if monitor is None:
        return row["epoch"]
    if monitor not in row:
        fail("fit(monitor)", monitor, f"a column of the history, one of {sorted(row)}")
    return row[monitor]


def sweep_call(make_model, task, train, val, cfg, learning_rates, seeds, *, checkpoint_dir,
               checkpoint_every) -> None:
    """Everything :func:`imgmine_jax.train.sweep` is given."""
    from imgmine_jax.train import TrainConfig

    if not callable(make_model):
        fail("sweep(make_model)", make_model, "a function rngs -> model", TypeError)
    if not isinstance(cfg, TrainConfig):
        fail("sweep(cfg)", cfg, "a TrainConfig", TypeError)
    for name, values in (("learning_rates", learning_rates), ("seeds", seeds)):
        sequence(values, f"sweep({name})")
    for i, lr in enumerate(learning_rates):
        number(lr, f"sweep(learning_rates[{i}])", min=0.0, min_open=True)
    for i, seed in enumerate(seeds):
        integer(seed, f"sweep(seeds[{i}])", min=0, max=2 ** 32 - 1)
    n = _task_data(None, task, train, "sweep(train)")
    _task_data(None, task, val, "sweep(val)")
    if cfg.batch_size > n:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set ({n} examples)")
    integer(checkpoint_every, "checkpoint_every", min=1)
    if checkpoint_dir is not None:
        directory(checkpoint_dir, "sweep(checkpoint_dir)")


def predict_call(model, images_, batch_size, fn=None, where: str = "predict") -> None:
    module(model, f"{where}(model)")
    a = np.asarray(images_) if not isinstance(images_, (str, dict, type(None))) else None
    if a is None or a.dtype != np.uint8 or a.ndim != 4:
        raise ValueError(f"{where} expects uint8 images of shape (N, H, W, C); got "
                         f"{getattr(a, 'dtype', type(images_).__name__)} {getattr(a, 'shape', '')}")
    images(a, f"{where}(images)", image_shape=getattr(model, "image_shape", None))
    integer(batch_size, f"{where}(batch_size)", min=1)
    _callable_or_none(fn, f"{where}(fn)")


def classifier_config_call(num_classes, image_shape) -> None:
    integer(num_classes, "classifier_config(num_classes)", min=1, max=100_000)
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
        fail("classifier_config(image_shape)", image_shape, "a tuple (H, W, C), e.g. dataset.image_shape", TypeError)
    for i, d in enumerate(image_shape):
        integer(d, f"classifier_config(image_shape[{i}])", min=1)


def build_call(cls, name: str, config, seed) -> None:
    """``models.build(name, config, seed)``: config keys the constructor takes, an integer seed."""
    import inspect

    config_dict(config, f"build({name!r}, config)")
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "rngs"}
    unknown = sorted(set(config) - params)
    if unknown:
        raise TypeError(f"build({name!r}, config) got arguments {unknown} that {cls.__name__} does not take; "
                        f"expected some of {sorted(params)}")
    integer(seed, "build(seed)", min=0)


# --------------------------------------------------------------------------- attributions and attacks

def rng_key(value, name: str):
    """A ``jax.random.key(...)`` (a typed key), or an integer seed >= 0 made into one."""
    import jax

    if is_int(value):
        return jax.random.key(integer(value, name, min=0, max=2 ** 32 - 1))
    dtype = getattr(value, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and getattr(value, "shape", None) == ():
        return value
    fail(name, value, "a key from jax.random.key(seed), or an integer seed >= 0", TypeError)


def probe_call(where: str, model, images_, labels_, batch_size) -> tuple[np.ndarray, np.ndarray]:
    """A classifier, pixel images for it and one true label each, and a batch size; returns
    ``(images, labels)`` as numpy arrays."""
    module(model, f"{where}(model)")
    x = pixel_images(images_, f"{where}(images)", image_shape=getattr(model, "image_shape", None))
    y = labels(labels_, f"{where}(labels)", num_classes=model_output_classes(model), length=len(x))
    integer(batch_size, f"{where}(batch_size)", min=1)
    return x, y


def _item(name: str, i: int) -> str:
    """The name of element ``i`` of argument ``name``: ``f(xs)`` -> ``f(xs[i])``."""
    return f"{name[:-1]}[{i}])" if name.endswith(")") else f"{name}[{i}]"


def epsilon(value, name: str) -> float:
    """An attack's L-infinity radius as a fraction of the pixel range: a number in [0, 1]."""
    return number(value, name, min=0.0, max=1.0)


def sequence(value, name: str, expected: str = "a non-empty list") -> list:
    """``value`` as a list: a sized sequence (not a string or a dict; TypeError) with at least one
    item (ValueError)."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__"):
        fail(name, value, expected, TypeError)
    if len(value) == 0:
        fail(name, value, expected)
    return list(value)


def epsilons(value, name: str) -> list[float]:
    """A non-empty list of attack radii, each in [0, 1]."""
    return [epsilon(v, _item(name, i))
            for i, v in enumerate(sequence(value, name, "a non-empty list of numbers in [0, 1]"))]


def fractions(value, name: str) -> list[float]:
    """A non-empty list of fractions in [0, 1] (of an image's pixels)."""
    return [number(v, _item(name, i), min=0.0, max=1.0)
            for i, v in enumerate(sequence(value, name, "a non-empty list of numbers in [0, 1]"))]


def severities(value, name: str) -> list[int]:
    """A non-empty list of corruption severities, each an integer in 1..5."""
    return [integer(v, _item(name, i), min=1, max=5)
            for i, v in enumerate(sequence(value, name, "a non-empty list of integers in [1, 5]"))]


# --------------------------------------------------------------------------- metrics

def confusion(value, name: str) -> np.ndarray:
    a = array(value, name, ndim=2, dtype="number", finite=True, nonempty=True)
    if a.shape[0] != a.shape[1]:
        fail(name, value, "a square matrix (classes x classes)")
    if np.any(a < 0):
        fail(name, value, "a matrix of non-negative counts")
    return a


def ssim_call(a, b, data_range, window, sigma, batch_size) -> None:
    array(a, "ssim(a)", dtype="number", finite=True)
    array(b, "ssim(b)", dtype="number", finite=True)
    number(data_range, "ssim(data_range)", min=0.0, min_open=True)
    window = integer(window, "ssim(window)", min=1)
    if window % 2 == 0:
        fail("ssim(window)", window, "an odd integer >= 1")
    number(sigma, "ssim(sigma)", min=0.0, min_open=True)
    integer(batch_size, "ssim(batch_size)", min=1)


def temperature_bounds(bounds) -> None:
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        fail("fit_temperature(bounds)", bounds, "a pair (low, high)", TypeError)
    lo = number(bounds[0], "fit_temperature(bounds[0])", min=0.0, min_open=True)
    number(bounds[1], "fit_temperature(bounds[1])", min=lo, min_open=True)


# --------------------------------------------------------------------------- Moving MNIST

def moving_mnist_arrays(seqs) -> None:
    n, d, h, w = seqs.digits.shape
    pos = array(seqs.positions, "MovingMnist(positions)", ndim=4, dtype="integer")
    if pos.size and (pos.min() < 0 or pos[..., 0].max() > seqs.canvas - h or pos[..., 1].max() > seqs.canvas - w):
        raise ValueError(f"MovingMnist(positions) must keep every digit inside the {seqs.canvas}x{seqs.canvas} canvas "
                         f"(top-left in [0, {seqs.canvas - h}]); got positions in [{pos.min()}, {pos.max()}]")
    for name in ("digit_indices", "labels"):
        a = np.asarray(getattr(seqs, name))
        if a.shape != (n, d):
            fail(f"MovingMnist({name})", a, f"an array of shape (N={n}, D={d})")


def trajectories_call(rng, num_sequences, num_frames, num_digits, free_range, step_length) -> None:
    if not isinstance(rng, np.random.Generator):
        fail("trajectories(rng)", rng, "a numpy Generator (np.random.default_rng(seed))", TypeError)
    integer(num_sequences, "trajectories(num_sequences)", min=1)
    integer(num_frames, "trajectories(num_frames)", min=2)
    integer(num_digits, "trajectories(num_digits)", min=1)
    integer(free_range, "trajectories(free_range)", min=0)
    number(step_length, "trajectories(step_length)", min=0.0, max=1.0, min_open=True)


def generate_call(source, seed, num_frames, num_observed, num_digits, canvas, step_length) -> None:
    from imgmine_jax.data import ImageDataset

    if not isinstance(source, ImageDataset):
        fail("generate(source)", source, "an ImageDataset (e.g. data.load('mnist', 'train'))", TypeError)
    integer(seed, "generate(seed)", min=0)
    integer(num_frames, "generate(num_frames)", min=2)
    integer(num_observed, "generate(num_observed)", min=1, max=num_frames - 1)
    integer(num_digits, "generate(num_digits)", min=1)
    integer(canvas, "generate(canvas)", min=1)
    number(step_length, "generate(step_length)", min=0.0, max=1.0, min_open=True)
