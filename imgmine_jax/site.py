"""The pages a colleague opens: tidy executed notebooks, ``results/README.md``, and a static site.

Command line::

    python -m imgmine_jax.run --site            # build/site/ from results/ (executes nothing)
    python -m imgmine_jax.site --open           # the same, then open it in a browser
    python -m imgmine_jax.run --rerender        # re-tidy results/ (ipynb, html, README), then the site

The site is built by Sphinx with myst-nb, the tool of the JAX and Flax documentation, from
the executed notebooks in ``results/`` with execution turned off; it is one folder
(``build/site/``) that opens from ``file://`` without a network: MathJax comes from the
``sphinx-mathjax-offline`` package and is copied into the site, the theme's assets are bundled.

:data:`HEADLINES` is the one place the headline numbers are named with their targets; the
landing page and ``results/README.md`` both show them as met or missed.
"""
from __future__ import annotations

import argparse
import html
import importlib.util
import json
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgmine_jax.files import atomic_write_bytes
from imgmine_jax.logs import is_notice

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "results"
SITE_DIR = REPO_ROOT / "build" / "site"
SITE_TITLE = "imgmine_jax results"
RUN_INFO_TAG = "run-info"


# --------------------------------------------------------------------------- headline numbers

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


@dataclass(frozen=True)
class Headline:
    """One headline number: where it comes from, how to print it, and the target it is held to.

    ``conditions`` are ``(metric, op, value)``; the target is met when all hold. No
    conditions: a number without a target (a baseline). ``context`` is formatted with the
    notebook's metrics (e.g. the baseline it is compared with).
    """

    notebook: str            # the notebook's number, "01"
    what: str
    metric: str
    fmt: str
    target: str = "—"
    conditions: tuple[tuple[str, str, Any], ...] = ()
    context: str = ""

    def value(self, metrics: dict) -> str:
        return self.fmt.format(metrics[self.metric]) if self.metric in metrics else "not recorded"

    def status(self, doc: dict | None) -> str:
        """'met', 'missed', 'no target', 'not run', or 'quick profile' (targets are for the full one)."""
        if doc is None or self.metric not in doc.get("metrics", {}):
            return "not run"
        if not self.conditions:
            return "no target"
        if doc.get("profile") != "full":
            return f"{doc.get('profile')} profile"
        metrics = doc["metrics"]
        try:
            ok = all(_OPS[op](metrics[name], value) for name, op, value in self.conditions)
        except KeyError:
            return "not recorded"
        return "met" if ok else "missed"

    def context_text(self, metrics: dict) -> str:
        try:
            return self.context.format_map(metrics)
        except (KeyError, ValueError, IndexError):
            return ""


