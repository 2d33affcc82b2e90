"""Evaluation metrics: classification reports now; image-quality metrics beside their notebooks."""
from __future__ import annotations

import numpy as np

from imgmine_jax import validate


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of ``predictions`` equal to ``labels``."""
    labels = validate.array(labels, "accuracy(labels)", nonempty=True)
    predictions = validate.array(predictions, "accuracy(predictions)", nonempty=True)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must have one shape")
    return float(np.mean(labels == predictions))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of examples of true class ``i`` predicted as ``j``."""
    num_classes = validate.integer(num_classes, "confusion_matrix(num_classes)", min=1)
    labels = validate.labels(labels, "confusion_matrix(labels)", num_classes=num_classes)
    predictions = validate.labels(predictions, "confusion_matrix(predictions)", num_classes=num_classes,
                                  length=len(labels))
    for name, a in (("labels", labels), ("predictions", predictions)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes - 1}]; got range "
                             f"[{a.min()}, {a.max()}]")
    return np.bincount(labels * num_classes + predictions,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_report(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support for every class from a confusion matrix."""
    validate.confusion(confusion, "per_class_report(confusion)")
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual.astype(int)}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def per_class_markdown(confusion: np.ndarray, class_names) -> str:
    """A Markdown table of precision, recall, F1 and support per class, plus the macro average."""
    rep = per_class_report(confusion)
    if isinstance(class_names, (str, bytes)) or len(class_names) != len(rep["f1"]):
        validate.fail("per_class_markdown(class_names)", class_names, f"{len(rep['f1'])} class names (one per row "
                      f"of the confusion matrix)")
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for i, name in enumerate(class_names):
        lines.append(f"| {name} | {rep['precision'][i]:.4f} | {rep['recall'][i]:.4f} | "
                     f"{rep['f1'][i]:.4f} | {rep['support'][i]} |")
    lines.append(f"| **macro average** | {rep['precision'].mean():.4f} | {rep['recall'].mean():.4f} | "
                 f"{rep['f1'].mean():.4f} | {rep['support'].sum()} |")
    return "\n".join(lines)


def precision_at_k(neighbor_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean fraction of each query's retrieved items (``(N, k)`` labels) that share its label."""
    neighbor_labels = validate.array(neighbor_labels, "precision_at_k(neighbor_labels)", nonempty=True)
    query_labels = validate.array(query_labels, "precision_at_k(query_labels)", ndim=1, nonempty=True)
    if neighbor_labels.ndim != 2 or len(neighbor_labels) != len(query_labels):
        raise ValueError(f"expected neighbour labels (N, k) for N={len(query_labels)} queries; "
                         f"got {neighbor_labels.shape}")
    return float(np.mean(neighbor_labels == query_labels[:, None]))


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Cluster purity: the fraction of examples in their cluster's majority class."""
    labels = validate.array(labels, "purity(labels)", ndim=1, nonempty=True)
    clusters = validate.array(clusters, "purity(clusters)", ndim=1, nonempty=True)
    if labels.shape != clusters.shape:
        raise ValueError(f"labels {labels.shape} and clusters {clusters.shape} must have one shape")
    _, cluster_ids = np.unique(clusters, return_inverse=True)
    _, label_ids = np.unique(labels, return_inverse=True)
    table = np.zeros((cluster_ids.max() + 1, label_ids.max() + 1), dtype=np.int64)
    np.add.at(table, (cluster_ids, label_ids), 1)
    return float(table.max(axis=1).sum() / len(labels))


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5, batch_size: int = 1000) -> np.ndarray:
    """Structural similarity (Wang et al., 2004) of each image pair, ``(N,)``.

    ``a`` and ``b`` are ``(N, H, W)`` or ``(N, H, W, 1)`` grey images on a scale of
    ``data_range``. Gaussian window (11x11, sigma 1.5), K1 = 0.01, K2 = 0.03, the mean of
    the SSIM map over the valid region (the convention of ``tf.image.ssim``).
    """
    import jax
    import jax.numpy as jnp

    validate.ssim_call(a, b, data_range, window, sigma, batch_size)
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs two arrays of one shape; got {a.shape} and {b.shape}")
    if a.ndim == 4 and a.shape[-1] == 1:
        a, b = a[..., 0], b[..., 0]
    if a.ndim != 3 or min(a.shape[1:]) < window:
        raise ValueError(f"ssim expects images (N, H, W) with H, W >= window={window}; got {a.shape}")
    g = np.exp(-0.5 * ((np.arange(window) - (window - 1) / 2) / sigma) ** 2)
    g = g / g.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def band(n):  # the valid 1-D Gaussian filter as an (n - window + 1, n) matrix
        m = np.zeros((n - window + 1, n), np.float32)
        for i in range(len(m)):
            m[i, i:i + window] = g
        return jnp.asarray(m)

    gh, gw = band(a.shape[1]), band(a.shape[2])

    def blur(x):  # separable filter as two matmuls: far faster on CPU than a convolution
        return jnp.einsum("ih,nhw,jw->nij", gh, x, gw, precision=jax.lax.Precision.HIGHEST)

    @jax.jit
    def one(x, y):
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        return s.mean(axis=(1, 2))

    out = [np.asarray(one(a[i:i + batch_size], b[i:i + batch_size])) for i in range(0, len(a), batch_size)]
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


# --------------------------------------------------------------------------- generative models
# "Classifier FID" and "classifier Inception Score": the Frechet Inception Distance (Heusel
# et al., 2017) and Inception Score (Salimans et al., 2016) computed with this project's
# MNIST/Fashion-MNIST classifier in place of the ImageNet Inception network. The numbers
# compare runs of this project with each other; they are NOT comparable with Inception FID
# or IS reported in papers (other features, other classes, other scale).

def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` of a feature matrix ``(N, D)`` (float64)."""
    validate.array(features, "feature_statistics(features)", dtype="number", finite=True)
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"feature_statistics expects at least 2 feature vectors (N, D); got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``. The trace of the matrix square root is
    computed as ``sum(sqrt(eig(S1^(1/2) S2 S1^(1/2))))`` -- a symmetric positive semi-definite
    matrix with the same eigenvalues as ``S1 S2`` -- so it is real and needs no complex
    ``sqrtm`` clean-up; tiny negative eigenvalues from rounding are clipped to zero.
    """
    for name, v in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        validate.array(v, f"frechet_distance({name})", dtype="number", finite=True, nonempty=True)
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"frechet_distance needs means (D,) and covariances (D, D) of one D; got "
                         f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt, 0.0))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets ``(N, D)`` and ``(M, D)``."""
    a = validate.array(a, "fid_from_features(a)", ndim=2, dtype="number", finite=True)
    b = validate.array(b, "fid_from_features(b)", ndim=2, dtype="number", finite=True)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"fid_from_features needs features of one dimension D; got {a.shape} and {b.shape}")
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def inception_score(probs: np.ndarray, splits: int = 1) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` from class probabilities ``(N, K)``; mean over ``splits``.

    1 for identical predictions (e.g. uniform); K for confident predictions spread evenly
    over K classes. ``p(y)`` is the mean prediction within each split.
    """
    validate.integer(splits, "inception_score(splits)", min=1)
    validate.array(probs, "inception_score(probs)", ndim=2, dtype="number", finite=True, nonempty=True)
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) < splits or not np.all(np.isfinite(probs)):
        raise ValueError(f"inception_score expects finite probabilities (N, K) with N >= splits={splits}; "
                         f"got shape {probs.shape}")
    if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("inception_score expects rows of probabilities (non-negative, summing to 1); "
                         "apply a softmax to logits first")
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = np.sum(part * (np.log(part + 1e-12) - np.log(marginal + 1e-12)), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 10.0)) -> float:
    """Temperature scaling (Guo et al., 2017): the ``T`` minimising the NLL of ``softmax(logits / T)``.

    Fit on held-out labelled data. A classifier trained with label smoothing is deliberately
    under-confident (probabilities capped near ``1 - smoothing``), which caps its Inception
    Score far below the number of classes even on real data; calibrated probabilities
    restore the score's meaning (confident and correct -> near K on real data).
    """
    from scipy.optimize import minimize_scalar

    logits = validate.array(logits, "fit_temperature(logits)", ndim=2, dtype="number", finite=True, nonempty=True)
    logits = logits.astype(np.float64)
    labels = validate.labels(labels, "fit_temperature(labels)", num_classes=logits.shape[1], length=len(logits))
    validate.temperature_bounds(bounds)

    def nll(log_t):
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), labels]))

    res = minimize_scalar(nll, bounds=np.log(bounds), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))
