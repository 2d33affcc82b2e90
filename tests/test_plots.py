"""Figure details a reader notices: every point in view, whole-number epochs, legends out of the way."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from imgmine_jax import plots  # noqa: E402


def _history(n: int) -> list[dict]:
    # the first epoch's training accuracy far below the rest, as in a real run
    return [{"epoch": e, "lr": 1e-3, "train_loss": 1.0 / e, "val_loss": 0.5 / e,
             "train_accuracy": 0.80 if e == 1 else 0.97 + 0.002 * e, "val_accuracy": 0.95 + 0.003 * e}
            for e in range(1, n + 1)]


@pytest.mark.parametrize("n", [1, 3, 10])
def test_learning_curves_show_every_point_on_whole_epochs(n):
    history = _history(n)
    fig = plots.learning_curves(history, title="t")
    try:
        acc = fig.axes[1]
        lo, hi = acc.get_ylim()
        values = [r[k] for r in history for k in ("train_accuracy", "val_accuracy")]
        assert lo <= min(values) and hi >= max(values), "a point of the accuracy panel is cut off"
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), f"fractional epoch ticks {ticks}"
    finally:
        plt.close(fig)


def test_gan_curves_whole_epochs_and_the_twin_axis_legend_outside_the_plot():
    history = [{"epoch": e, "train_d_loss": 1.1, "train_g_loss": 0.9, "train_d_real": 0.6, "train_d_fake": 0.4,
                "fid": 1.0 / e, "is": 5.0 + e} for e in range(1, 4)]
    fig = plots.gan_curves(history, title="t", reference_fid=0.01, real_is=9.8)
    try:
        fig.canvas.draw()
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert all(float(t).is_integer() for t in ticks), f"fractional epoch ticks {ticks}"
        quality = fig.axes[2]
        legend_box = quality.get_legend().get_window_extent()
        assert legend_box.y1 <= quality.get_window_extent().y0, "the legend sits on the curves"
    finally:
        plt.close(fig)


def test_grouped_bars_legend_covers_no_bar():
    fig = plots.grouped_bars([str(c) for c in range(10)], {"a": [6000] * 10, "b": [1000] * 10, "c": [5900] * 10},
                             title="counts", ylabel="examples")
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent()
        for bar in ax.patches:
            assert not legend.overlaps(bar.get_window_extent()), "the legend hides a bar"
    finally:
        plt.close(fig)


def test_learning_curve_plot_is_log_scaled_with_the_crossing_marked():
    curves = {"logistic (hog)": (0.90, 0.93, 0.95), "resnet": (0.85, 0.95, 0.99)}
    rows = [{"size": s, "model": m, "test_accuracy": a} for m, accs in curves.items()
            for s, a in zip((500, 5000, 50000), accs)]
    fig = plots.learning_curve_plot(rows, title="t", crossing=2000.0)
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == "log" and len(ax.get_lines()) == 3   # two models and the crossing
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    finally:
        plt.close(fig)


def test_ablation_plot_shows_every_arm_but_the_full_one_and_every_seed():
    rows = [{"arm": "full", "test_accuracy": 0.99, "accuracies": [0.989, 0.991], "delta": 0.0},
            {"arm": "no_residual", "test_accuracy": 0.98, "accuracies": [0.979, 0.981], "delta": -0.01},
            {"arm": "no_batch_norm", "test_accuracy": 0.97, "accuracies": [0.96, 0.98], "delta": -0.02}]
    fig = plots.ablation_plot(rows, title="t")
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["no_residual", "no_batch_norm"]
        dots = [line for line in ax.get_lines() if line.get_marker() == "."]
        assert sum(len(line.get_xdata()) for line in dots) == 4
    finally:
        plt.close(fig)


def test_notebook_05_figures_draw_every_series():
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    maps = {"saliency": rng.random((3, 28, 28)), "integrated gradients": rng.normal(size=(3, 28, 28, 1))}
    figs = [plots.attribution_grid(images, maps, np.array([1, 2, 3]), np.array([1, 2, 4]), title="t")]
    assert len(figs[0].axes) == 3 * 3
    assert figs[0].axes[2 * 3].title.get_color() != figs[0].axes[0].title.get_color(), "a mistake is not marked"
    curve = {"fractions": [0.0, 0.1, 0.5], "attributed": [0.9, 0.5, 0.1], "random": [0.9, 0.88, 0.7]}
    figs.append(plots.deletion_curves({"saliency": curve, "occlusion": curve}, title="t"))
    assert len(figs[-1].axes[0].lines) == 3   # one shared random curve
    other = {**curve, "random": [0.9, 0.85, 0.6]}
    figs.append(plots.deletion_curves({"saliency": curve, "occlusion": other}, title="t"))
    assert len(figs[-1].axes[0].lines) == 4
    attacks = {"fgsm": {0.0: 0.99, 0.1: 0.7, 0.3: 0.2}, "pgd": {0.0: 0.99, 0.1: 0.5, 0.3: 0.0}}
    figs.append(plots.robustness_curves({"SeedCNN": attacks, "ResNet": attacks}, title="t"))
    assert len(figs[-1].axes[0].lines) == 4
    table = {"clean": {0: 0.99}, "blur": {1: 0.98, 3: 0.9, 5: 0.6}, "rotation": {1: 0.97, 3: 0.8, 5: 0.3}}
    figs.append(plots.corruption_curves({"SeedCNN": table, "ResNet": table}, title="t"))
    assert [ax.get_title() for ax in figs[-1].axes] == ["blur", "rotation"]
    assert [len(line.get_xdata()) for line in figs[-1].axes[0].lines] == [4, 4]   # the clean point included
    for fig in figs:
        for ax in fig.axes:
            if ax.lines:
                assert ax.get_xlabel() and ax.get_ylabel() or ax is not fig.axes[0]
        plt.close(fig)