# The targets are the ones the project set itself (README, "Headline results").
HEADLINES: tuple[Headline, ...] = (
    Headline("01", "ResNet 16-32-64, MNIST test accuracy", "mnist_resnet_test_accuracy", "{:.2%}",
             "≥ 99.55% in ≤ 10 min", (("mnist_resnet_test_accuracy", ">=", 0.9955),
                                      ("mnist_resnet_train_seconds", "<=", 600)),
             "{mnist_resnet_train_seconds:.0f} s of training"),
    Headline("01", "SeedCNN baseline, MNIST test accuracy", "mnist_seed_cnn_test_accuracy", "{:.2%}",
             "≥ 99.0%", (("mnist_seed_cnn_test_accuracy", ">=", 0.99),),
             "{mnist_seed_cnn_train_seconds:.0f} s of training"),
    Headline("01", "ResNet 16-32-64, Fashion-MNIST test accuracy", "fashion_mnist_resnet_test_accuracy",
             "{:.2%}", "≥ 93.5% in ≤ 10 min", (("fashion_mnist_resnet_test_accuracy", ">=", 0.935),
                                              ("fashion_mnist_resnet_train_seconds", "<=", 600)),
             "{fashion_mnist_resnet_test_accuracy_tta:.2%} over shifted views; "
             "{fashion_mnist_resnet_train_seconds:.0f} s"),
    Headline("01", "vmapped sweep speed vs sequential runs", "sweep_speedup_vmapped_over_sequential",
             "{:.2f}x", "faster (> 1.05x: beyond timing noise)",
             (("sweep_speedup_vmapped_over_sequential", ">", 1.05),),
             "{sweep_runs} runs: {sweep_vmapped_seconds:.0f} s vs {sweep_sequential_seconds:.0f} s"),
    Headline("01", "the articles' CNNs (A: Conv32-Conv64-Dense64, 10 epochs), MNIST test accuracy",
             "mnist_article_a_cnn_test_accuracy", "{:.2%}", "— (the articles' baselines)", (),
             "C (Conv32-Conv64-Conv64-Dense64, 5 epochs) {mnist_article_c_cnn_test_accuracy:.2%}"),
    Headline("02", "row-by-row LSTM, MNIST test accuracy", "row_lstm_test_accuracy", "{:.2%}",
             "≥ 98.8%", (("row_lstm_test_accuracy", ">=", 0.988),), "GRU {row_gru_test_accuracy:.2%}"),
    Headline("02", "article C's stacked LSTM as written (Dense(1) regressing the digit): test accuracy",
             "article_lstm_regression_test_accuracy", "{:.2%}", "— (the error, measured)", (),
             "fixed (Dense(10), cross-entropy) {article_lstm_classifier_test_accuracy:.2%}"),
    Headline("02", "completing the bottom 14 rows: pixel MSE", "completion_rnn_mse", "{:.4f}",
             "below both baselines", (("completion_beats_both_baselines_mse", "==", True),),
             "class mean {completion_class_mean_mse:.4f}, repeat-last-row {completion_repeat_last_row_mse:.3f}"),
    Headline("02", "ConvLSTM video predictor, Moving MNIST: mean per-frame MSE", "mm_model_mse", "{:.1f}",
             "≤ 80", (("mm_model_mse", "<=", 80.0),),
             "copy-last {mm_copy_last_mse:.1f}, mean frame {mm_mean_frame_mse:.1f}, "
             "SimVP-style conv {mm_conv_mse:.1f}; seed spread {mm_seed_mse_spread:.1f}"),
    Headline("02", "ConvLSTM video predictor, Moving MNIST: mean SSIM", "mm_model_ssim", "{:.3f}",
             "≥ 0.60 (above copy-last)", (("mm_model_ssim", ">=", 0.60),),
             "copy-last {mm_copy_last_ssim:.3f}, SimVP-style conv {mm_conv_ssim:.3f}"),
    Headline("03", "self-conditioned DCGAN (no labels): classifier IS", "scdcgan_is", "{:.2f}", "≥ 9.3",
             (("scdcgan_is", ">=", 9.3),), "real test digits {real_test_is:.2f}"),
    Headline("03", "self-conditioned DCGAN: FID / real-vs-real FID", "scdcgan_fid_ratio", "{:.2f}x", "≤ 5x",
             (("scdcgan_fid_ratio", "<=", 5.0),), "epoch {scdcgan_epoch}"),
    Headline("03", "conditional DCGAN: digits classified as requested", "cdcgan_class_accuracy_mean",
             "{:.1%}", "≥ 97%", (("cdcgan_class_accuracy_mean", ">=", 0.97),),
             "IS {cdcgan_is:.2f}, FID {cdcgan_fid_ratio:.2f}x"),
    Headline("03", "plain DCGAN: classifier IS", "dcgan_is", "{:.2f}", "— (the baseline)", (),
             "FID {dcgan_fid_ratio:.0f}x after {dcgan_epoch} epochs"),
    Headline("03", "the articles' dense GAN (MLPs 128, repaired): classifier IS", "article_gan_is", "{:.2f}",
             "— (the articles' baseline)", (), "FID {article_gan_fid_ratio:.0f}x, epoch {article_gan_epoch}"),
    Headline("04", "ResNet embedding, MNIST retrieval precision@10", "mnist_precision_at_10_embedding",
             "{:.3f}", "≥ 0.98", (("mnist_precision_at_10_embedding", ">=", 0.98),),
             "raw pixels {mnist_precision_at_10_pixels:.3f}"),
    Headline("04", "ResNet embedding, MNIST k-means NMI", "mnist_kmeans_nmi_embedding", "{:.3f}", "≥ 0.9",
             (("mnist_kmeans_nmi_embedding", ">=", 0.9),), "raw pixels {mnist_kmeans_nmi_pixels:.3f}"),
    Headline("05", "ResNet lead over the best traditional model, Fashion-MNIST",
             "fashion_mnist_resnet_minus_best_traditional", "{:+.2%}", "> 0 (deep ahead)",
             (("fashion_mnist_resnet_minus_best_traditional", ">", 0.0),),
             "{fashion_mnist_best_traditional}: {fashion_mnist_best_traditional_test_accuracy:.2%}"),
    Headline("05", "deletion check: ResNet accuracy, integrated-gradient pixels deleted first",
             "mnist_resnet_deletion_mean_accuracy_integrated_gradients", "{:.1%}", "— (against random deletion)", (),
             "random pixels {mnist_resnet_deletion_mean_accuracy_random:.1%} (mean over the deleted fractions)"),
    Headline("05", "ResNet under PGD attack, ε = 0.1, MNIST", "mnist_resnet_pgd_accuracy_eps_0p1", "{:.1%}",
             "— (no defence)", (),
             "FGSM {mnist_resnet_fgsm_accuracy_eps_0p1:.1%}, clean {mnist_resnet_pgd_accuracy_eps_0:.1%}"),
    Headline("05", "article C's CNN with softmax applied twice: test accuracy",
             "article_cnn_softmax_twice_test_accuracy", "{:.2%}", "— (the error, measured)", (),
             "with logits {article_cnn_logits_test_accuracy:.2%}"),
)

