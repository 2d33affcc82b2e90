"""Mining an image collection with what a classifier learned.

A trained classifier maps every image to its penultimate activations, an *embedding*
in which images the network finds alike lie close together. On top of it, and on raw
pixels for comparison:

* :func:`embed` -- embeddings of a whole dataset, batched and jitted;
* :func:`nearest_neighbors` -- k-nearest-neighbour retrieval (scikit-learn, exact);
* :func:`kmeans` and :func:`cluster_scores` -- k-means, NMI and purity;
* :func:`map_2d` -- a 2-D map of the embedding (t-SNE or PCA);
* :func:`neighbor_disagreement` -- how many of a point's neighbours carry another label
  (points that sit in another class's region of the map);
* :func:`sparsity` -- mean distance to the k nearest neighbours: low embedding density,
  i.e. outliers;
* :func:`out_of_fold_probabilities`, :func:`label_noise_ranking` and
  :func:`confident_learning_issues` -- label-noise discovery in the spirit of confident
  learning (Northcutt, Jiang & Chuang, 2021): every training image is scored by a model
  that never saw it, and images whose given label that model finds unlikely come first.

Distances are cosine (on L2-normalised vectors) unless asked otherwise: the length of a
ReLU embedding mostly says how *strongly* a network responds, not to what.

scikit-learn runs with :data:`SKLEARN_THREADS` OpenMP/BLAS threads (default one): on a
2-core CPU shared with other jobs, OpenMP's spin-waiting threads made k-means and t-SNE
several times slower than a single thread. Set it to ``None`` for all cores on a quiet
machine.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable

import numpy as np
from flax import nnx

from imgmine_jax import data as data_lib
from imgmine_jax import metrics, models, recipes, train

#: OpenMP/BLAS threads for the scikit-learn calls here (None: the library's default, all cores).
SKLEARN_THREADS: int | None = 1


def _sklearn_threads() -> contextlib.AbstractContextManager:
    from threadpoolctl import threadpool_limits

    return threadpool_limits(SKLEARN_THREADS) if SKLEARN_THREADS is not None else contextlib.nullcontext()


# --------------------------------------------------------------------------- embeddings


def embed(model: nnx.Module, images: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
    """Penultimate-layer embeddings ``(N, D)`` float32 of uint8 images ``(N, H, W, C)``.

    Works for every classifier with a ``features(x)`` method (all of
    :data:`imgmine_jax.models.REGISTRY`). Runs in eval mode (running batch-norm
    statistics, no dropout), so an image's embedding does not depend on its batch; one
    jitted program over fixed-size batches (the last one padded) covers the dataset.
    """
    if not callable(getattr(model, "features", None)):
        raise TypeError(f"embed needs a classifier with a features(x) method (one of "
                        f"{sorted(models.REGISTRY)}); got {type(model).__name__}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    out = train.predict(model, images, batch_size=batch_size, fn=lambda m, x: m.features(x))
    return np.asarray(out, dtype=np.float32)


def pixels(images: np.ndarray) -> np.ndarray:
    """Raw-pixel vectors ``(N, H*W*C)`` in [0, 1]: the baseline 'embedding'."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"pixels expects images of shape (N, H, W, C); got {images.shape}")
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


# --------------------------------------------------------------------------- retrieval


