"""Notebook 01's classifier as a reusable component: train it, save it, load it (or retrain it).

Notebook 01 trains and saves one classifier per dataset under
``artifacts/models/<dataset>_<model>`` with the functions here; notebooks 03 (classifier
FID / Inception Score) and 04 (embeddings) load it with :func:`load_or_train`. The
recipe is :data:`imgmine_jax.recipes.CLASSIFIER` (notebook 01's parameters cell shows
the same values). A saved classifier records the profile and the recipe it was trained
with; :func:`load_or_train` uses it only if that is the recipe the caller's profile
expects, and otherwise trains the expected one (and says why), so a full-profile
notebook never rests on a quick-profile or differently trained model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from flax import nnx

from imgmine_jax import checkpoint, data, metrics, models, recipes, train, validate
from imgmine_jax.recipes import ClassifierRecipe


def checkpoint_path(dataset: str, model: str = "resnet") -> Path:
    """Where notebook 01 saves (and this module looks for) the classifier of ``dataset``."""
    validate.safe_name(dataset, "dataset")
    validate.choice(model, "model", sorted(models.CLASSIFIERS))
    return checkpoint.artifacts_dir() / "models" / f"{dataset}_{model}"


def splits(dataset: str, recipe: ClassifierRecipe) -> tuple[data.ImageDataset, data.ImageDataset, data.ImageDataset]:
    """``(train, val, test)``: a seeded validation split of ``recipe.val_size``, the training part cut
    to ``recipe.train_size``, and the untouched test split."""
    full_train = data.load(dataset, "train")
    train_part, val_part = data.train_val_split(full_train, recipe.val_size, seed=recipe.seed)
    return train_part.head(recipe.train_size), val_part, data.load(dataset, "test")


def fit_classifier(architecture: str, cfg: train.TrainConfig, train_part: data.ImageDataset,
                   val_part: data.ImageDataset, *, progress: bool | None = None,
                   log: Callable[[str], None] | None = print, **arch_kwargs: Any) -> tuple[train.FitResult, dict]:
    """Build classifier ``architecture`` for the dataset's shape and train it with ``cfg``.

    Returns ``(fit result, constructor config)``; the config is what :func:`save` stores.
    """
    if architecture not in models.CLASSIFIERS:
        raise ValueError(f"unknown classifier {architecture!r}; expected one of {sorted(models.CLASSIFIERS)}")
    config = models.classifier_config(architecture, train_part.num_classes, train_part.image_shape, **arch_kwargs)
    net = models.build(architecture, config, seed=cfg.seed)
    result = train.fit(net, train.Classification.from_config(train_part.num_classes, cfg),
                       train_part.arrays(), val_part.arrays(), cfg, progress=progress, log=log)
    return result, config


def save(dataset: str, model: nnx.Module, config: dict, recipe: ClassifierRecipe, *, profile: str,
         test_accuracy: float) -> Path:
    """Save a trained classifier to :func:`checkpoint_path` with its profile, recipe and test accuracy."""
    info = {"dataset": dataset, "test_accuracy": float(test_accuracy), "profile": profile, "seed": recipe.seed,
            "recipe": recipe.as_dict()}
    return checkpoint.save_model(checkpoint_path(dataset, recipe.model), model, recipe.model, config, info=info)


def train_classifier(dataset: str, model: str = "resnet", *, profile: str = "full", seed: int = 0,
                     progress: bool | None = None, log: Callable[[str], None] | None = print
                     ) -> tuple[nnx.Module, dict]:
    """Train notebook 01's classifier on ``dataset`` in ``profile`` and save it to :func:`checkpoint_path`.

    ``profile="quick"`` trains one epoch on 2,000 images (a weak model, for smoke runs).
    Returns ``(model, meta)`` like :func:`checkpoint.load_model`.
    """
    recipe = expected_recipe(model, profile, seed)
    train_part, val_part, test = splits(dataset, recipe)
    result, config = fit_classifier(model, recipe.train_config(dataset), train_part, val_part,
                                    progress=progress, log=log, **recipe.arch_kwargs())
    accuracy = metrics.accuracy(test.labels, train.predict(result.model, test.images).argmax(-1))
    path = save(dataset, result.model, config, recipe, profile=profile, test_accuracy=accuracy)
    if log is not None:
        log(f"trained {model} on {dataset} ({profile} profile): test accuracy {accuracy:.2%}; saved {path}")
    return result.model, checkpoint.read_meta(path)


def expected_recipe(model: str = "resnet", profile: str = "full", seed: int = 0) -> ClassifierRecipe:
    """The recipe a notebook in ``profile`` expects its classifier to have been trained with."""
    validate.choice(model, "model", sorted(models.CLASSIFIERS))
    validate.choice(profile, "profile", ("quick", "full"))
    validate.integer(seed, "seed")
    base = recipes.CLASSIFIER
    if model != base.model:   # the other classifier (SeedCNN) with the same training recipe
        base = ClassifierRecipe(**{**base.as_dict(), "model": model})
    return ClassifierRecipe(**{**base.as_dict(), "seed": seed}).for_profile(profile)


def why_not_usable(meta: dict, model: str = "resnet", profile: str = "full", seed: int = 0) -> str | None:
    """Why a saved classifier's ``meta`` does not fit a notebook in ``profile`` (None: it fits).

    A full-profile notebook needs the full recipe; a quick one takes the quick or the full one.
    """
    info = meta.get("info", {})
    saved = info.get("recipe")
    if saved is None:
        return "it records no recipe (saved by an older version)"
    accepted = {p: expected_recipe(model, p, seed).as_dict() for p in (("full", "quick") if profile == "quick"
                                                                      else ("full",))}
    if any(saved == r for r in accepted.values()):
        return None
    if info.get("profile") != "full" and profile == "full":
        return f"it was trained in the {info.get('profile')!r} profile"
    changed = sorted(k for k in set(saved) | set(accepted["full"]) if saved.get(k) != accepted["full"].get(k))
    return f"its recipe differs from the {profile} profile's in {', '.join(changed)}"


def load_or_train(dataset: str, model: str = "resnet", *, profile: str = "full", seed: int = 0,
                  log: Callable[[str], None] | None = print) -> tuple[nnx.Module, dict]:
    """The saved classifier of ``dataset`` if it was trained with the recipe ``profile`` expects,
    else train (and save) that one now, saying why.

    Returns ``(model, meta)``; ``meta["info"]`` says which profile and recipe trained it and
    its test accuracy, so a notebook can state what its numbers rest on.
    """
    path = checkpoint_path(dataset, model)
    if (path / "meta.json").is_file():
        reason = why_not_usable(checkpoint.read_meta(path), model, profile, seed)
        if reason is None:
            net, meta = checkpoint.load_model(path, expect_architecture=model)
            if log is not None:
                info = meta.get("info", {})
                log(f"loaded {model} for {dataset} from {path.name} ({info.get('profile', '?')} profile, "
                    f"test accuracy {info.get('test_accuracy', float('nan')):.2%})")
            return net, meta
        if log is not None:
            log(f"not using the saved {model} for {dataset}: {reason}; training notebook 01's recipe "
                f"({profile} profile) instead")
    elif log is not None:
        log(f"no saved {model} for {dataset}; training notebook 01's recipe ({profile} profile)")
    return train_classifier(dataset, model, profile=profile, seed=seed, log=log)
