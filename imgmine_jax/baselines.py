"""The measurements of the classifiers against the source articles' claims (notebook 05; the
articles' CNNs also in notebook 01).

* **Traditional versus deep** -- :func:`features` (raw pixels or HOG descriptors) and the
  scikit-learn models of :data:`TRADITIONAL`, compared by :func:`compare` (test accuracy and
  the time each fit and prediction takes).
* **Data-driven** -- :func:`learning_curve`: test accuracy against training-set size for one
  traditional model and notebook 01's ResNet; :func:`crossing_point` names the size where
  the ResNet overtakes it.
* **Ablations** -- :func:`ablate`: the ResNet recipe with one part removed
  (:data:`imgmine_jax.recipes.ABLATIONS`), every arm at the same short budget, its seeds
  trained together by the vmapped :func:`imgmine_jax.train.sweep`.
* **The articles' code** -- :func:`double_softmax_cost`: article C's CNN, whose softmax
  output layer meets a from-logits loss (softmax applied twice), against the same network
  without the error; :func:`fit_article_cnn`: the articles' CNNs as notebook 01's baseline rows.

Every measurement returns a list of plain row dicts (a table: ``pandas.DataFrame(rows)``); the
defaults of the notebook's budget live in :mod:`imgmine_jax.recipes`.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from imgmine_jax import classifier, data, metrics, models, recipes, train, validate

FEATURE_KINDS = ("pixels", "hog")

#: HOG on 28x28 images: 7x7-pixel cells (4x4 of them), blocks of 2x2 cells (3x3 positions),
#: 9 orientations -- 3*3*2*2*9 = 324 numbers per image (Dalal and Triggs, 2005, scaled to digits).
HOG_PARAMS: dict[str, Any] = {"orientations": 9, "pixels_per_cell": (7, 7), "cells_per_block": (2, 2),
                              "block_norm": "L2-Hys"}


def _logistic(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # multinomial, L2 with C=0.1 on standardised features, lbfgs; at most 100 iterations bound the
    # fit time (a fit stopped there is a usable baseline; fit_traditional silences the warning)
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=100, random_state=seed))


def _linear_svm(seed: int):
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # A linear SVM (hinge loss, L2) fitted by stochastic gradient descent, one-vs-rest over the
    # classes in parallel: liblinear's exact solver (LinearSVC) took minutes on 10,000 images of
    # a 2-core CPU, SGD seconds, for a linear separator of the same kind.
    return make_pipeline(StandardScaler(), SGDClassifier(loss="hinge", alpha=1e-4, max_iter=30, tol=1e-3,
                                                         n_jobs=-1, random_state=seed))


def _knn(seed: int):
    from sklearn.neighbors import KNeighborsClassifier

    # three neighbours, Euclidean; no fitting to speak of: the cost is in prediction
    return KNeighborsClassifier(n_neighbors=3, n_jobs=-1)


def _random_forest(seed: int):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)


#: The traditional models: name -> ``factory(seed)`` of a scikit-learn estimator.
TRADITIONAL: dict[str, Callable[[int], Any]] = {"logistic": _logistic, "linear_svm": _linear_svm, "knn": _knn,
                                                "random_forest": _random_forest}


# --------------------------------------------------------------------------- features

def features(images: np.ndarray, kind: str) -> np.ndarray:
    """Feature vectors ``(N, D)`` float32 of uint8 images ``(N, H, W, C)``.

    ``"pixels"``: the pixels scaled to [0, 1], flattened (D = H*W*C). ``"hog"``: histograms of
    oriented gradients (scikit-image, :data:`HOG_PARAMS`; D = 324 for 28x28 images), the
    hand-crafted features of pre-deep-learning recognition.
    """
    validate.choice(kind, "features(kind)", FEATURE_KINDS)
    images = validate.images(images, "features(images)")
    if kind == "pixels":
        return (images.reshape(len(images), -1) / np.float32(255.0)).astype(np.float32)
    from skimage.feature import hog

    channel_axis = None if images.shape[-1] == 1 else -1
    frames = images[..., 0] if channel_axis is None else images
    return np.stack([hog(f, channel_axis=channel_axis, **HOG_PARAMS) for f in frames]).astype(np.float32)


def subset(dataset: data.ImageDataset, size: int | None, seed: int = 0) -> data.ImageDataset:
    """The first ``size`` examples of a seeded shuffle of ``dataset`` (all when None). The same
    seed gives nested subsets: a smaller one is part of every larger one."""
    if size is None:
        return dataset
    validate.integer(size, "subset(size)", min=1, max=len(dataset))
    order = np.random.default_rng(seed).permutation(len(dataset))
    return dataset.take(np.sort(order[:size]))


def traditional_model(name: str, seed: int = 0):
    """A fresh, unfitted scikit-learn estimator of :data:`TRADITIONAL` ``name``."""
    validate.choice(name, "traditional model", list(TRADITIONAL))
    return TRADITIONAL[name](seed)


# --------------------------------------------------------------------------- traditional versus deep

def _sizes_per_model(train_size, names: Sequence[str], available: int) -> dict[str, int]:
    if train_size is None or validate.is_int(train_size):
        train_size = {name: train_size for name in names}
    if not isinstance(train_size, Mapping):
        validate.fail("compare(train_size)", train_size, "None, an integer or a dict model -> size", TypeError)
    sizes = {}
    for name in names:
        size = train_size.get(name)
        sizes[name] = available if size is None else min(
            validate.integer(size, f"compare(train_size[{name!r}])", min=10), available)
    return sizes


def _names(values, name: str, options: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
        validate.fail(name, values, f"a non-empty list of names from {list(options)}", TypeError)
    return [validate.choice(v, f"{name}[{i}]", options) for i, v in enumerate(values)]


def fit_traditional(name: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                    seed: int = 0) -> dict[str, float]:
    """Fit traditional model ``name`` and score it: ``{"test_accuracy", "fit_seconds", "predict_seconds"}``."""
    from sklearn.exceptions import ConvergenceWarning

    model = traditional_model(name, seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # the iteration caps are deliberate
        model.fit(train_x, train_y)
    fitted = time.perf_counter()
    predictions = model.predict(test_x)
    done = time.perf_counter()
    return {"test_accuracy": metrics.accuracy(test_y, predictions), "fit_seconds": fitted - start,
            "predict_seconds": done - fitted}


def compare(train_set: data.ImageDataset, test_set: data.ImageDataset, *,
            models: Sequence[str] = tuple(TRADITIONAL), feature_kinds: Sequence[str] = FEATURE_KINDS,
            train_size: int | Mapping[str, int | None] | None = recipes.TRADITIONAL_TRAIN_SIZES, seed: int = 0,
            log: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """Every traditional model of ``models`` on every feature kind, trained on ``train_set`` and
    scored on all of ``test_set``.

    ``train_size``: the training images each model sees -- None (all), one integer, or a dict
    model -> size (default :data:`imgmine_jax.recipes.TRADITIONAL_TRAIN_SIZES`; a model it does
    not name sees all; no model sees more than ``train_set`` holds); each is a seeded subset
    (:func:`subset`), so the models that share a size share the images. Features are computed
    once per kind.

    Returns one row per (model, features): ``dataset``, ``model``, ``features``, ``train_size``,
    ``test_accuracy``, ``fit_seconds``, ``predict_seconds`` (the whole test split) and
    ``feature_seconds`` (extracting that kind for the largest training subset and the test split,
    shared by the models of the kind).
    """
    if not isinstance(train_set, data.ImageDataset) or not isinstance(test_set, data.ImageDataset):
        validate.fail("compare(train_set, test_set)", (type(train_set).__name__, type(test_set).__name__),
                      "two ImageDatasets (from imgmine_jax.data.load)", TypeError)
    names = _names(models, "compare(models)", list(TRADITIONAL))
    kinds = _names(feature_kinds, "compare(feature_kinds)", FEATURE_KINDS)
    validate.integer(seed, "compare(seed)")
    sizes = _sizes_per_model(train_size, names, len(train_set))
    largest = subset(train_set, max(sizes.values()), seed)
    order = np.random.default_rng(seed).permutation(len(train_set))
    position = np.empty(len(train_set), np.int64)
    position[np.sort(order[:len(largest)])] = np.arange(len(largest))
    rows = []
    for kind in kinds:
        start = time.perf_counter()
        train_x, test_x = features(largest.images, kind), features(test_set.images, kind)
        feature_seconds = time.perf_counter() - start
        for name in names:
            rows_of = position[np.sort(order[:sizes[name]])]   # this model's subset, inside the largest one
            scores = fit_traditional(name, train_x[rows_of], largest.labels[rows_of], test_x, test_set.labels, seed)
            row = {"dataset": train_set.name, "model": name, "features": kind, "train_size": sizes[name],
                   **scores, "feature_seconds": feature_seconds}
            rows.append(row)
            if log is not None:
                log(f"{train_set.name}: {name} on {kind} ({sizes[name]:,} images): test accuracy "
                    f"{row['test_accuracy']:.2%}, fit {row['fit_seconds']:.1f} s, "
                    f"predict {row['predict_seconds']:.1f} s")
    return rows


# --------------------------------------------------------------------------- data-driven

def _test_head(test_set: data.ImageDataset, test_size: int | None, name: str) -> data.ImageDataset:
    if test_size is None:
        return test_set
    return test_set.head(validate.integer(test_size, name, min=1, max=len(test_set)))


def check_sizes(sizes, available: int, name: str = "learning_curve(sizes)", minimum: int = 1) -> list[int]:
    """Training-set sizes: a non-empty, strictly increasing list of integers in ``[minimum, available]``."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (list, tuple, np.ndarray)) or len(sizes) == 0:
        validate.fail(name, sizes, "a non-empty list of training-set sizes", TypeError)
    out = [validate.integer(s, f"{name}[{i}]", min=minimum, max=available) for i, s in enumerate(sizes)]
    if any(b <= a for a, b in zip(out, out[1:])):
        validate.fail(name, list(sizes), "strictly increasing (smallest first)")
    return out