def nearest_neighbors(index: np.ndarray, queries: np.ndarray | None = None, *, k: int = 10,
                      metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``index`` (exact search) for every query.

    ``metric``: ``"cosine"`` (distance ``1 - cos``; embeddings) or ``"euclidean"`` (L2;
    e.g. :func:`pixels`, to find the training image closest to a generated one).
    Returns ``(distances, indices)``, each ``(num_queries, k)``, nearest first. With
    ``queries=None`` every row of ``index`` is its own query and is *left out* of its
    neighbours (leave-one-out, as precision@k needs); a query that is also in
    ``index`` otherwise finds itself first, at distance 0.
    """
    from sklearn.neighbors import NearestNeighbors

    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean'; got {metric!r}")
    cosine = metric == "cosine"
    index = l2_normalize(index) if cosine else np.asarray(index, dtype=np.float32)
    limit = len(index) - (1 if queries is None else 0)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= limit:
        raise ValueError(f"k must be an integer in [1, {limit}] for an index of {len(index)} rows; got {k!r}")
    # Euclidean on unit vectors ranks exactly like cosine distance (|a-b|^2 = 2 - 2cos),
    # and sklearn's brute-force euclidean path is a BLAS matrix product.
    if queries is not None:
        queries = l2_normalize(queries) if cosine else np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != index.shape[1]:
            raise ValueError(f"queries must have shape (M, {index.shape[1]}) like the index; got {queries.shape}")
    with _sklearn_threads():
        nn = NearestNeighbors(n_neighbors=int(k), algorithm="brute", metric="euclidean").fit(index)
        dist, idx = nn.kneighbors(queries)   # queries=None: leave-one-out over the index
    if cosine:
        dist = dist ** 2 / 2.0              # back to cosine distance 1 - cos
    return dist.astype(np.float32), idx


def precision_at_k(index: np.ndarray, labels: np.ndarray, *, k: int = 10) -> float:
    """Leave-one-out precision@k of ``index`` as its own query set (see :func:`metrics.precision_at_k`)."""
    labels = np.asarray(labels)
    if len(labels) != len(index):
        raise ValueError(f"expected one label per row of the index ({len(index)}); got {len(labels)}")
    _, idx = nearest_neighbors(index, k=k)
    return metrics.precision_at_k(labels[idx], labels)


# --------------------------------------------------------------------------- clustering and maps


def kmeans(x: np.ndarray, k: int = 10, *, seed: int = 0, n_init: int = 4) -> np.ndarray:
    """Cluster ids ``(N,)`` from k-means (k-means++ init, best of ``n_init``) on L2-normalised rows."""
    from sklearn.cluster import KMeans

    if not isinstance(k, (int, np.integer)) or not 2 <= k <= len(x):
        raise ValueError(f"k must be an integer in [2, {len(x)}]; got {k!r}")
    with _sklearn_threads():
        return KMeans(n_clusters=int(k), n_init=n_init, random_state=seed).fit_predict(l2_normalize(x))


def cluster_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """Normalised mutual information and purity of a clustering against the class labels."""
    from sklearn.metrics import normalized_mutual_info_score

    return {"nmi": float(normalized_mutual_info_score(labels, clusters)),
            "purity": metrics.purity(labels, clusters)}


def pca(x: np.ndarray, dims: int, *, seed: int = 0) -> np.ndarray:
    """The rows of ``x`` projected on their first ``dims`` principal components (at most the
    rank the data allows), float32."""
    from sklearn.decomposition import PCA

    with _sklearn_threads():
        return PCA(n_components=min(dims, *x.shape), random_state=seed).fit_transform(x).astype(np.float32)


MAP_METHODS = ("tsne", "pca")


def map_2d(x: np.ndarray, method: str = "tsne", *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """A 2-D map ``(N, 2)`` of L2-normalised rows: t-SNE (PCA-initialised) or PCA.

    t-SNE keeps neighbourhoods and separates the classes visually; its cost grows like
    N log N (Barnes-Hut) -- a few thousand points take tens of seconds on two cores.
    PCA is instant and keeps global distances, but crowds ten classes into two axes.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in MAP_METHODS:
        raise ValueError(f"method must be one of {MAP_METHODS}; got {method!r}")
    x = l2_normalize(x)
    with _sklearn_threads():
        if method == "pca":
            return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32)
        tsne = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), init="pca",
                    random_state=seed)
        return tsne.fit_transform(x).astype(np.float32)


def neighbor_disagreement(x: np.ndarray, labels: np.ndarray, *, k: int = 10) -> np.ndarray:
    """Fraction ``(N,)`` of each point's k nearest neighbours whose label differs from its own.

    1.0 means the point sits wholly inside another class's region: on a map these are
    the misplaced points, and often images that look like the other class.
    """
    labels = np.asarray(labels)
    _, idx = nearest_neighbors(x, k=k)
    return (labels[idx] != labels[:, None]).mean(axis=1)


def sparsity(x: np.ndarray, *, k: int = 10) -> np.ndarray:
    """Mean cosine distance ``(N,)`` to the k nearest other points: high = low density = outlier.

    The k-NN distance is the simplest density estimate (density ~ 1 / distance^d); ranking
    by it needs no bandwidth and no assumption about the shape of the classes.
    """
    dist, _ = nearest_neighbors(x, k=k)
    return dist.mean(axis=1)


# --------------------------------------------------------------------------- label noise


@dataclasses.dataclass
class OutOfFold:
    """Out-of-fold predictions: every example scored by the model that did not train on it."""

    labels: np.ndarray              # (N,) the given labels
    probabilities: np.ndarray       # (N, classes) softmax of the held-out model
    fold: np.ndarray                # (N,) which fold held the example out
    fold_accuracy: list[float]      # held-out accuracy of each fold's model (against the given labels)
    seconds: float                  # wall time of training and predicting all folds

    @property
    def accuracy(self) -> float:
        """Agreement of the out-of-fold predictions with the given labels."""
        return metrics.accuracy(self.labels, self.probabilities.argmax(-1))