_MARK = {"met": "met", "missed": "**missed**"}


def load_runs(results_dir: Path) -> dict[str, dict]:
    """``{stem: metrics.json document}`` for every notebook with results, in notebook order."""
    runs = {}
    for metrics_file in sorted(Path(results_dir).glob("[0-9][0-9]_*/metrics.json")):
        runs[metrics_file.parent.name] = json.loads(metrics_file.read_text())
    return runs


def _run_for(runs: dict[str, dict], number: str) -> tuple[str | None, dict | None]:
    for stem, doc in runs.items():
        if stem.startswith(number + "_"):
            return stem, doc
    return None, None


def headline_rows(runs: dict[str, dict], link) -> list[str]:
    """Markdown rows of the headline table; ``link(stem)`` is where a notebook's name points."""
    rows = ["| notebook | result | value | target | status | context |", "|---|---|---|---|---|---|"]
    for h in HEADLINES:
        stem, doc = _run_for(runs, h.notebook)
        metrics = (doc or {}).get("metrics", {})
        status = h.status(doc)
        name = f"[{h.notebook}]({link(stem)})" if stem else h.notebook
        value = f"**{h.value(metrics)}**" if doc else "—"
        rows.append(f"| {name} | {h.what} | {value} | {h.target} | "
                    f"{_MARK.get(status, status)} | {h.context_text(metrics)} |")
    return rows


def _seconds(s: float) -> str:
    return f"{s:,.0f} s" if s < 120 else f"{s:,.0f} s ({s / 60:.0f} min)"


def machine_text(doc: dict) -> str:
    device = doc.get("device", {})
    text = f"{device.get('platform', '?')} x{device.get('count', '?')}"
    if device.get("processor"):
        text += f", {device['processor']}"
    if device.get("cpu_count"):
        text += f" ({device['cpu_count']} logical CPUs)"
    return text


def run_rows(runs: dict[str, dict], link) -> list[str]:
    rows = ["| notebook | profile | wall time | machine | finished |", "|---|---|---|---|---|"]
    for stem, doc in runs.items():
        rows.append(f"| [{stem}]({link(stem)}) | {doc.get('profile')} | {_seconds(doc.get('wall_seconds', 0))} | "
                    f"{machine_text(doc)} | {str(doc.get('finished', '?')).replace('T', ' ')} |")
    return rows


# --------------------------------------------------------------------------- benchmarks

