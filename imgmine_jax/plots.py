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


def _epoch_axis(ax, epochs: Sequence[int]) -> None:
    """Epochs are whole numbers: no 0.5-epoch ticks on a 3-epoch curve, no 0.95-1.05 on one epoch."""
    from matplotlib.ticker import MaxNLocator

    epochs = sorted(set(int(e) for e in epochs))
    if len(epochs) <= 12:
        ax.set_xticks(epochs)
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


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
        ax.legend(loc="best")
    # Zoom the accuracy panel onto the curves, but keep every point in view (the first
    # epoch's training accuracy is usually the lowest).
    shown = [r[k] for r in history for k in ("train_accuracy", "val_accuracy") if k in r]
    if shown:
        axes[1].set_ylim(max(0.0, min(shown) - 0.01), min(1.0, max(shown) + 0.005) + 0.002)
    axes[2].plot(epochs, [r["lr"] for r in history], "-o", ms=3)
    axes[2].set(xlabel="epoch", ylabel="learning rate (epoch start)", title="schedule")
    for ax in axes:
        _epoch_axis(ax, epochs)
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
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0,
                  ha="right" if len(labels) > 6 else "center")
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
    ax.legend(markerscale=4, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))   # off the points
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
    # Beside the axes, not on them: bars fill the plot up to its top edge.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set(title=title, ylabel=ylabel)
    fig.tight_layout()
    return fig


def retrieval_grid(query_images: np.ndarray, query_labels: np.ndarray,
                   results: dict[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str], *,
                   title: str, size: float = 0.9) -> plt.Figure:
    """Queries and their top-k neighbours, one row per query and search space.

    ``results`` maps a space name to ``(neighbour_images (Q, k, H, W[, C]), neighbour_labels (Q, k))``.
    Neighbours of another class than the query are framed and captioned in red.
    """
    queries = _as_display(query_images)
    spaces = list(results)
    k = next(iter(results.values()))[1].shape[1]
    nrows = len(queries) * len(spaces)
    fig, axes = plt.subplots(nrows, k + 2, figsize=((k + 2) * size, nrows * size * 1.05 + 0.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 0.9] + [1] * k})
    for q in range(len(queries)):
        for s, space in enumerate(spaces):
            row = axes[q * len(spaces) + s]
            images, labels = results[space]
            shown = _as_display(images[q])
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
            if s == 0:
                row[0].imshow(queries[q], cmap="gray", vmin=0, vmax=1)
                row[0].set_title(f"query: {class_names[query_labels[q]]}", fontsize=7)
            else:
                row[0].axis("off")
            row[1].axis("off")
            row[1].text(0.95, 0.5, space, fontsize=7, ha="right", va="center", transform=row[1].transAxes)
            for j in range(k):
                ax = row[j + 2]
                ax.imshow(shown[j], cmap="gray", vmin=0, vmax=1)
                wrong = labels[q, j] != query_labels[q]
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:red" if wrong else "0.8")
                    spine.set_linewidth(2.0 if wrong else 0.5)
                if wrong:
                    ax.set_title(class_names[labels[q, j]], fontsize=6, color="tab:red", pad=2)
    fig.suptitle(title)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.45 / (nrows * size * 1.05 + 0.6),
                        wspace=0.08, hspace=0.35)
    return fig