def out_of_fold_probabilities(dataset: data_lib.ImageDataset, *, folds: int = 4, model: str = "seed_cnn",
                              cfg: train.TrainConfig = recipes.LABEL_NOISE_FOLDS, seed: int = 0,
                              model_kwargs: dict | None = None, progress: bool | None = None,
                              log: Callable[[str], None] | None = print) -> OutOfFold:
    """K-fold cross-validated class probabilities for every example of ``dataset``.

    The examples are split into ``folds`` stratified folds (seeded); for each fold a
    fresh ``model`` is trained with :func:`imgmine_jax.train.fit` on the other folds
    (``cfg``, no validation split: the last epoch is kept) and predicts the held-out
    fold. An example's label is never seen by the model that scores it, so a model
    that disagrees with the label is evidence against the label, not memorisation.

    The folds run one after another. They could be stacked and trained by one
    ``jax.vmap``-ed step (each member gathering its own batch indices), but on a 2-core
    CPU notebook 01's vmapped SeedCNN sweep runs no faster than sequential runs (its
    ``metrics.json`` records the ratio), so here sequential folds are the simple path. On
    an accelerator, stacking the folds would be worth it.
    """
    from sklearn.model_selection import StratifiedKFold

    if not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")
    counts = dataset.class_counts()
    if counts[counts > 0].min() < folds:
        raise ValueError(f"every class needs at least folds={folds} examples for stratified folds; "
                         f"smallest class has {counts[counts > 0].min()}")
    cfg = dataclasses.replace(cfg, seed=seed)
    config = models.classifier_config(model, dataset.num_classes, dataset.image_shape, **(model_kwargs or {}))
    task = train.Classification.from_config(dataset.num_classes, cfg)
    probabilities = np.zeros((len(dataset), dataset.num_classes), dtype=np.float32)
    fold_of = np.full(len(dataset), -1, dtype=np.int32)
    fold_accuracy = []
    t0 = time.perf_counter()
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=seed)
    for f, (train_idx, held_idx) in enumerate(splitter.split(np.zeros(len(dataset)), dataset.labels)):
        net = models.build(model, config, seed=seed + f)
        fold_cfg = dataclasses.replace(cfg, seed=seed + f)
        # monitor the training loss: with no validation split, keep the epoch that fits best
        result = train.fit(net, task, dataset.take(train_idx).arrays(), None, fold_cfg,
                           monitor="train_loss", progress=progress, log=None)
        probabilities[held_idx] = metrics.softmax(train.predict(result.model, dataset.images[held_idx]))
        fold_of[held_idx] = f
        fold_accuracy.append(metrics.accuracy(dataset.labels[held_idx], probabilities[held_idx].argmax(-1)))
        if log is not None:
            log(f"fold {f + 1}/{folds}: trained on {len(train_idx):,}, held-out accuracy "
                f"{fold_accuracy[-1]:.2%} on {len(held_idx):,} ({result.train_seconds:.0f} s)")
    return OutOfFold(labels=np.asarray(dataset.labels), probabilities=probabilities, fold=fold_of,
                     fold_accuracy=fold_accuracy, seconds=time.perf_counter() - t0)


def given_label_probability(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p(given label)`` per example: the *self-confidence* of confident learning (low = suspicious)."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if probabilities.ndim != 2 or labels.shape != (len(probabilities),):
        raise ValueError(f"expected probabilities (N, classes) and labels (N,); got "
                         f"{probabilities.shape} and {labels.shape}")
    return probabilities[np.arange(len(labels)), labels]


def label_noise_ranking(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Example indices, most suspicious label first.

    Sorted by the out-of-fold probability of the given label (ascending); ties -- many
    clear mislabels sit at p ~ 0 in float32 -- are broken by the margin of the most
    likely *other* class over the given one (larger first).
    """
    p_given = given_label_probability(probabilities, labels)
    others = np.asarray(probabilities, dtype=np.float64).copy()
    others[np.arange(len(labels)), labels] = -np.inf
    margin = others.max(axis=1) - p_given
    return np.lexsort((-margin, p_given))


def confident_learning_issues(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Boolean mask of likely label errors by the confident-joint rule (Northcutt et al., 2021).

    Each class ``j`` gets a threshold ``t_j``: the mean ``p_j`` over examples labelled
    ``j`` (how confident the models are on that class when the label is right, on
    average). An example is *confidently* of class ``j`` if ``p_j >= t_j``; it is
    flagged when the most probable such class is not its given label.
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    classes = probabilities.shape[1]
    thresholds = np.array([probabilities[labels == j, j].mean() if np.any(labels == j) else 1.0
                           for j in range(classes)])
    confident = np.where(probabilities >= thresholds, probabilities, -np.inf)
    has_any = np.isfinite(confident).any(axis=1)
    return has_any & (confident.argmax(axis=1) != labels)