def deep_budget(size: int, batch_size: int, epochs: int, min_steps: int) -> int:
    """Epochs the ResNet trains on ``size`` images: ``epochs``, or more if that gives fewer than
    ``min_steps`` steps (so a small set gets a comparable number of updates, not a handful)."""
    steps_per_epoch = max(size // batch_size, 1)
    return max(int(epochs), math.ceil(min_steps / steps_per_epoch))


def fit_resnet(train_part: data.ImageDataset, test_set: data.ImageDataset, cfg: train.TrainConfig,
               arch: Mapping[str, Any], *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train notebook 01's ResNet (``arch``: its arguments) with ``cfg`` on ``train_part``, keeping the
    last epoch (no validation, no selection), and score it on ``test_set``:
    ``{"test_accuracy", "fit_seconds", "final_train_loss"}``."""
    config = models.classifier_config("resnet", train_part.num_classes, train_part.image_shape, **dict(arch))
    net = models.build("resnet", config, seed=cfg.seed)
    task = train.Classification.from_config(train_part.num_classes, cfg)
    result = train.fit(net, task, train_part.arrays(), None, cfg, monitor=None, progress=False, log=log,
                       checkpoint_every=cfg.epochs)   # one checkpoint at the end: the finished run is reused
    predictions = train.predict(result.model, test_set.images).argmax(-1)
    return {"test_accuracy": metrics.accuracy(test_set.labels, predictions), "fit_seconds": result.train_seconds,
            "final_train_loss": float(result.history[-1]["train_loss"])}


_CURVE = recipes.LEARNING_CURVE
_ABLATE = recipes.ABLATION_BUDGET


def learning_curve(dataset: str, sizes: Sequence[int] = tuple(_CURVE["sizes"]), *,
                   traditional: str = _CURVE["traditional"],
                   features_kind: str = _CURVE["features"], seed: int = 0, epochs: int = _CURVE["epochs"],
                   min_steps: int = _CURVE["min_steps"],
                   test_size: int | None = None, recipe: recipes.ClassifierRecipe = recipes.CLASSIFIER,
                   log: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """Test accuracy against training-set size for traditional model ``traditional`` on
    ``features_kind`` and for notebook 01's ResNet (``recipe``'s ResNet arguments, optimiser,
    schedule, regularisation and augmentation for ``dataset``).

    The training sets are nested seeded subsets of notebook 01's training part (the training
    split less its validation images); every model is scored on the whole test split. The
    ResNet trains :func:`deep_budget` epochs on each (``epochs``, at least ``min_steps`` steps),
    the one-cycle warm-up the same fraction of training as in the recipe, and keeps the last
    epoch. ``test_size``: score on the first that many test images only (a quick profile).

    Returns two rows per size: ``size``, ``model`` (``"logistic (hog)"``, ``"resnet"``), ``kind``
    (``"traditional"`` / ``"deep"``), ``test_accuracy``, ``fit_seconds``, and for the ResNet
    ``epochs`` and ``steps``. The defaults are :data:`imgmine_jax.recipes.LEARNING_CURVE`.
    """
    validate.choice(traditional, "learning_curve(traditional)", list(TRADITIONAL))
    validate.choice(features_kind, "learning_curve(features_kind)", FEATURE_KINDS)
    validate.integer(seed, "learning_curve(seed)")
    validate.integer(epochs, "learning_curve(epochs)", min=1)
    validate.integer(min_steps, "learning_curve(min_steps)", min=1)
    recipe = dataclasses.replace(recipe, seed=seed, train_size=None)
    train_part, _, test_set = classifier.splits(dataset, recipe)
    test_set = _test_head(test_set, test_size, "learning_curve(test_size)")
    base = recipe.train_config(dataset)
    sizes = check_sizes(sizes, len(train_part), minimum=base.batch_size)
    largest = subset(train_part, sizes[-1], seed)
    all_x, test_x = features(largest.images, features_kind), features(test_set.images, features_kind)
    order = np.random.default_rng(seed).permutation(len(train_part))
    position = np.empty(len(train_part), np.int64)
    position[np.sort(order[:sizes[-1]])] = np.arange(sizes[-1])
    rows = []
    for size in sizes:
        picked = position[np.sort(order[:size])]   # == subset(train_part, size, seed), as rows of `largest`
        scores = fit_traditional(traditional, all_x[picked], largest.labels[picked], test_x, test_set.labels, seed)
        rows.append({"size": size, "model": f"{traditional} ({features_kind})", "kind": "traditional",
                     "test_accuracy": scores["test_accuracy"], "fit_seconds": scores["fit_seconds"]})
        n_epochs = deep_budget(size, base.batch_size, epochs, min_steps)
        cfg = dataclasses.replace(base, epochs=n_epochs, warmup_epochs=base.warmup_epochs * n_epochs / base.epochs)
        deep = fit_resnet(largest.take(picked), test_set, cfg, recipe.arch_kwargs())
        rows.append({"size": size, "model": "resnet", "kind": "deep", "test_accuracy": deep["test_accuracy"],
                     "fit_seconds": deep["fit_seconds"], "epochs": n_epochs,
                     "steps": n_epochs * (size // base.batch_size)})
        if log is not None:
            log(f"{dataset}, {size:,} training images: {rows[-2]['model']} {rows[-2]['test_accuracy']:.2%} "
                f"({rows[-2]['fit_seconds']:.1f} s), resnet {deep['test_accuracy']:.2%} "
                f"({n_epochs} epochs, {deep['fit_seconds']:.0f} s)")
    return rows


def crossing_point(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The training-set size at which the deep model overtakes the traditional one, from
    :func:`learning_curve`'s rows: the deep model is behind (or level) at the size before and
    ahead at every size from there on; the size is interpolated on the log scale where the
    accuracy difference changes sign. None when it does not overtake within the sizes measured
    (ahead at every size, or not ahead at the largest).
    """
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        validate.fail("crossing_point(rows)", rows, "a list of learning_curve rows", TypeError)
    by_kind: dict[str, dict[int, float]] = {"traditional": {}, "deep": {}}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or row.get("kind") not in by_kind or "size" not in row:
            validate.fail(f"crossing_point(rows[{i}])", row,
                          "a dict with 'size', 'kind' ('traditional' or 'deep') and 'test_accuracy'", TypeError)
        by_kind[row["kind"]][int(row["size"])] = float(row["test_accuracy"])
    sizes = sorted(set(by_kind["traditional"]) & set(by_kind["deep"]))
    gaps = [by_kind["deep"][s] - by_kind["traditional"][s] for s in sizes]
    if not gaps or gaps[-1] <= 0 or all(g > 0 for g in gaps):
        return None
    last_behind = max(i for i, g in enumerate(gaps) if g <= 0)
    a, b = sizes[last_behind], sizes[last_behind + 1]
    ga, gb = gaps[last_behind], gaps[last_behind + 1]
    t = -ga / (gb - ga)   # where the straight line between the two gaps crosses zero
    return float(math.exp(math.log(a) + t * (math.log(b) - math.log(a))))