def labelled_map(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, title: str,
                 xlabel: str, ylabel: str, highlight: Sequence[int] = (), images: np.ndarray | None = None,
                 captions: Sequence[str] | None = None) -> plt.Figure:
    """A 2-D map coloured by class, with the ``highlight`` points ringed and shown as captioned thumbnails."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage, TextArea, VPacker

    points, labels = np.asarray(points), np.asarray(labels)
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    for c, name in enumerate(class_names):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=3, alpha=0.5, label=name, color=plt.cm.tab10(c % 10))
    # class names at their medians, so the map reads without the legend
    for c, name in enumerate(class_names):
        sel = labels == c
        if sel.any():
            x, y = np.median(points[sel], axis=0)
            ax.text(x, y, name, fontsize=8, weight="bold", ha="center", va="center",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": plt.cm.tab10(c % 10), "alpha": 0.8})
    highlight = list(highlight)
    if highlight:
        ax.scatter(points[highlight, 0], points[highlight, 1], s=60, facecolors="none", edgecolors="black",
                   linewidths=1.2, zorder=3)
        lo, hi = points.min(axis=0), points.max(axis=0)
        centre, span = (lo + hi) / 2, (hi - lo)
        shown = _as_display(images[highlight]) if images is not None else None
        # thumbnails sit evenly spaced on a ring around the map, in the angular order of
        # their points, rotated to stay as close as possible to each point's own direction
        offsets = (points[highlight] - centre) / np.maximum(span, 1e-9)
        angles = np.arctan2(offsets[:, 1], offsets[:, 0])
        order = np.argsort(angles)
        even = 2 * np.pi * np.arange(len(highlight)) / len(highlight)
        shift = np.angle(np.mean(np.exp(1j * (angles[order] - even))))
        slots = np.empty(len(highlight))
        slots[order] = shift + even
        for n, i in enumerate(highlight):
            box = [TextArea(captions[n] if captions is not None else class_names[labels[i]],
                            textprops={"fontsize": 7})]
            if shown is not None:
                box.insert(0, OffsetImage(shown[n], cmap="gray", zoom=1.0))
            where = centre + np.array([np.cos(slots[n]), np.sin(slots[n])]) * span * 0.66
            ab = AnnotationBbox(VPacker(children=box, align="center", pad=0, sep=1), points[i],
                                xybox=tuple(where), xycoords="data",
                                arrowprops={"arrowstyle": "-", "color": "0.3", "lw": 0.7},
                                bboxprops={"ec": "0.5", "lw": 0.5}, annotation_clip=False)
            ax.add_artist(ab)
        ax.set_xlim(lo[0] - 0.35 * span[0], hi[0] + 0.35 * span[0])
        ax.set_ylim(lo[1] - 0.35 * span[1], hi[1] + 0.35 * span[1])
    ax.legend(markerscale=4, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- sequences (notebook 02)

def accuracy_after_rows(curves: dict[str, np.ndarray], *, title: str) -> plt.Figure:
    """Test accuracy after reading the top k rows, one line per model."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name, acc in curves.items():
        acc = np.asarray(acc)
        ax.plot(np.arange(1, len(acc) + 1), acc, "-o", ms=3, label=name)
    ax.axhline(0.1, color="gray", lw=0.8, ls=":", label="chance")
    ax.set(title=title, xlabel="rows read (k)", ylabel="test accuracy", ylim=(0, 1.01))
    ax.legend()
    fig.tight_layout()
    return fig