def benchmark_lines(results_dir: Path) -> list[str]:
    """The benchmark tables (markdown) from ``results/benchmarks.json``; empty without it."""
    bench_file = Path(results_dir) / "benchmarks.json"   # written by benchmarks/run.py and time_to_accuracy.py
    bench = json.loads(bench_file.read_text()) if bench_file.exists() else {}
    suite, tta = bench.get("suite"), bench.get("time_to_accuracy")
    lines: list[str] = []
    if suite or tta:
        lines += ["Training throughput after compilation (median of interleaved repeats, "
                  "same machine, same batch); see `benchmarks/README.md`. Written by `benchmarks/run.py`.", ""]
    if suite:
        peak = (suite.get("matmul_peak") or {}).get("gflops")
        lines += [f"{suite['date']}, {suite['machine'].get('cpu', '?')} ({suite['machine'].get('logical_cpus')} "
                  f"logical CPUs), {suite['repeats']} repeats{' (quick)' if suite.get('quick') else ''}; "
                  f"float32 matmul peak {peak or float('nan'):.0f} GFLOP/s.", "",
                  "| model | batch | project | PyTorch | Keras | project / PyTorch | project / Keras | "
                  "compile s (train / eval step) | project GFLOP/s (% of peak) | "
                  "peak MiB (project / PyTorch / Keras) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, m in suite.get("models", {}).items():
            fw = m.get("frameworks", {})
            if "error" in m or "items_per_sec" not in fw.get("project", {}):
                lines.append(f"| {name} | {m.get('batch_size')} | failed | | | | | | | |")
                continue
            rate = lambda k: f"{fw[k]['items_per_sec']:,.0f}" if "items_per_sec" in fw.get(k, {}) else "—"
            ratio = lambda k: (f"{fw[k]['ratio_project_over_peer']:.2f}x"
                               if "ratio_project_over_peer" in fw.get(k, {}) else "—")
            mem = lambda k: f"{fw[k]['memory']['peak_mib']:,.0f}" if "memory" in fw.get(k, {}) else "—"
            p = fw["project"]
            compile_s = f"{p['compile_seconds']:.1f}" + (f" / {p['eval_compile_seconds']:.1f}"
                                                         if "eval_compile_seconds" in p else "")
            split = f"; project on {m['cpu_devices']} CPU devices" if m.get("cpu_devices", 1) > 1 else ""
            lines.append(f"| {m['title']} ({m['unit']}/s{split}) | {m['batch_size']} | {rate('project')} | "
                         f"{rate('pytorch')} | {rate('keras')} | {ratio('pytorch')} | {ratio('keras')} | "
                         f"{compile_s} | {p['gflops']:.1f} ({100 * p['fraction_of_matmul_peak']:.0f}%) "
                         f"| {mem('project')} / {mem('pytorch')} / {mem('keras')} |")
    if tta:
        pr, ke = tta["project"], tta.get("keras")
        fmt = lambda s: f"{s:.0f} s" if s is not None else "not reached"
        lines += ["", f"Time to {tta['target_test_accuracy']:.1%} MNIST test accuracy ({tta['date']}, "
                  "`benchmarks/time_to_accuracy.py`, training time only):", "",
                  "| run | epochs | seconds to target | final test accuracy | training seconds |",
                  "|---|---|---|---|---|",
                  f"| project ResNet, {pr['epoch_budget']}-epoch one-cycle budget | {len(pr['epochs'])} | "
                  f"{fmt(pr['seconds_to_target'])} | {pr['final_test_accuracy']:.2%} | {pr['train_seconds']:.0f} |"]
        if ke:
            lines.append(f"| seed Keras script (SeedCNN, Adam, batch 32) | {len(ke['epochs'])} | "
                         f"{fmt(ke['seconds_to_target'])} | {ke['final_test_accuracy']:.2%} | "
                         f"{ke['train_seconds']:.0f} |")
    return lines


# --------------------------------------------------------------------------- results/README.md

def _key_figures(results_dir: Path, stem: str, doc: dict) -> list[str]:
    names = doc.get("key_figures") or [p.stem for p in sorted((results_dir / stem / "figures").glob("*.png"))[:2]]
    return [n for n in names if (results_dir / stem / "figures" / f"{n}.png").exists()]


def write_index(results_dir: Path = RESULTS_DIR) -> Path:
    """Regenerate ``results/README.md``: headline numbers against targets, runs, benchmarks, figures."""
    results_dir = Path(results_dir)
    runs = load_runs(results_dir)
    link = lambda stem: f"{stem}/{stem}.ipynb"
    lines = ["# Results", "",
             "Generated from each notebook's `metrics.json` by `python -m imgmine_jax.run` (or "
             "`--rerender`); do not edit by hand. The notebook links open the executed notebooks, "
             "which code hosts render; the browsable site with every page, search and offline math "
             "is built by `python -m imgmine_jax.run --site` into `build/site/` "
             "(open `build/site/index.html`).", "",
             "## Headline results", "",
             "Targets apply to the full profile.", "",
             *headline_rows(runs, link), "",
             "## Runs", "", *run_rows(runs, link), ""]
    bench = benchmark_lines(results_dir)
    if bench:
        lines += ["## Benchmarks", "", *bench, ""]
    lines += ["## Key figures", ""]
    for stem, doc in runs.items():
        figures = _key_figures(results_dir, stem, doc)[:2]
        if figures:
            lines += [f"### [{stem}]({link(stem)})", ""]
            # One figure per line at its own size (a code host scales it down to the column):
            # three-panel figures stay readable, small ones are not blown up.
            lines += [f'<img src="{stem}/figures/{n}.png" alt="{n.replace("_", " ")}">' + "\n" for n in figures]
    path = results_dir / "README.md"
    atomic_write_bytes(path, ("\n".join(lines).rstrip() + "\n").encode())
    return path


# --------------------------------------------------------------------------- tidy an executed notebook

def _tags(cell) -> list[str]:
    meta = cell.setdefault("metadata", {})
    return meta.setdefault("tags", [])


def _add_tag(cell, tag: str) -> None:
    tags = _tags(cell)
    if tag not in tags:
        tags.append(tag)


def _is_figure_repr(output) -> bool:
    return (output.get("output_type") == "execute_result" and "image/png" in output.get("data", {})
            and str(output["data"].get("text/plain", "")).startswith("<Figure size"))


def _is_setup_cell(cell) -> bool:
    """Plumbing a reader may skip: the imports and ``Report(...)``, the quick profile's overrides."""
    source = cell.get("source", "")
    return "Report(" in source or source.lstrip().startswith("# The quick profile") or \
        (source.count("\n") < 8 and 'if profile == "quick"' in source)


def _clean_stderr(output) -> bool:
    """Drop TensorFlow/absl start-up notices from a stderr stream; False when nothing is left."""
    lines = [line for line in output.get("text", "").splitlines(keepends=True) if not is_notice(line)]
    output["text"] = "".join(lines)
    return bool(output["text"].strip())


def _gif_html(encoded: str, alt: str = "animation") -> str:
    return f'<img src="data:image/gif;base64,{encoded.strip()}" alt="{html.escape(alt)}">'


def page_title(nb) -> str:
    """The first markdown heading of a notebook, without its '#'."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def injected_parameters(nb) -> dict[str, Any]:
    """The values papermill injected for this run (``profile`` and any ``-p``)."""
    import ast

    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            values = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    try:
                        values[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        values[node.targets[0].id] = ast.unparse(node.value)
            return values
    return {}


def _param_value(value) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def run_info_markdown(doc: dict | None, injected: dict[str, Any]) -> str:
    """The block at the top of a page: profile, seed, data, wall time, machine, versions, parameters."""
    if not doc:
        return "**This run:** no `metrics.json` was recorded."
    versions = doc.get("versions", {})
    lines = ['<div class="imgmine-run">', "",
             "**This run** · profile **" + str(doc.get("profile")) + "** · seed " + str(doc.get("seed"))
             + (f" · data {doc['dataset']}" if doc.get("dataset") else "")
             + f" · wall time {_seconds(doc.get('wall_seconds', 0))}"
             + f" · finished {str(doc.get('finished', '?')).replace('T', ' ')}", "",
             f"Machine: {machine_text(doc)}; "
             + ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("python", "jax", "flax", "optax")) + ".",
             ""]
    parameters = {"profile": doc.get("profile"), "seed": doc.get("seed"), **doc.get("parameters", {})}
    set_here = {k for k in injected if k != "profile"}
    # One wrapped paragraph, not a table: 25 parameters stay a few lines above the content.
    items = [f"`{name} = {_param_value(value)}`" + (" (set for this run)" if name in set_here else "")
             for name, value in parameters.items()]
    lines += ["Parameters: " + " · ".join(items)]
    if set_here:
        lines += ["", "Set for this run (the rest are the notebook's defaults): "
                  + ", ".join(f"`{k}`" for k in sorted(set_here)) + "."]
    return "\n".join(lines + ["", "</div>"])


def tidy_notebook(nb, doc: dict | None = None):
    """Make an executed notebook read well; idempotent, and no number changes.

    Each figure once (the ``Out[n]`` repeat of a figure already shown is dropped); a GIF
    also as an ``<img>`` HTML renders; TensorFlow/absl start-up notices out of stderr; the
    injected-parameters cell removed from pages and the run's parameters in a block under
    the title instead; set-up cells folded (tag ``hide-input``), every other code cell
    foldable (``hide-input`` + ``code-open``: the site opens those); the title in the metadata.
    """
    import nbformat

    injected = injected_parameters(nb)
    cells = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if RUN_INFO_TAG in tags:
            continue   # regenerated below
        if cell.cell_type == "code":
            if "injected-parameters" in tags:
                _add_tag(cell, "remove-cell")
            else:
                _add_tag(cell, "hide-input")
                if "parameters" not in tags and not _is_setup_cell(cell):
                    _add_tag(cell, "code-open")
            outputs = cell.get("outputs", [])
            shown_png = any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
                            for o in outputs)
            kept = []
            for out in outputs:
                if shown_png and _is_figure_repr(out):
                    continue
                if out.get("output_type") == "stream" and out.get("name") == "stderr" and not _clean_stderr(out):
                    continue
                data = out.get("data", {})
                if "image/gif" in data and "text/html" not in data:
                    data["text/html"] = _gif_html(data["image/gif"])
                    if str(data.get("text/plain", "")).startswith("<IPython.core.display.Image"):
                        data["text/plain"] = "[animated GIF]"
                kept.append(out)
            cell["outputs"] = kept
        cells.append(cell)
    info = nbformat.v4.new_markdown_cell(run_info_markdown(doc, injected), metadata={"tags": [RUN_INFO_TAG]})
    info.pop("id", None)
    if nb.get("nbformat_minor", 0) >= 5:
        info["id"] = "run-info"
    first = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), -1)
    cells.insert(first + 1, info)
    nb.cells = cells
    title = page_title(nb)
    if title:
        nb.metadata["title"] = title
    return nb


def tidy_executed(executed: Path, doc: dict | None = None) -> None:
    """:func:`tidy_notebook` on a file in place (``doc``: its metrics.json, read from beside it if None)."""
    import nbformat

    executed = Path(executed)
    if doc is None:
        metrics_file = executed.parent / "metrics.json"
        doc = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
    nb = tidy_notebook(nbformat.read(executed, as_version=4), doc)
    atomic_write_bytes(executed, (nbformat.writes(nb) + "\n").encode())


# The standalone page (results/<nb>/<nb>.html): long log lines scroll instead of wrapping.
STANDALONE_CSS = """
<style>
.jp-OutputArea-output pre, .jp-RenderedText pre { white-space: pre; overflow-x: auto; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
</style>
"""


_MATH = re.compile(r"\$[^$\n]+\$|\\\(|\\\[|\\begin\{")
_CDN_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
_CDN_REQUIREJS = re.compile(r'<script src="https?://[^"]*require[^"]*\.js"></script>')


def _offline_mathjax() -> str:
    """MathJax 3 with SVG output inlined in the page: formulas typeset without a network or font files."""
    code = (mathjax_dir() / "tex-svg.js").read_text()
    if "</script" in code:
        raise RuntimeError("tex-svg.js cannot be inlined: it contains '</script'")
    config = ("window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], "
              "displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true}, "
              "svg: {fontCache: 'global'}};")
    return f"<script>{config}</script>\n<script>{code}</script>"


def render_html(executed: Path, html_path: Path) -> None:
    """One self-contained HTML page (nbconvert) of an executed notebook, titled by its heading,
    without cells tagged ``remove-cell`` (the injected parameters), that needs no network: the
    template's CDN MathJax and require.js are replaced by MathJax inlined where a page has math."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter()
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"remove-cell"}, enabled=True),
                                   enabled=True)
    title = nb.metadata.get("title") or page_title(nb) or Path(executed).stem
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = body.replace("</head>", STANDALONE_CSS + "</head>", 1)
    has_math = any(_MATH.search(c.source) for c in nb.cells if c.cell_type == "markdown")
    body = _CDN_REQUIREJS.sub("", body, count=1)
    body = _CDN_MATHJAX.sub(lambda _: _offline_mathjax() if has_math else "", body, count=1)
    atomic_write_bytes(Path(html_path), body.encode())