# --------------------------------------------------------------------------- ablations

def _member_models(make_model: Callable, states, count: int) -> list:
    """The trained models of a :func:`~imgmine_jax.train.sweep`, one per member."""
    import jax
    from flax import nnx

    template = make_model(nnx.Rngs(0))
    graphdef = nnx.graphdef(template)
    return [nnx.merge(graphdef, jax.tree.map(lambda x, i=i: x[i], states[0])) for i in range(count)]


def ablate(dataset: str = "mnist", arms: Sequence[str] = tuple(recipes.ABLATIONS), *,
           seeds: Sequence[int] = tuple(_ABLATE["seeds"]), epochs: int = _ABLATE["epochs"],
           train_size: int | None = _ABLATE["train_size"], val_size: int = _ABLATE["val_size"],
           test_size: int | None = None,
           recipe: recipes.ClassifierRecipe = recipes.CLASSIFIER,
           log: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """Each ablation arm (:data:`imgmine_jax.recipes.ABLATIONS`) of the ResNet recipe, trained at
    the same budget -- ``epochs`` epochs (one-cycle warm-up scaled with them) on the first
    ``train_size`` images of notebook 01's training part -- once per seed, and scored on the
    whole test split (its first ``test_size`` images if given) at the last epoch.

    The seeds of an arm train together in one vmapped :func:`imgmine_jax.train.sweep` (the seed
    sets the initial weights and the dropout stream; the batches and augmentation draws are
    shared, so seed-to-seed spread is the spread due to initialisation). The sweep's per-epoch
    validation, only logged, uses the first ``val_size`` validation images. The defaults are
    :data:`imgmine_jax.recipes.ABLATION_BUDGET`.

    Returns one row per arm: ``arm``, ``test_accuracy`` (mean over seeds), ``accuracies`` (per
    seed), ``spread`` (largest minus smallest), ``delta`` (mean minus the ``"full"`` arm's; None
    when ``"full"`` is not among ``arms``), ``train_seconds`` (the sweep's, all seeds).
    """
    names = _names(arms, "ablate(arms)", list(recipes.ABLATIONS))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)) or not seeds:
        validate.fail("ablate(seeds)", seeds, "a non-empty list of integer seeds", TypeError)
    seeds = [validate.integer(s, f"ablate(seeds[{i}])", min=0) for i, s in enumerate(seeds)]
    validate.integer(epochs, "ablate(epochs)", min=1)
    train_part, val_part, test_set = classifier.splits(dataset, recipe)
    val_part = val_part.head(validate.integer(val_size, "ablate(val_size)", min=1, max=len(val_part)))
    test_set = _test_head(test_set, test_size, "ablate(test_size)")
    if train_size is not None:
        validate.integer(train_size, "ablate(train_size)", min=recipe.batch_size, max=len(train_part))
        train_part = train_part.head(train_size)
    rows = []
    for name in names:
        cfg, arch = recipes.ablation(name, dataset, recipe, epochs=epochs)
        config = models.classifier_config("resnet", train_part.num_classes, train_part.image_shape, **arch)
        make_model = lambda rngs, config=config: models.ResNet(**config, rngs=rngs)
        result = train.sweep(make_model, train.Classification.from_config(train_part.num_classes, cfg),
                             train_part.arrays(), val_part.arrays(), cfg, [cfg.learning_rate], seeds,
                             progress=False, log=None)
        accuracies = [metrics.accuracy(test_set.labels, train.predict(m, test_set.images).argmax(-1))
                      for m in _member_models(make_model, result.states, len(seeds))]
        rows.append({"arm": name, "test_accuracy": float(np.mean(accuracies)), "accuracies": accuracies,
                     "spread": float(max(accuracies) - min(accuracies)), "train_seconds": result.train_seconds})
        if log is not None:
            log(f"{dataset} ablation {name}: test accuracy {rows[-1]['test_accuracy']:.2%} "
                f"(seeds {', '.join(f'{a:.2%}' for a in accuracies)}; {result.train_seconds:.0f} s)")
    full = next((r["test_accuracy"] for r in rows if r["arm"] == "full"), None)
    for row in rows:
        row["delta"] = None if full is None else row["test_accuracy"] - full
    return rows