def completion_grid(truth: np.ndarray, completions: dict[str, np.ndarray], given_rows: int, *,
                    title: str) -> plt.Figure:
    """One column per digit; rows: the real image, then each method's completion.

    A red line marks where the given rows end and the predicted ones begin.
    """
    rows = {"real": np.asarray(truth, np.float32), **{k: np.asarray(v) for k, v in completions.items()}}
    n = len(rows["real"])
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 0.95 + 0.4), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            ax.axhline(given_rows - 0.5, color="red", lw=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def frame_strips(observed: np.ndarray, truth: np.ndarray, predictions: dict[str, np.ndarray], *,
                 title: str, every: int = 1) -> plt.Figure:
    """For each sequence: observed frames, true future, and each method's predicted future.

    ``observed`` ``(N, T, S, S)``, ``truth`` and every prediction ``(N, F, S, S)``, in
    [0, 1] or uint8. Every ``every``-th frame is shown; each strip is one image (frames
    side by side, separated by a grey line), so the figure stays cheap to draw.
    """
    def strip(x):
        x = np.asarray(x)
        x = (x / 255.0 if x.dtype == np.uint8 else x)[::every]
        t, s = x.shape[:2]
        out = np.full((s, t * (s + 2) - 2), 0.5, np.float32)
        for k in range(t):
            out[:, k * (s + 2):k * (s + 2) + s] = x[k]
        return out

    strips = []
    for i in range(len(observed)):
        strips.append((f"#{i + 1} observed", strip(observed[i])))
        strips.append(("true future", strip(truth[i])))
        for name, pred in predictions.items():
            strips.append((name, strip(pred[i])))
    width = max(s.shape[1] for _, s in strips)
    fig, axes = plt.subplots(len(strips), 1, figsize=(width / 64 * 0.85, len(strips) * 0.9 + 0.4), squeeze=False)
    for ax, (name, image) in zip(axes[:, 0], strips):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, extent=(0, image.shape[1], image.shape[0], 0))
        ax.set_xlim(0, width)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(False)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def horizon_curves(series: dict[str, dict[str, np.ndarray]], *, title: str,
                   references: dict[str, float] | None = None) -> plt.Figure:
    """Per-frame MSE, MAE (where given) and SSIM against the prediction horizon, one line per method.

    ``series[name] = {"mse": (F,), "ssim": (F,)[, "mae": (F,)]}``; ``references`` are
    horizontal lines on the MSE panel (e.g. published mean per-frame MSEs).
    """
    panels = [("mse", "MSE per frame (lower is better)", "sum of squared errors over the pixels")]
    if all("mae" in v for v in series.values()):
        panels.append(("mae", "MAE per frame (lower is better)", "sum of absolute errors over the pixels"))
    panels.append(("ssim", "SSIM (higher is better)", "SSIM"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6))
    for name, values in series.items():
        for ax, (key, _, _) in zip(axes, panels):
            v = np.asarray(values[key])
            ax.plot(np.arange(1, len(v) + 1), v, "-o", ms=3, label=name)
    for i, (name, value) in enumerate((references or {}).items()):
        axes[0].axhline(value, color="gray", lw=0.8, ls=("--", ":", "-.")[i % 3], label=name)
    for ax, (_, panel_title, ylabel) in zip(axes, panels):
        ax.set(title=panel_title, xlabel="horizon (frames ahead)", ylabel=ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def validation_against_time(histories: dict[str, list[dict]], metric: str = "val_mse", *, title: str,
                            ylabel: str | None = None, references: dict[str, float] | None = None) -> plt.Figure:
    """``metric`` after each epoch against the cumulative training time, one line per run:
    runs of different cost compared at equal time, and whether each was still improving."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, history in histories.items():
        t = np.cumsum([r["seconds"] for r in history]) / 60.0
        ax.plot(t, [r[metric] for r in history], "-o", ms=4, label=name)
    for i, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, color="gray", lw=0.8, ls=("--", ":", "-.")[i % 3], label=name)
    ax.set(xlabel="training time (minutes)", ylabel=ylabel or metric, title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def gan_curves(history: list[dict], *, title: str, reference_fid: float | None = None,
               real_is: float | None = None) -> plt.Figure:
    """A GAN's training per epoch: D and G losses, mean D(x) and D(G(z)), classifier FID and IS."""
    epochs = [r["epoch"] for r in history]
    col = lambda k: [r[k] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(epochs, col("train_d_loss"), "-o", ms=3, label="discriminator")
    axes[0].plot(epochs, col("train_g_loss"), "-s", ms=3, label="generator")
    axes[0].set(xlabel="epoch", ylabel="mean loss (non-saturating)", title="losses")
    axes[0].legend()
    axes[1].plot(epochs, col("train_d_real"), "-o", ms=3, label="D(x), real")
    axes[1].plot(epochs, col("train_d_fake"), "-s", ms=3, label="D(G(z)), generated")
    axes[1].axhline(0.5, color="gray", lw=0.8, ls=":")
    axes[1].set(xlabel="epoch", ylabel="mean discriminator output", title="discriminator outputs", ylim=(0, 1))
    axes[1].legend()
    if "fid" in history[0]:
        ax = axes[2]
        ax.plot(epochs, col("fid"), "-o", ms=3, color="tab:red", label="classifier FID")
        if reference_fid is not None:
            ax.axhline(reference_fid, color="tab:red", ls="--", lw=0.8, label="real vs real FID")
        ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel="classifier FID (log scale)", title="sample quality")
        ax2 = ax.twinx()
        ax2.plot(epochs, col("is"), "-s", ms=3, color="tab:blue", label="classifier IS")
        if real_is is not None:
            ax2.axhline(real_is, color="tab:blue", ls="--", lw=0.8, label="real test IS")
        ax2.set_ylabel("classifier Inception Score")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        # Two y-axes share the panel, so no spot inside is free of both: the legend goes below.
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    else:
        axes[2].axis("off")
    for ax in axes:
        _epoch_axis(ax, epochs)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def tile(images: np.ndarray, ncols: int, pad: int = 2, value: int = 255) -> np.ndarray:
    """uint8 images ``(N, H, W[, 1])`` -> one uint8 mosaic ``(rows*(H+pad)+pad, ncols*(W+pad)+pad)``."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    n, h, w = images.shape
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), value, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return out


def animated_grid(frames: Sequence[np.ndarray], captions: Sequence[str], *, ncols: int = 8,
                  scale: int = 2, seconds_per_frame: float = 0.6) -> bytes:
    """An animated GIF (bytes) of image grids, one frame per entry of ``frames`` (uint8 ``(N, H, W[, 1])``).

    Digits are drawn white on black as in the data; each frame carries its caption (e.g. the
    epoch) on a strip at the top. The last frame is held three times as long.
    """
    import io

    from PIL import Image, ImageDraw

    if not frames or len(frames) != len(captions):
        raise ValueError(f"animated_grid needs one caption per frame; got {len(frames)} frames and "
                         f"{len(captions)} captions")
    pictures = []
    for images, caption in zip(frames, captions):
        mosaic = tile(images, ncols, value=128)
        img = Image.fromarray(mosaic).resize((mosaic.shape[1] * scale, mosaic.shape[0] * scale), Image.NEAREST)
        canvas = Image.new("L", (img.width, img.height + 16), 255)
        canvas.paste(img, (0, 16))
        ImageDraw.Draw(canvas).text((4, 2), caption, fill=0)
        pictures.append(canvas.convert("P"))
    durations = [int(seconds_per_frame * 1000)] * (len(pictures) - 1) + [int(seconds_per_frame * 3000)]
    buf = io.BytesIO()
    pictures[0].save(buf, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return buf.getvalue()


def show_gif(gif: bytes, *, alt: str) -> None:
    """Display an animated GIF inline in a way every renderer shows.

    nbconvert's HTML and Sphinx/myst-nb render no ``image/gif`` output (a page would show
    ``<IPython.core.display.Image object>``), so the output also carries an ``<img>`` with the
    GIF as a data URI, which both prefer; ``image/gif`` stays for JupyterLab and code hosts.
    """
    from IPython.display import display

    display(gif_bundle(gif, alt=alt), raw=True)


def gif_bundle(gif: bytes, *, alt: str) -> dict[str, str]:
    """The MIME bundle :func:`show_gif` displays: ``image/gif``, ``text/html`` and ``text/plain``."""
    import base64
    import html

    if not gif.startswith(b"GIF8"):
        raise ValueError(f"show_gif needs GIF bytes (starting with b'GIF8'); got {gif[:8]!r}")
    encoded = base64.b64encode(gif).decode()
    return {"image/gif": encoded,
            "text/html": f'<img src="data:image/gif;base64,{encoded}" alt="{html.escape(alt)}">',
            "text/plain": f"[animated GIF: {alt}]"}


def image_pairs(top: np.ndarray, bottom: np.ndarray, *, title: str, top_label: str, bottom_label: str,
                captions: Sequence[str] | None = None, size: float = 1.0) -> plt.Figure:
    """Two aligned rows of images (e.g. generated samples above their nearest training images)."""
    top, bottom = _as_display(top), _as_display(bottom)
    n = len(top)
    fig, axes = plt.subplots(2, n, figsize=(n * size, 2 * size + 0.6), squeeze=False)
    for i in range(n):
        for row, imgs in ((0, top), (1, bottom)):
            ax = axes[row, i]
            ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        if captions is not None:
            axes[1, i].set_xlabel(captions[i], fontsize=7)
    axes[0, 0].set_ylabel(top_label, fontsize=8)
    axes[1, 0].set_ylabel(bottom_label, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def interactive(show, options, *, description: str = "example"):
    """In JupyterLab, an ``ipywidgets`` control that redraws ``show(value)`` for the chosen value.

    ``options``: a ``range`` (a slider) or a sequence of values (a drop-down). Where looking
    is the point -- one test image, one query -- the reader picks another one; the page the
    runner renders keeps the static figure the notebook saved, so in a runner's kernel
    (``$IMGMINE_OUTPUT_DIR`` set) this draws the first option once, closes it unseen (a
    broken control fails the run, not a reader's session) and returns None. Returns the control.
    """
    import os

    if isinstance(options, range):
        if len(options) == 0:
            raise ValueError(f"interactive: options must not be empty; got {options!r}")
    else:
        options = list(options)
        if not options:
            raise ValueError("interactive: options must not be empty; got an empty sequence")
    if os.environ.get("IMGMINE_OUTPUT_DIR"):
        fig = show(options[0])
        if fig is not None:
            plt.close(fig)
        return None
    import ipywidgets as widgets
    from IPython.display import display

    if isinstance(options, range):
        control = widgets.IntSlider(value=options.start, min=options.start, max=options[-1], step=options.step,
                                    description=description, continuous_update=False)
    else:
        control = widgets.Dropdown(options=options, value=options[0], description=description)
    out = widgets.Output()

    def redraw(change=None):
        with out:
            out.clear_output(wait=True)
            fig = show(control.value)
            if fig is not None:
                plt.show()

    control.observe(redraw, names="value")
    redraw()
    display(widgets.VBox([control, out]))
    return control


# --------------------------------------------------------------------------- notebook 05
# baselines, learning curve, ablations

def learning_curve_plot(rows: Sequence[dict], *, title: str, crossing: float | None = None) -> plt.Figure:
    """Test accuracy against training-set size (log scale) per model, from
    :func:`imgmine_jax.baselines.learning_curve`'s rows; ``crossing`` (its
    :func:`~imgmine_jax.baselines.crossing_point`) is marked by a dashed line."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for model in dict.fromkeys(r["model"] for r in rows):
        points = sorted((r["size"], r["test_accuracy"]) for r in rows if r["model"] == model)
        ax.plot(*zip(*points), "-o", ms=4, label=model)
    if crossing is not None:
        ax.axvline(crossing, color="gray", ls="--", lw=1)
        ax.annotate(f"crossing ≈ {crossing:,.0f} images", (crossing, 0.02), xycoords=("data", "axes fraction"),
                    xytext=(4, 0), textcoords="offset points", fontsize=8, color="gray")
    ax.set_xscale("log")
    ax.set(xlabel="training images (log scale)", ylabel="test accuracy", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def ablation_plot(rows: Sequence[dict], *, title: str) -> plt.Figure:
    """Each ablation arm's change of test accuracy against the full recipe (percentage points),
    from :func:`imgmine_jax.baselines.ablate`'s rows: a bar at the mean over seeds, one dot per
    seed, so the seed-to-seed spread is seen next to the effect."""
    full = next(r for r in rows if r["arm"] == "full")
    arms = [r for r in rows if r["arm"] != "full"]
    fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.55 * max(len(arms), 1)))
    y = np.arange(len(arms))
    ax.barh(y, [100 * r["delta"] for r in arms], color="tab:blue", alpha=0.6, label="mean over seeds")
    for i, r in enumerate(arms):
        deltas = [100 * (a - full["test_accuracy"]) for a in r["accuracies"]]
        ax.plot(deltas, [i] * len(deltas), "k.", ms=6, label="one seed" if i == 0 else None)
    full_spread = [100 * (a - full["test_accuracy"]) for a in full["accuracies"]]
    ax.axvspan(min(full_spread), max(full_spread), color="gray", alpha=0.2, label="full recipe's seed spread")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [r["arm"] for r in arms])
    ax.invert_yaxis()
    ax.set(xlabel="change of test accuracy vs the full recipe (percentage points)", title=title)
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- notebook 05: attributions and robustness