def rerender(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """Re-tidy every executed notebook in ``results_dir`` and re-render its HTML; executes nothing."""
    done = []
    for executed in sorted(Path(results_dir).glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb")):
        tidy_executed(executed)
        render_html(executed, executed.with_suffix(".html"))
        done.append(executed)
    write_index(results_dir)
    return done


# --------------------------------------------------------------------------- the site

CONF_PY = '''# Generated by imgmine_jax.site; rebuilt on every build.
project = {title!r}
html_title = {title!r}
author = "the imgmine_jax authors"
html_show_copyright = False
html_show_sphinx = False
extensions = ["myst_nb"]
nb_execution_mode = "off"                 # the notebooks in results/ are already executed
nb_merge_streams = True
nb_render_markdown_format = "myst"        # Markdown outputs (tables of numbers) with tables and math
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "sphinx_book_theme"
html_theme_options = {{
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "navigation_with_keys": False,
    "secondary_sidebar_items": [],        # the sections are in the left navigation: figures get the width
    "show_navbar_depth": 1,
}}
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_js_files = ["site.js"]
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
mathjax_path = "mathjax/tex-chtml.js"     # copied into the site below: no CDN
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header", "myst.xref_missing"]
exclude_patterns = ["_build"]

MATHJAX = {mathjax!r}


def _copy_mathjax(app, exc):
    import shutil
    from pathlib import Path

    if exc is not None or app.builder.format != "html":
        return
    src, dst = Path(MATHJAX), Path(app.outdir) / "_static" / "mathjax"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "tex-chtml.js", dst / "tex-chtml.js")
    for sub in ("input/tex/extensions", "output/chtml/fonts/woff-v2"):
        shutil.copytree(src / sub, dst / sub, dirs_exist_ok=True)


def setup(app):
    app.connect("build-finished", _copy_mathjax)
'''

SITE_CSS = """
/* Figures are wide (three panels): give the article the room the window has. */
.bd-page-width { max-width: 110rem; }
.bd-main .bd-content .bd-article-container { max-width: 75rem; }
/* A long line must scroll inside its box, never widen the page. */
.bd-main, .bd-content, .bd-article-container, .bd-article,
div.cell, div.cell_output, div.cell_input { min-width: 0; max-width: 100%; }
/* Log lines (one per epoch) scroll sideways instead of wrapping. */
div.cell_output pre, div.output pre { white-space: pre; overflow-x: auto; word-break: normal; }
div.cell_output img { max-width: 100%; height: auto; }
/* The run's block under the title: a parameter never breaks inside its name = value. */
div.imgmine-run { border-left: 3px solid var(--pst-color-primary); padding: 0.2rem 0 0.2rem 0.8rem;
                  margin-bottom: 1rem; font-size: 0.92em; }
div.imgmine-run code { white-space: nowrap; }
.imgmine-headlines td:nth-child(3) { white-space: nowrap; }
.imgmine-keyfig img { width: 100%; }
"""

# Code cells are folded by myst-nb's hide-input; the ones tagged code-open start unfolded,
# so a reader sees the code and can fold it, and set-up cells start folded.
SITE_JS = """
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("div.tag_code-open details.hide").forEach(function (d) { d.open = true; });
});
"""


def mathjax_dir() -> Path:
    """MathJax 3 as shipped by the ``sphinx-mathjax-offline`` package."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the site needs MathJax from the 'sphinx-mathjax-offline' package; "
                           "install the project again: pip install -e .")
    path = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"
    if not (path / "tex-chtml.js").exists():
        raise RuntimeError(f"no tex-chtml.js in {path}; reinstall 'sphinx-mathjax-offline'")
    return path


def _landing_page(results_dir: Path, runs: dict[str, dict], figures_dir: Path) -> str:
    link = lambda stem: f"{stem}.ipynb"
    lines = ["# Image mining with deep learning in JAX: the results", "",
             "Image mining with deep learning in JAX / Flax NNX: the executed notebooks of this "
             "repository with their figures and numbers, as they ran. Nothing here was executed "
             "for the site; every page names its run's profile, machine, wall time and parameters.", "",
             "## Headline results", "",
             "Targets apply to the full profile; the notebook number opens its page.", "",
             "```{rst-class} imgmine-headlines", "```", "",
             *headline_rows(runs, link), "",
             "## Runs", "", *run_rows(runs, link), ""]
    figure_lines = []
    for stem, doc in runs.items():
        names = _key_figures(results_dir, stem, doc)[:1]
        for name in names:
            (figures_dir / stem).mkdir(parents=True, exist_ok=True)
            shutil.copy2(results_dir / stem / "figures" / f"{name}.png", figures_dir / stem / f"{name}.png")
            figure_lines += [f"```{{figure}} _figures/{stem}/{name}.png", ":class: imgmine-keyfig",
                             f":alt: {name.replace('_', ' ')}", "",
                             f"{stem}: {name.replace('_', ' ')} ([the page]({link(stem)}))", "```", ""]
    if figure_lines:
        lines += ["## Key figures", "", *figure_lines]
    lines += ["```{toctree}", ":maxdepth: 2", ":caption: Notebooks", "", *runs.keys(), "```", ""]
    if (results_dir / "benchmarks.json").exists():
        lines += ["```{toctree}", ":maxdepth: 1", ":caption: Measurements", "", "benchmarks", "```", ""]
    return "\n".join(lines)


def build_site(results_dir: Path = RESULTS_DIR, out_dir: Path = SITE_DIR, *, quiet: bool = True) -> Path:
    """Build the static site from the executed notebooks in ``results_dir`` into ``out_dir``
    (replaced); returns the path of its ``index.html``. Executes no notebook."""
    import nbformat

    results_dir, out_dir = Path(results_dir).resolve(), Path(out_dir).resolve()
    runs = load_runs(results_dir)
    notebooks = {stem: results_dir / stem / f"{stem}.ipynb" for stem in runs}
    missing = [str(p) for p in notebooks.values() if not p.exists()]
    if not runs or missing:
        raise FileNotFoundError(f"no executed notebooks to build a site from in {results_dir}"
                                + (f" (missing {missing})" if missing else "")
                                + "; run `python -m imgmine_jax.run` first")
    with tempfile.TemporaryDirectory(prefix="imgmine-site-") as tmp:
        src = Path(tmp) / "src"
        (src / "_static").mkdir(parents=True)
        for stem, path in notebooks.items():
            nb = tidy_notebook(nbformat.read(path, as_version=4), runs[stem])
            nbformat.write(nb, src / f"{stem}.ipynb")
        (src / "index.md").write_text(_landing_page(results_dir, runs, src / "_figures"))
        bench = benchmark_lines(results_dir)
        if bench:
            (src / "benchmarks.md").write_text("\n".join(["# Benchmarks", "", *bench, ""]))
        (src / "_static" / "site.css").write_text(SITE_CSS)
        (src / "_static" / "site.js").write_text(SITE_JS)
        (src / "conf.py").write_text(CONF_PY.format(title=SITE_TITLE, mathjax=str(mathjax_dir())))
        build = Path(tmp) / "html"
        cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-j", "1", str(src), str(build)]
        if quiet:
            cmd.insert(3, "-q")
        env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        if proc.returncode:
            raise RuntimeError(f"sphinx failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        for junk in (".doctrees", ".buildinfo", "jupyter_execute", "objects.inv"):
            target = build / junk
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        _check_portable(build, [tmp, str(REPO_ROOT), str(results_dir)])
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(build, out_dir)
    return out_dir / "index.html"


def _check_portable(build: Path, forbidden: list[str]) -> None:
    """No absolute path of this machine in the site (it must work wherever it is unzipped)."""
    for path in build.rglob("*"):
        if path.suffix in (".html", ".js", ".css", ".txt") and path.is_file():
            text = path.read_text(errors="replace")
            for bad in forbidden:
                if bad and bad in text:
                    raise RuntimeError(f"{path.relative_to(build)} contains the build machine's path {bad!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imgmine_jax.site",
                                     description="Build the static site from results/ (executes nothing).")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=SITE_DIR, help="the site's folder (replaced)")
    parser.add_argument("--rerender", action="store_true",
                        help="first re-tidy the executed notebooks, HTML pages and README in results/")
    parser.add_argument("--open", action="store_true", help="open the built site in a web browser")
    args = parser.parse_args(argv)
    if args.rerender:
        for path in rerender(args.results_dir):
            print(f"[site] re-rendered {path.parent.name}")
    index = build_site(args.results_dir, args.out)
    print(f"[site] {index}")
    if args.open:
        import webbrowser

        webbrowser.open(index.as_uri())
    return 0


if __name__ == "__main__":
    sys.exit(main())