# --------------------------------------------------------------------------- the articles' code

def softmax_twice_floor(num_classes: int) -> float:
    """The smallest cross-entropy a from-logits loss can give a network that outputs probabilities:
    at best the true class has probability 1 and the others 0, whose softmax gives the true class
    ``e / (e + num_classes - 1)``. For ten classes, 1.461."""
    validate.integer(num_classes, "softmax_twice_floor(num_classes)", min=2)
    return float(math.log(math.e + num_classes - 1) - 1)


def article_cnn_config(image_shape: tuple[int, int, int], num_classes: int, convs: Sequence[int],
                       softmax_output: bool = False) -> dict[str, Any]:
    """The constructor arguments of :class:`~imgmine_jax.models.cnn.ArticleCNN` for a dataset."""
    height, _, channels = image_shape
    return {"num_classes": num_classes, "in_channels": channels, "image_size": height, "convs": list(convs),
            "softmax_output": softmax_output}


def fit_article_cnn(convs: Sequence[int], cfg: train.TrainConfig, train_part: data.ImageDataset,
                    val_part: data.ImageDataset, *, log: Callable[[str], None] | None = print) -> train.FitResult:
    """One of the articles' CNNs (``convs``: ``(32, 64)`` for article A, ``(32, 64, 64)`` for C and
    E; Dense(64)) with logits out, trained with ``cfg`` (the articles': Adam 1e-3, batch 32) on
    ``train_part``. The last epoch is kept, as the articles' scripts keep it; ``val_part`` is
    only logged."""
    config = article_cnn_config(train_part.image_shape, train_part.num_classes, convs)
    net = models.build("article_cnn", config, seed=cfg.seed)
    return train.fit(net, train.Classification(train_part.num_classes), train_part.arrays(), val_part.arrays(),
                     cfg, monitor=None, log=log)


