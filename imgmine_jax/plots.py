"""The matplotlib figures the notebooks show and save (via ``Report.figure``).

Every function returns a ``Figure`` with a title and labelled axes; none of them
saves or shows anything by itself.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.rcParams.update({"figure.dpi": 100, "axes.grid": False, "font.size": 9})

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _as_display(images: np.ndarray) -> np.ndarray:
    """uint8 or float images (N, H, W[, C]) -> float (N, H, W) or (N, H, W, 3) in [0, 1]."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.dtype == np.uint8:
        return images / 255.0
    lo, hi = float(images.min()), float(images.max())
    return (images - lo) / (hi - lo + 1e-12) if lo < 0 or hi > 1 else images


def image_grid(images: np.ndarray, *, ncols: int = 10, titles: Sequence[str] | None = None,
               title: str, cmap: str = "gray", size: float = 1.1,
               title_colors: Sequence[str] | None = None) -> plt.Figure:
    """A grid of images with optional per-image captions."""
    images = _as_display(images)
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * (1.25 if titles else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=7,
                             color="black" if title_colors is None else title_colors[i])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning_curves(history: list[dict], *, title: str) -> plt.Figure:
    """Loss and accuracy per epoch (train and validation) and the learning rate."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, metric in zip(axes[:2], ("loss", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            key = f"{split}_{metric}"
            if key in history[0]:
                ax.plot(epochs, [r[key] for r in history], style, ms=3, label=split)
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.legend()
    if "val_accuracy" in history[0]:
        axes[1].set_ylim(max(0.0, min(r["val_accuracy"] for r in history) - 0.01), 1.0)
    axes[2].plot(epochs, [r["lr"] for r in history], "-o", ms=3)
    axes[2].set(xlabel="epoch", ylabel="learning rate (epoch start)", title="schedule")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], *, title: str) -> plt.Figure:
    """Row-normalised confusion matrix with counts off the diagonal."""
    confusion = np.asarray(confusion)
    k = len(class_names)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.5, 0.55 * k + 2))
    im = ax.imshow(np.where(np.eye(k, dtype=bool), np.nan, rates), cmap="Reds")
    for i in range(k):
        for j in range(k):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="black" if i != j else "tab:green")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, label="fraction of the true class (off-diagonal)")
    fig.tight_layout()
    return fig


def misclassified(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                  confidence: np.ndarray, class_names: Sequence[str], *, title: str,
                  limit: int = 40) -> plt.Figure:
    """The misclassified images, most confident mistakes first, captioned true -> predicted."""
    wrong = np.flatnonzero(labels != predictions)
    wrong = wrong[np.argsort(-confidence[wrong])][:limit]
    captions = [f"{class_names[labels[i]]}→{class_names[predictions[i]]}\n{confidence[i]:.0%}"
                for i in wrong]
    return image_grid(images[wrong], titles=captions, ncols=10, title=title)


def filters(kernel: np.ndarray, *, title: str) -> plt.Figure:
    """First-layer 3x3 (or kxk) kernels ``(kh, kw, 1, out)``, each on its own symmetric colour scale."""
    kernel = np.asarray(kernel)[:, :, 0, :]
    n = kernel.shape[-1]
    ncols = min(n, 16)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.7, nrows * 0.7 + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            lim = np.abs(kernel[..., i]).max() + 1e-12
            ax.imshow(kernel[..., i], cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def feature_maps(image: np.ndarray, maps: Sequence[np.ndarray], names: Sequence[str], *,
                 title: str, per_layer: int = 8) -> plt.Figure:
    """One input image and the first ``per_layer`` channels of each layer's activation."""
    fig, axes = plt.subplots(len(maps), per_layer + 1, figsize=((per_layer + 1) * 1.0, len(maps) * 1.1),
                             squeeze=False)
    for row, (fmap, name) in zip(axes, zip(maps, names)):
        row[0].imshow(_as_display(image[None])[0], cmap="gray")
        row[0].set_title("input", fontsize=7)
        for c, ax in enumerate(row[1:]):
            if c < fmap.shape[-1]:
                ax.imshow(fmap[..., c], cmap="viridis")
            ax.set_title(f"{name}[{c}]" if c == 0 else f"[{c}]", fontsize=7)
        for ax in row:
            ax.axis("off")
        row[1].text(-0.3, 0.5, f"{name}\n{fmap.shape[0]}x{fmap.shape[1]}x{fmap.shape[2]}",
                    transform=row[1].transAxes, ha="right", va="center", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def bar(labels: Sequence[str], values: Sequence[float], *, title: str, ylabel: str,
        xlabel: str = "", ylim: tuple[float, float] | None = None, fmt: str = "{:.4f}") -> plt.Figure:
    """A labelled bar chart with the value written on each bar."""
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(labels) + 2), 3.4))
    bars = ax.bar(range(len(labels)), values, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), fmt.format(v), ha="center", va="bottom", fontsize=7)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel)
    fig.tight_layout()
    return fig


def scatter_2d(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, title: str,
               xlabel: str, ylabel: str, max_points: int = 5000) -> plt.Figure:
    """A 2-D map of points coloured by class."""
    points, labels = np.asarray(points)[:max_points], np.asarray(labels)[:max_points]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for c, name in enumerate(class_names):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=3, alpha=0.6, label=name, color=plt.cm.tab10(c % 10))
    ax.legend(markerscale=4, fontsize=7, loc="best")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.tight_layout()
    return fig


def histogram(samples: dict[str, np.ndarray], *, bins: int = 64, title: str, xlabel: str,
              log: bool = True) -> plt.Figure:
    """Overlaid normalised histograms, one per named sample."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, values in samples.items():
        ax.hist(np.ravel(values), bins=bins, alpha=0.55, density=True, label=name, log=log)
    ax.legend()
    ax.set(title=title, xlabel=xlabel, ylabel="density" + (" (log scale)" if log else ""))
    fig.tight_layout()
    return fig


def grouped_bars(groups: Sequence[str], series: dict[str, Sequence[float]], *, title: str,
                 ylabel: str) -> plt.Figure:
    """Bars for several named series side by side per group (e.g. class counts per dataset)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(groups) + 2), 3.4))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(range(len(groups)), groups)
    ax.legend()
    ax.set(title=title, ylabel=ylabel)
    fig.tight_layout()
    return fig
