"""The notebook-01 classifier as a reusable component: load it from its checkpoint, or train it.

Notebooks 03 (classifier FID / Inception Score) and 04 (embeddings) need a trained
classifier. Notebook 01 saves one per dataset under ``artifacts/models/<dataset>_<model>``;
when that checkpoint is missing (a fresh clone, or notebook 01 not yet run), the same
recipe is trained here so that every notebook runs on its own.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from flax import nnx

from imgmine_jax import checkpoint, data, metrics, models, train, validate

# Notebook 01's recipe (its parameters cell is the reference; keep the two in step).
RECIPE = train.TrainConfig(epochs=8, batch_size=32, learning_rate=3e-3, schedule="onecycle",
                           warmup_epochs=2.0, weight_decay=0.05, label_smoothing=0.1, augment_shift=2)
DATASET_OVERRIDES = {"fashion_mnist": {"augment_shift": 1, "augment_flip": True, "label_smoothing": 0.0}}
ARCH_KWARGS = {"resnet": {"widths": [16, 32, 64], "dropout": 0.2}, "seed_cnn": {}}
VAL_SIZE = 5000


def checkpoint_path(dataset: str, model: str = "resnet") -> Path:
    """Where notebook 01 saves (and this module looks for) the classifier of ``dataset``."""
    validate.safe_name(dataset, "dataset")
    validate.choice(model, "model", sorted(ARCH_KWARGS))
    return checkpoint.artifacts_dir() / "models" / f"{dataset}_{model}"


def recipe(dataset: str, *, seed: int = 0, **changes) -> train.TrainConfig:
    """Notebook 01's training configuration for ``dataset`` (with ``changes`` applied)."""
    validate.safe_name(dataset, "dataset")
    validate.integer(seed, "seed")
    cfg = dataclasses.replace(RECIPE, seed=seed, **DATASET_OVERRIDES.get(dataset, {}))
    return dataclasses.replace(cfg, **changes)


def train_classifier(dataset: str, model: str = "resnet", *, profile: str = "full", seed: int = 0,
                     progress: bool | None = None, log: Callable[[str], None] | None = print
                     ) -> tuple[nnx.Module, dict]:
    """Train notebook 01's classifier on ``dataset`` and save it to :func:`checkpoint_path`.

    ``profile="quick"`` trains one epoch on 2,000 images (a weak model, for smoke runs).
    Returns ``(model, meta)`` like :func:`checkpoint.load_model`.
    """
    if model not in ARCH_KWARGS:
        raise ValueError(f"unknown classifier {model!r}; expected one of {sorted(ARCH_KWARGS)}")
    if profile not in ("quick", "full"):
        raise ValueError(f"profile must be 'quick' or 'full'; got {profile!r}")
    validate.safe_name(dataset, "dataset")
    full_train = data.load(dataset, "train")
    train_part, val_part = data.train_val_split(full_train, 500 if profile == "quick" else VAL_SIZE, seed=seed)
    cfg = recipe(dataset, seed=seed)
    if profile == "quick":
        train_part = train_part.head(2000)
        cfg = dataclasses.replace(cfg, epochs=1, warmup_epochs=0.3)
    config = models.classifier_config(model, full_train.num_classes, full_train.image_shape, **ARCH_KWARGS[model])
    net = models.build(model, config, seed=seed)
    result = train.fit(net, train.Classification.from_config(full_train.num_classes, cfg),
                       train_part.arrays(), val_part.arrays(), cfg, progress=progress, log=log)
    test = data.load(dataset, "test")
    accuracy = metrics.accuracy(test.labels, train.predict(result.model, test.images).argmax(-1))
    info = {"dataset": dataset, "test_accuracy": accuracy, "profile": profile, "seed": seed}
    path = checkpoint.save_model(checkpoint_path(dataset, model), result.model, model, config, info=info)
    if log is not None:
        log(f"trained {model} on {dataset} ({profile} profile): test accuracy {accuracy:.2%}; saved {path}")
    return result.model, checkpoint.read_meta(path)


def load_or_train(dataset: str, model: str = "resnet", *, profile: str = "full", seed: int = 0,
                  log: Callable[[str], None] | None = print) -> tuple[nnx.Module, dict]:
    """The saved classifier of ``dataset`` if notebook 01 left one, else train it now.

    Returns ``(model, meta)``; ``meta["info"]`` says which profile trained it and its
    test accuracy, so a notebook can state what its numbers rest on.
    """
    validate.choice(profile, "profile", ("quick", "full"))
    path = checkpoint_path(dataset, model)
    if (path / "meta.json").is_file():
        net, meta = checkpoint.load_model(path, expect_architecture=model)
        if log is not None:
            info = meta.get("info", {})
            log(f"loaded {model} for {dataset} from {path.name} ({info.get('profile', '?')} profile, "
                f"test accuracy {info.get('test_accuracy', float('nan')):.2%})")
        return net, meta
    if log is not None:
        log(f"no saved {model} for {dataset}; training notebook 01's recipe ({profile} profile)")
    return train_classifier(dataset, model, profile=profile, seed=seed, log=log)