def double_softmax_cost(dataset: str = "mnist", *, convs: Sequence[int] = (32, 64, 64),
                        cfg: train.TrainConfig = recipes.ARTICLE_CNN, train_size: int | None = None,
                        test_size: int | None = None, seed: int = 0,
                        log: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """What article C's error costs: its CNN (:class:`~imgmine_jax.models.cnn.ArticleCNN`) with a
    softmax output trained with a from-logits cross-entropy (softmax applied twice), against the
    same network with logits out, from the same initial weights, on the same batches, with the
    article's optimiser (``cfg``: Adam 1e-3, batch 32), on notebook 01's training part (its first
    ``train_size`` images) and scored on the whole test split (its first ``test_size`` images).

    Returns two rows: ``network`` (``"softmax twice (article C)"``, ``"logits (corrected)"``),
    ``softmax_output``, ``test_accuracy``, ``final_train_loss`` (the last epoch's mean),
    ``loss_floor`` (:func:`softmax_twice_floor`: the erroneous network's loss cannot go below
    it), ``train_seconds``.
    """
    if not isinstance(cfg, train.TrainConfig):
        validate.fail("double_softmax_cost(cfg)", cfg, "a TrainConfig", TypeError)
    validate.integer(seed, "double_softmax_cost(seed)", min=0)
    recipe = dataclasses.replace(recipes.CLASSIFIER, seed=seed, train_size=train_size)
    train_part, _, test_set = classifier.splits(dataset, recipe)
    test_set = _test_head(test_set, test_size, "double_softmax_cost(test_size)")
    cfg = dataclasses.replace(cfg, seed=seed)
    floor = softmax_twice_floor(train_part.num_classes)
    rows = []
    for softmax_output, label in ((True, "softmax twice (article C)"), (False, "logits (corrected)")):
        config = article_cnn_config(train_part.image_shape, train_part.num_classes, convs, softmax_output)
        net = models.build("article_cnn", config, seed=seed)
        result = train.fit(net, train.Classification(train_part.num_classes), train_part.arrays(), None, cfg,
                           monitor=None, progress=False, log=None, checkpoint_every=cfg.epochs)
        predictions = train.predict(result.model, test_set.images).argmax(-1)
        rows.append({"network": label, "softmax_output": softmax_output,
                     "test_accuracy": metrics.accuracy(test_set.labels, predictions),
                     "final_train_loss": float(result.history[-1]["train_loss"]), "loss_floor": floor,
                     "train_seconds": result.train_seconds})
        if log is not None:
            log(f"{dataset}, {label}: test accuracy {rows[-1]['test_accuracy']:.2%}, final training loss "
                f"{rows[-1]['final_train_loss']:.4f} (floor of the softmax-twice loss {floor:.4f}), "
                f"{result.train_seconds:.0f} s")
    return rows