def _accuracy_figure(fig: plt.Figure, ax, *, xlabel: str, title: str) -> plt.Figure:
    """Finish an accuracy-against-strength plot: accuracy on [0, 1], the legend outside, right."""
    ax.set_ylim(0, 1.02)
    ax.set(xlabel=xlabel, ylabel="accuracy", title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def _map_2d(m: np.ndarray) -> np.ndarray:
    """An attribution map ``(H, W)`` or ``(H, W, C)`` as ``(H, W)`` (channels summed)."""
    m = np.asarray(m, np.float64)
    return m.sum(axis=-1) if m.ndim == 3 else m


def attribution_grid(images: np.ndarray, maps: dict[str, np.ndarray], labels: np.ndarray,
                     predictions: np.ndarray, class_names: Sequence[str] | None = None, *, title: str,
                     size: float = 1.3) -> plt.Figure:
    """One row per image: the image, captioned true -> predicted (red when wrong), then each
    method's map (``maps``: method name -> ``(N, H, W)`` or ``(N, H, W, C)``, channels summed).

    Each map has its own colour scale: a signed map (any negative value) on a symmetric
    blue-white-red scale, zero white; a non-negative one from black (0) to its maximum.
    """
    shown = _as_display(images)
    names = list(maps)
    n = len(shown)
    fig, axes = plt.subplots(n, len(names) + 1, figsize=((len(names) + 1) * size, n * size * 1.1 + 0.5),
                             squeeze=False)
    caption = (lambda c: class_names[c]) if class_names is not None else str
    for i, row in enumerate(axes):
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].imshow(shown[i], cmap="gray", vmin=0, vmax=1)
        wrong = labels[i] != predictions[i]
        row[0].set_title(f"{caption(labels[i])}→{caption(predictions[i])}", fontsize=7,
                         color="tab:red" if wrong else "black")
        for j, name in enumerate(names):
            m = _map_2d(maps[name][i])
            lim = float(np.abs(m).max()) or 1.0
            if (m < 0).any():
                row[j + 1].imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
            else:
                row[j + 1].imshow(m, cmap="inferno", vmin=0, vmax=lim)
            if i == 0:
                row[j + 1].set_title(name, fontsize=8)
    axes[0, 0].set_title(f"image\n{axes[0, 0].get_title()}", fontsize=7,
                         color=axes[0, 0].title.get_color())
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def deletion_curves(curves: dict[str, dict], *, title: str) -> plt.Figure:
    """Accuracy against the fraction of pixels deleted (``attribution.deletion_curve`` results,
    one per method): solid, the most-attributed pixels first; dashed, as many random pixels
    (one grey line when every method's random curve is the same)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    # the same images and key give every method the same random curve: drawn once, in grey
    shared = len({(tuple(c["fractions"]), tuple(c["random"])) for c in curves.values()}) == 1
    for i, (name, curve) in enumerate(curves.items()):
        colour = plt.cm.tab10(i % 10)
        percent = 100 * np.asarray(curve["fractions"])
        ax.plot(percent, curve["attributed"], "-o", ms=3, color=colour, label=f"{name}: most attributed first")
        if not shared:
            ax.plot(percent, curve["random"], "--", color=colour, alpha=0.7, label=f"{name}: random pixels")
    if shared:
        ax.plot(percent, curve["random"], "--", color="0.4", label="random pixels")
    return _accuracy_figure(fig, ax, xlabel="pixels deleted (set to background), %", title=title)


def robustness_curves(results: dict[str, dict[str, dict[float, float]]], *, title: str) -> plt.Figure:
    """Accuracy against the attack radius: ``results[model][attack] = {epsilon: accuracy}``
    (``robustness.accuracy_under_attack``); one colour per model, one line style per attack."""
    styles = ["-o", "--s", ":^", "-.v"]
    attacks = sorted({a for per_model in results.values() for a in per_model})
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, (model, per_model) in enumerate(results.items()):
        for attack, curve in per_model.items():
            eps = sorted(curve)
            ax.plot(eps, [curve[e] for e in eps], styles[attacks.index(attack) % len(styles)], ms=3,
                    color=plt.cm.tab10(i % 10), label=f"{model}, {attack.upper()}")
    return _accuracy_figure(fig, ax, xlabel="epsilon (L-infinity, fraction of the pixel range)", title=title)


def corruption_curves(results: dict[str, dict[str, dict[int, float]]], *, title: str) -> plt.Figure:
    """One panel per corruption: accuracy against severity, one line per model, severity 0 the
    clean images. ``results[model]`` is ``robustness.accuracy_under_corruptions``'s output."""
    kinds = [k for k in next(iter(results.values())) if k != "clean"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.6 * len(kinds) + 1.5, 3.0), squeeze=False, sharey=True)
    for ax, kind in zip(axes[0], kinds):
        for i, (model, table) in enumerate(results.items()):
            points = {**table.get("clean", {}), **table[kind]}
            levels = sorted(points)
            ax.plot(levels, [points[s] for s in levels], "-o", ms=3, color=plt.cm.tab10(i % 10), label=model)
        ax.set_xticks(sorted({s for table in results.values() for s in {**table.get("clean", {}), **table[kind]}}))
        ax.set(title=kind.replace("_", " "), xlabel="severity (0: clean)")
    axes[0, 0].set(ylabel="accuracy", ylim=(0, 1.02))
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
