"""Run notebooks top to bottom and render their results; the per-notebook ``Report``.

Command line::

    python -m imgmine_jax.run                       # every notebook, full profile
    python -m imgmine_jax.run --profile quick 01    # one notebook, small and fast (a run record only)
    python -m imgmine_jax.run 01 --grid learning_rate=1e-3,3e-3 --grid seed=0,1   # 4 runs, compared
    python -m imgmine_jax.run --site                # only build the site (build/site/) from results/
    python -m imgmine_jax.run --rerender            # re-tidy results/ without executing, then the site

For each notebook the runner injects ``profile`` (and any ``-p name=value``) into the
cell tagged ``parameters`` (papermill), executes it in a staging directory, renders
HTML, and only on success moves ``<notebook>.ipynb``, ``<notebook>.html``,
``figures/*.png`` and ``metrics.json`` into ``results/<notebook>/``. A notebook that
fails names the failing cell and leaves the previous results of that notebook as they
were. A notebook whose kernel *dies* (killed, out of memory, an abort inside XLA) is
started again (``--retries``, default 1): its training calls resume from their per-epoch
checkpoints and finished trainings are loaded, not repeated; the retry is recorded in
``metrics.json`` and noted atop the page. The other notebooks still run; the exit status
reports any failure. Finally ``results/README.md`` is regenerated from every ``metrics.json``, and a run
into ``results/`` rebuilds the static site (``imgmine_jax.site``) from the executed notebooks.
Executed notebooks are tidied before rendering (:func:`imgmine_jax.site.tidy_notebook`): each
figure once, the run's parameters in a block instead of papermill's injected cell.

Every execution leaves a run record (:mod:`imgmine_jax.runs`) in
``artifacts/runs/<notebook>/<timestamp>-<id>/``, failed ones included. Only the committed
parameters in the full profile publish to ``results/``; a run with ``-p``, ``--grid`` or the
quick profile stays in its run record unless ``--publish`` is given. ``--grid name=v1,v2``
(repeatable) runs the product of the values one after another and compares the runs.

Inside a notebook, :class:`Report` is the one object that writes results: figures
and ``metrics.json`` go to the directory the runner chose (``$IMGMINE_OUTPUT_DIR``);
run interactively, they go to a new run folder ``artifacts/runs/<notebook>/<timestamp>-<id>/``
so that a quick experiment in JupyterLab never overwrites the committed results or an
earlier experiment.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from imgmine_jax import checkpoint as _ckpt
from imgmine_jax import runs as _runs
from imgmine_jax import site as _site
from imgmine_jax import validate as _validate
from imgmine_jax.files import atomic_write_bytes, json_default, recover_dir, replace_dir

PROFILES = ("quick", "full")
OUTPUT_ENV = "IMGMINE_OUTPUT_DIR"
PROFILE_ENV = "IMGMINE_PROFILE"
NOTEBOOK_ENV = "IMGMINE_NOTEBOOK"        # the notebook file the runner executes (its parameters cell)
INJECTED_ENV = "IMGMINE_INJECTED"        # JSON of the parameters the runner injected
PROGRESS_ENV = "IMGMINE_PROGRESS"
REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
RESULTS_DIR = REPO_ROOT / "results"


# --------------------------------------------------------------------------- inside a notebook

def environment_info() -> dict[str, Any]:
    """Library versions and the device the numbers were measured on."""
    import flax
    import jax
    import optax

    device = jax.devices()[0]
    return {
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
                     "flax": flax.__version__, "optax": optax.__version__},
        "device": {"platform": device.platform, "kind": device.device_kind,
                   "count": jax.device_count(), "cpu_count": os.cpu_count(),
                   "machine": platform.machine(), "processor": _runs.processor()},
    }


def _significant(value: Any, digits: int = 6) -> Any:
    """Floats (also inside lists and dicts) rounded to ``digits`` significant digits."""
    import numpy as np

    if isinstance(value, (float, np.floating)) and not isinstance(value, bool):
        value = float(value)
        return float(f"{value:.{digits}g}") if np.isfinite(value) else value
    if isinstance(value, np.ndarray):
        return _significant(value.tolist(), digits)
    if isinstance(value, dict):
        return {k: _significant(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_significant(v, digits) for v in value]
    return value


def table(header: list[str], rows: list[list[Any]], caption: str | None = None):
    """A Markdown table (for ``display``) from a header and rows of cells, under a bold ``caption``."""
    from IPython.display import Markdown

    lines = ([f"**{caption}**", ""] if caption else []) + ["| " + " | ".join(map(str, header)) + " |",
                                                          "|" + "---|" * len(header)]
    return Markdown("\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows]))


class Report:
    """Collects one notebook's parameters, figures and headline numbers.

    ``Report("01_cnn_classification", dataset=...)`` at the top of a notebook (after its
    parameters cell) records the value of every parameter of that cell, as the notebook
    runs with them (after the runner's injections and the quick profile's changes), and
    which ones the runner injected. ``report.figure(fig, "learning_curves")`` saves
    ``figures/learning_curves.png`` and shows the figure inline; ``report.metrics[...] =
    value`` records a headline number; ``report.write()`` writes ``metrics.json``
    (profile, dataset, seed, parameters, wall time, versions, device, metrics; floats
    rounded to 6 significant digits). Created at the top of a notebook, so the wall time
    covers the whole run.

    ``namespace``: where the parameters' values are read (default: the calling notebook's
    globals); ``parameters``: extra values to record (or ones to record instead).
    """

    table = staticmethod(table)

    def __init__(self, notebook: str, *, profile: str | None = None, seed: int | None = None,
                 dataset: str | None = None, namespace: dict[str, Any] | None = None, **parameters: Any):
        if namespace is None:
            namespace = sys._getframe(1).f_globals
        recorded = {name: namespace[name] for name in _cell_parameters(notebook) if name in namespace}
        recorded.update(parameters)
        profile = recorded.get("profile") if profile is None else profile
        seed = recorded.get("seed") if seed is None else seed
        check_profile(profile)
        self.notebook = notebook
        self.profile = profile
        self.seed = seed
        self.dataset = dataset
        self.parameters = {k: v for k, v in recorded.items() if k != "profile"}
        self.injected = json.loads(os.environ.get(INJECTED_ENV, "{}"))
        self.metrics: dict[str, Any] = {}
        self.key_figures: list[str] = []
        self._start = time.perf_counter()
        if os.environ.get(PROFILE_ENV) and os.environ[PROFILE_ENV] != profile:
            raise RuntimeError(f"the runner asked for profile {os.environ[PROFILE_ENV]!r} but the "
                               f"notebook's parameters say {profile!r}")
        env_dir = os.environ.get(OUTPUT_ENV)
        run_dir = os.environ.get(_runs.RUN_DIR_ENV)
        self.interactive = not env_dir
        if env_dir:           # the runner's staging directory; it keeps the run record
            self.dir = Path(env_dir)
            self.run_dir = Path(run_dir) if run_dir else None
        else:                 # interactive: each execution a run folder of its own
            self.run_dir = self.dir = _runs.new_run_dir(notebook)
            defaults = notebook_parameters(NOTEBOOK_DIR / f"{notebook}.ipynb") \
                if (NOTEBOOK_DIR / f"{notebook}.ipynb").is_file() else {}
            changed = {k: v for k, v in self.parameters.items() if k in defaults and defaults[k] != v}
            _runs.start_record(self.run_dir, notebook, source="interactive", profile=profile,
                               parameters=self.parameters, overrides=changed)
            _watch_cells(self.run_dir)
        if self.run_dir is not None:
            _runs.activate(self.run_dir, hparams={"profile": profile, **self.parameters})
        self.figure_dir = self.dir / "figures"
        self.figure_dir.mkdir(parents=True, exist_ok=True)

    def figure(self, fig, name: str, *, key: bool = False, show: bool = True) -> None:
        """Save ``fig`` as ``figures/<name>.png`` (atomically) and show it inline.

        Returns nothing: a returned figure, as a cell's last value, would be displayed by
        Jupyter a second time (``Out[n]``) in every rendered page.
        """
        import io

        import matplotlib.pyplot as plt

        if not fig.axes or not any(ax.get_title() or fig._suptitle for ax in fig.axes):
            raise ValueError(f"figure {name!r} has no title; every saved figure needs one")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        atomic_write_bytes(self.figure_dir / f"{name}.png", buf.getvalue())
        if key and name not in self.key_figures:
            self.key_figures.append(name)
        if show:
            plt.show()
        else:
            plt.close(fig)

    def write(self) -> Path:
        """Write ``metrics.json`` and return its path."""
        doc = {
            "notebook": self.notebook, "profile": self.profile, "dataset": self.dataset,
            "seed": self.seed, "parameters": self.parameters, "injected_parameters": self.injected,
            "wall_seconds": round(time.perf_counter() - self._start, 1),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **environment_info(),
            "metrics": _significant(self.metrics), "key_figures": self.key_figures,
        }
        path = self.dir / "metrics.json"
        atomic_write_bytes(path, (json.dumps(doc, indent=2, default=json_default) + "\n").encode())
        if self.interactive:
            _runs.update_record(self.run_dir, status="finished", ended=_runs.now(), wall_seconds=doc["wall_seconds"],
                                metrics=doc["metrics"], environment={k: doc[k] for k in ("versions", "device")},
                                trainings=_runs.trainings(self.run_dir), error=None)
        return path


_cell_hook: list = []


def _watch_cells(run_dir: Path) -> None:
    """In IPython, record a cell that raises as the failure of the interactive run ``run_dir``."""
    import traceback

    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    for old in _cell_hook:          # a notebook run again in the same kernel: a new run
        with contextlib.suppress(ValueError):
            ip.events.unregister("post_run_cell", old)
    _cell_hook.clear()

    def post_run_cell(result):
        err = result.error_in_exec
        if err is None:
            return
        source = (getattr(result.info, "raw_cell", "") or "").strip()
        _runs.update_record(run_dir, status="failed", ended=_runs.now(), trainings=_runs.trainings(run_dir),
                            error={"cell": source.splitlines()[0][:80] if source else "", "source": source,
                                   "ename": type(err).__name__, "evalue": str(err),
                                   "traceback": "".join(traceback.format_exception(type(err), err,
                                                                                   err.__traceback__))})

    ip.events.register("post_run_cell", post_run_cell)
    _cell_hook.append(post_run_cell)


def _cell_parameters(notebook: str) -> list[str]:
    """The names in the parameters cell of ``notebook`` (the file the runner executes, else
    ``notebooks/<notebook>.ipynb``); none if that file is not there."""
    path = os.environ.get(NOTEBOOK_ENV)
    path = Path(path) if path and Path(path).stem == notebook else NOTEBOOK_DIR / f"{notebook}.ipynb"
    return list(notebook_parameters(path)) if path.is_file() else []


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}; got {profile!r}")
    return profile


# --------------------------------------------------------------------------- the runner

def find_notebooks(names: list[str] | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """Notebooks in order; ``names`` may be full names, stems or numeric prefixes (``01``), or
    paths to ``.ipynb`` files (run as given, e.g. a copy outside the repository). A notebook
    named twice runs once."""
    available = sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return available
    chosen = []
    for name in names:
        if not isinstance(name, (str, os.PathLike)) or not os.fspath(name):
            raise SystemExit(f"notebook names must be non-empty strings; got {name!r}")
        given = Path(name)
        if given.suffix == ".ipynb" and (len(given.parts) > 1 or given.is_file()):
            if not given.is_file():
                raise SystemExit(f"notebook {str(name)!r} does not exist (expected a path to an .ipynb file, "
                                 f"or one of {[nb.stem for nb in available]})")
            path = given.resolve()
            if path not in chosen:
                chosen.append(path)
            continue
        stem = Path(name).stem
        matches = [nb for nb in available if nb.stem == stem or nb.stem.startswith(stem + "_")]
        if len(matches) != 1:
            raise SystemExit(f"notebook {name!r} matches {len(matches)} of "
                             f"{[nb.stem for nb in available]}; expected exactly one")
        if matches[0].resolve() not in chosen:
            chosen.append(matches[0].resolve())
    return chosen


class NotebookFailed(RuntimeError):
    pass


class KernelDied(NotebookFailed):
    """The notebook's kernel process died (killed, out of memory, an abort inside XLA).

    Unlike an exception in a cell, this may not happen again: the runner retries such a
    notebook (``--retries``), and its training calls resume from their checkpoints.
    """

    def __init__(self, message: str, record: dict[str, Any]):
        super().__init__(message)
        self.record = record


KERNEL_LOG_LINES = 12   # lines of the dead kernel's log quoted in the failure paragraph


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The names and default values assigned in a notebook's cell tagged ``parameters``."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{Path(notebook).name}: expected one cell tagged 'parameters', found {len(tagged)}")
    source = "".join(tagged[0]["source"])
    defaults = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                defaults[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                defaults[node.targets[0].id] = None   # an expression: accept any override
    return defaults


def _type_name(value) -> str:
    return "list" if isinstance(value, (list, tuple)) else type(value).__name__


def _compatible(default, value) -> bool:
    """Same kind of value as the default: numbers stay numbers, ints stay ints, lists stay lists."""
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_parameters(notebook: Path, parameters: dict[str, Any]) -> None:
    """Refuse overrides the notebook does not define, or of another type than its default.

    Papermill would silently add an unknown name (a typo like ``epoch=3`` would change
    nothing) and pass a string where a number is expected; both fail here instead.
    """
    defaults = notebook_parameters(notebook)
    for name, value in parameters.items():
        if name not in defaults:
            raise ValueError(f"notebook {Path(notebook).stem} has no parameter {name!r}; "
                             f"expected one of {sorted(defaults)}")
        if not _compatible(defaults[name], value):
            raise ValueError(f"parameter {name}={value!r} of {Path(notebook).stem} must be a "
                             f"{_type_name(defaults[name])} like its default {defaults[name]!r}; "
                             f"got a {_type_name(value)}")
        _validate.notebook_parameter(name, value, defaults[name])


def run_notebook(notebook: Path, results_dir: Path | None, profile: str,
                 parameters: dict[str, Any] | None = None, timeout: int | None = None,
                 previous_attempts: list[dict[str, Any]] | None = None, *, publish: bool = True,
                 run_dir: Path | None = None, command: list[str] | None = None) -> Path:
    """Execute one notebook, record the run, and (``publish``) put it in ``results_dir/<stem>/``.

    Every execution gets a run record (:mod:`imgmine_jax.runs`): ``run_dir`` (default: a new
    ``artifacts/runs/<stem>/<timestamp>-<id>/``) receives ``run.json``, the executed notebook,
    its HTML, figures, ``metrics.json`` and the training calls' histories -- also when the run
    fails (status, failing cell and traceback in ``run.json``). With ``publish`` the outputs
    also replace ``results_dir/<stem>/`` (only on success; on failure that directory is left
    as it was) and that path is returned; without, the run folder is returned.

    Raises :class:`KernelDied` when the kernel process dies (its partial notebook and
    log are kept under ``artifacts/failed/``), :class:`NotebookFailed` when a cell
    raises; either carries ``run_dir``. ``previous_attempts``: the records of earlier
    attempts of this run that died; they go into ``metrics.json``
    (``runner.previous_attempts``) and a note at the top of the rendered page.
    """
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    stem = notebook.stem
    check_profile(profile)
    check_parameters(notebook, parameters or {})
    if publish and results_dir is None:
        raise ValueError("publishing needs a results_dir")
    run_dir = Path(run_dir) if run_dir is not None else _runs.new_run_dir(stem)
    defaults = notebook_parameters(notebook)
    _runs.start_record(run_dir, stem, source="runner", profile=profile,
                       parameters={k: v for k, v in {**defaults, **(parameters or {})}.items() if k != "profile"},
                       overrides=dict(parameters or {}), command=command, published=publish,
                       attempt=len(previous_attempts or []) + 1, previous_attempts=list(previous_attempts or []))
    t0 = time.perf_counter()
    stage_parent = results_dir if publish else run_dir
    stage_parent.mkdir(parents=True, exist_ok=True)
    if publish:
        recover_dir(results_dir / stem)   # a previous run killed mid-swap left the old results aside
    staging = Path(tempfile.mkdtemp(dir=stage_parent, prefix=f".staging-{stem}-"))
    staging.chmod(0o755)
    executed = staging / f"{stem}.ipynb"
    envs = (OUTPUT_ENV, PROFILE_ENV, PROGRESS_ENV, NOTEBOOK_ENV, INJECTED_ENV, _runs.RUN_DIR_ENV)
    old_env = {k: os.environ.get(k) for k in envs}
    os.environ[OUTPUT_ENV] = str(staging)
    os.environ[PROFILE_ENV] = profile
    os.environ[NOTEBOOK_ENV] = str(Path(notebook).absolute())
    os.environ[INJECTED_ENV] = json.dumps({"profile": profile, **(parameters or {})})
    os.environ[PROGRESS_ENV] = "0"   # progress bars would flood the rendered notebook
    os.environ[_runs.RUN_DIR_ENV] = str(run_dir)
    kernel_log = staging / "kernel.log"

    def finish(status: str, **fields) -> None:
        _copy_outputs(staging, run_dir)
        metrics_doc = {}
        with contextlib.suppress(OSError, json.JSONDecodeError):
            metrics_doc = json.loads((run_dir / "metrics.json").read_text())
        extra = {"parameters": metrics_doc["parameters"]} if "parameters" in metrics_doc else {}
        if metrics_doc:
            extra.update(metrics=metrics_doc.get("metrics", {}), seed=metrics_doc.get("seed"),
                         dataset=metrics_doc.get("dataset"),
                         environment={k: metrics_doc.get(k) for k in ("versions", "device")})
        _runs.update_record(run_dir, status=status, ended=_runs.now(),
                            wall_seconds=round(time.perf_counter() - t0, 1),
                            trainings=_runs.trainings(run_dir), **extra, **fields)

    try:
        with _tee_stderr(kernel_log):   # the kernel inherits the runner's stderr: keep a copy
            pm.execute_notebook(str(notebook), str(executed),
                                parameters={"profile": profile, **(parameters or {})},
                                cwd=str(notebook.parent), kernel_name="python3", progress_bar=False,
                                log_output=False, execution_timeout=timeout)
        if not (staging / "metrics.json").exists():
            raise NotebookFailed(f"{stem} ran but wrote no metrics.json (it must call report.write())")
        kernel_log.unlink(missing_ok=True)
        if previous_attempts:
            record_attempts(executed, staging / "metrics.json", previous_attempts)
        shown = f"results/{stem}" if publish else os.path.relpath(run_dir, REPO_ROOT) \
            if run_dir.is_relative_to(REPO_ROOT) else str(run_dir)
        relativize_paths(executed, {str(staging): shown, str(REPO_ROOT) + os.sep: ""})
        _site.tidy_executed(executed)
        render_html(executed, staging / f"{stem}.html")
    except DeadKernelError:
        record = _dead_kernel_record(stem, executed, kernel_log)
        finish("kernel died", error=record)
        record["kept_at"] = str(_keep_failed(staging, stem))
        err = KernelDied(_dead_kernel_message(stem, record), record)
        err.run_dir = run_dir
        raise err from None
    except BaseException as err:
        failed = isinstance(err, (pm.PapermillExecutionError, NotebookFailed))
        where = _failing_cell(executed, err) if isinstance(err, pm.PapermillExecutionError) else ""
        error = {"cell": where, "ename": getattr(err, "ename", type(err).__name__),
                 "evalue": getattr(err, "evalue", str(err)),
                 "traceback": _strip_ansi("\n".join(getattr(err, "traceback", None) or []))}
        with contextlib.suppress(Exception):   # the record must never hide the original failure
            finish("failed" if failed else "interrupted", error=error)
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, pm.PapermillExecutionError):
            raised = NotebookFailed(f"{stem} failed in {where}: {err.ename}: {err.evalue}")
            raised.run_dir = run_dir
            raise raised from None
        if isinstance(err, NotebookFailed):
            err.run_dir = run_dir
        raise
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    finish("finished", error=None)
    if not publish:
        shutil.rmtree(staging, ignore_errors=True)
        return run_dir
    target = results_dir / stem
    replace_dir(staging, target)
    _runs.update_record(run_dir, published_to=str(target))
    return target


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _copy_outputs(staging: Path, run_dir: Path) -> None:
    """Copy what a run produced (notebook, HTML, figures, metrics.json, kernel log) into its run folder."""
    if not staging.is_dir():
        return
    for item in staging.iterdir():
        if item.is_dir():
            shutil.copytree(item, run_dir / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, run_dir / item.name)


@contextlib.contextmanager
def _tee_stderr(path: Path):
    """Copy everything written to file descriptor 2 -- by this process and by the processes
    it starts meanwhile, such as a notebook's kernel -- into ``path``, still showing it."""
    sys.stderr.flush()
    shown = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with open(path, "ab") as log:
            while chunk := os.read(read_end, 1 << 16):
                os.write(shown, chunk)
                log.write(chunk)
                log.flush()
        os.close(read_end)

    thread = threading.Thread(target=pump, name="kernel-log", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(shown, 2)        # the pipe closes once the kernel, which holds a copy, is gone
        thread.join(timeout=10)
        os.close(shown)


def _cells_as_committed(executed: Path) -> list:
    """The executed notebook's cells without those papermill added, numbered as committed."""
    import nbformat

    added = lambda tag: tag == "injected-parameters" or tag.startswith("papermill")
    return [c for c in nbformat.read(executed, as_version=4).cells
            if not any(added(t) for t in c.metadata.get("tags", []))]


def _describe_cell(number: int, cell) -> str:
    first = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
    return f"cell {number} ({first!r})"


def _dead_kernel_record(stem: str, executed: Path, kernel_log: Path) -> dict[str, Any]:
    """Which cell was running when the kernel died, and the last lines of its log."""
    cell = "an unknown cell"
    try:
        # papermill marks even the cell the kernel died in "completed"; it is the last one started
        for number, c in enumerate(_cells_as_committed(executed), start=1):
            if c.metadata.get("papermill", {}).get("start_time"):
                cell = _describe_cell(number, c)
    except Exception:  # a notebook not yet written: the kernel died while starting
        pass
    try:
        lines = kernel_log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    lines = [line for line in lines if line.strip()][-KERNEL_LOG_LINES:]
    return {"notebook": stem, "error": "kernel died", "cell": cell, "kernel_log_tail": lines,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _dead_kernel_message(stem: str, record: dict[str, Any]) -> str:
    tail = "\n".join("    " + line[:200] for line in record["kernel_log_tail"]) or "    (the kernel wrote nothing)"
    return (f"the kernel of {stem} died while running {record['cell']}. The last lines of its log:\n{tail}\n"
            f"The partial notebook and the kernel's whole log are kept in {record['kept_at']}. "
            f"Per-epoch training checkpoints are kept under {_ckpt.artifacts_dir() / 'training'}: "
            f"running the notebook again resumes training where it stopped, and training that "
            f"had finished is loaded instead of repeated.")


def _keep_failed(staging: Path, stem: str) -> Path:
    """Move a dead run's staging directory (partial notebook, figures, kernel log) out of results/."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = _ckpt.artifacts_dir() / "failed" / f"{stem}-{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging), str(target))
    return target


def record_attempts(executed: Path, metrics_file: Path, previous: list[dict[str, Any]]) -> None:
    """Note earlier attempts that died in ``metrics.json`` and atop the executed notebook."""
    import nbformat

    doc = json.loads(metrics_file.read_text())
    doc["runner"] = {"attempts": len(previous) + 1,
                     "previous_attempts": [{k: v for k, v in r.items() if k != "kept_at"} for r in previous]}
    atomic_write_bytes(metrics_file, (json.dumps(doc, indent=2, default=json_default) + "\n").encode())
    nb = nbformat.read(executed, as_version=4)
    died = "; ".join(f"attempt {i} died in {r['cell']}" for i, r in enumerate(previous, start=1))
    note = nbformat.v4.new_markdown_cell(
        f"> **This run took {len(previous) + 1} attempts.** The notebook's kernel died ({died}); "
        f"the runner started it again, and its training calls resumed from their per-epoch "
        f"checkpoints or loaded the trainings that had finished. The numbers below are from the "
        f"last attempt; `metrics.json` keeps the last lines of each dead kernel's log.")
    note.metadata["tags"] = ["runner-note"]
    nb.cells.insert(0, note)
    atomic_write_bytes(executed, nbformat.writes(nb).encode())


def _failing_cell(executed: Path, err) -> str:
    """'cell N (first line)', N counted in the notebook as committed (without the injected cell)."""
    try:
        for number, cell in enumerate(_cells_as_committed(executed), start=1):
            if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                return _describe_cell(number, cell)
    except Exception:  # the message must never hide the original failure
        pass
    return f"execution count {err.exec_count}"


def relativize_paths(executed: Path, replacements: dict[str, str]) -> None:
    """Rewrite absolute paths of this machine (papermill metadata, printed paths) in an
    executed notebook, so rendered results are the same wherever they were produced."""
    text = executed.read_text()
    for old, new in replacements.items():
        text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    atomic_write_bytes(executed, text.encode())


def render_html(executed: Path, html_path: Path) -> None:
    """One self-contained HTML page of an executed notebook (see :func:`imgmine_jax.site.render_html`)."""
    _site.render_html(executed, html_path)


def write_index(results_dir: Path = RESULTS_DIR) -> Path:
    """Regenerate ``results/README.md`` (see :func:`imgmine_jax.site.write_index`)."""
    return _site.write_index(results_dir)


def _parse_param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise SystemExit(f"-p expects name=value; got {text!r}")
    name, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value


def _parse_grid(text: str) -> tuple[str, list[Any]]:
    """``name=v1,v2,...`` (each value JSON, else a string) for ``--grid``."""
    if "=" not in text or not text.split("=", 1)[0].strip() or not text.split("=", 1)[1].strip():
        raise SystemExit(f"--grid expects name=value1,value2,...; got {text!r}")
    name, raw = text.split("=", 1)
    try:                       # a JSON list as a whole (values that contain commas)
        values = json.loads(raw)
        values = values if isinstance(values, list) else [values]
    except json.JSONDecodeError:
        values = [_parse_param(f"{name}={part}")[1] for part in raw.split(",")]
    if any(isinstance(v, str) and not v.strip() for v in values):
        raise SystemExit(f"--grid {name}: empty value in {raw!r}")
    return name.strip(), values


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The product of the ``--grid`` values, in the order given (the last name varies fastest)."""
    import itertools

    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imgmine_jax.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="names, stems or number prefixes (default: all)")
    parser.add_argument("--profile", default="full", choices=PROFILES)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="extra notebook parameter (JSON value), e.g. -p dataset='\"fashion_mnist\"'")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="run the notebook once per combination of these values (one run record each), "
                             "then compare the runs")
    parser.add_argument("--publish", action="store_true",
                        help="also put a run with -p/--grid or the quick profile into the results directory "
                             "(by default only the full profile with the committed parameters publishes)")
    parser.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    parser.add_argument("--retries", type=int, default=1,
                        help="times to start a notebook again when its kernel dies (default: 1)")
    parser.add_argument("--site", action="store_true",
                        help="execute nothing: build the static site from the results directory")
    parser.add_argument("--rerender", action="store_true",
                        help="execute nothing: re-tidy the executed notebooks, HTML and README.md, then the site")
    parser.add_argument("--site-dir", type=Path, default=_site.SITE_DIR,
                        help="where the site is built (default: build/site/)")
    args = parser.parse_args(argv)
    if args.timeout is not None and args.timeout < 1:
        raise SystemExit(f"--timeout must be a positive number of seconds; got {args.timeout}")
    if args.retries < 0:
        parser.error(f"--retries must be >= 0; got {args.retries}")
    if args.site or args.rerender:
        if args.notebooks or args.parameter or args.grid:
            raise SystemExit("--site and --rerender execute nothing: they take no notebooks, -p or --grid")
        if args.rerender:
            for path in _site.rerender(args.results_dir):
                print(f"[run] re-rendered {path.parent.name}", flush=True)
        print(f"[run] site: {_site.build_site(args.results_dir, args.site_dir)}")
        return 0
    parameters = dict(_parse_param(p) for p in args.parameter)
    grid = dict(_parse_grid(g) for g in args.grid)
    both = sorted(set(grid) & set(parameters))
    if both:
        raise SystemExit(f"parameter {both[0]!r} is given both with -p and --grid; give it once")
    notebooks = find_notebooks(args.notebooks)
    if grid and len(notebooks) != 1:
        raise SystemExit(f"--grid runs one notebook; got {len(notebooks)}: {[nb.stem for nb in notebooks]}")
    # A parameter applies to the selected notebooks that define it; one that none defines is a typo.
    defined = {nb: notebook_parameters(nb) for nb in notebooks}
    for name in [*parameters, *grid]:
        if not any(name in d for d in defined.values()):
            raise SystemExit(f"no selected notebook has a parameter {name!r}; "
                             f"expected one of {sorted(set().union(*defined.values()))}")
    points = grid_points(grid) if grid else [{}]
    for nb in notebooks:
        for point in points:
            try:
                check_parameters(nb, {k: v for k, v in {**parameters, **point}.items() if k in defined[nb]})
            except ValueError as err:
                raise SystemExit(str(err)) from None
    # results/ changes only on purpose: the committed defaults in the full profile, or --publish
    if grid and args.publish:
        raise SystemExit("--grid runs are recorded and compared, not published; publish the chosen one "
                         "with -p NAME=VALUE --publish")
    publish = args.publish or (not parameters and not grid and args.profile == "full")
    command = ["python", "-m", "imgmine_jax.run", *(sys.argv[1:] if argv is None else argv)]
    failures = []
    recorded: list[str] = []      # the run ids of this invocation (for the grid's comparison)
    total = len(notebooks) * len(points)
    k = 0
    for nb in notebooks:
        for point in points:
            k += 1
            chosen = {k_: v for k_, v in {**parameters, **point}.items() if k_ in defined[nb]}
            t0 = time.perf_counter()
            label = " ".join(f"{n}={json.dumps(v)}" for n, v in point.items())
            counter = f"run {k} of {total}: " if total > 1 else ""
            print(f"[run] {counter}{nb.stem} ({args.profile}{', ' + label if label else ''}) ...", flush=True)
            try:
                target = run_with_retries(nb, args.results_dir if publish else None, args.profile, chosen,
                                          args.timeout, args.retries, publish=publish, command=command)
            except NotebookFailed as err:
                failures.append(f"{nb.stem}{' ' + label if label else ''}")
                where = getattr(err, "run_dir", None)
                if where is not None:
                    recorded.append(Path(where).name)
                print(f"[run] FAILED {err}; {'previous results kept' if publish else 'recorded'}"
                      f"{' in ' + str(where) if where else ''}", flush=True)
                continue
            print(f"[run] {nb.stem} done in {time.perf_counter() - t0:.0f} s -> {target}", flush=True)
            recorded.append(target.name)
            if not publish:
                print(f"[run] not published to {args.results_dir} (use --publish); "
                      f"compare: python -m imgmine_jax.runs compare {nb.stem[:2]}", flush=True)
    if grid:
        _grid_comparison(notebooks[0], recorded)
    if publish:
        index = write_index(args.results_dir)
        print(f"[run] index: {index}")
    if publish and args.results_dir.resolve() == RESULTS_DIR.resolve() and len(failures) < total:
        # a publishing run: the site follows the results it was built from
        try:
            print(f"[run] site: {_site.build_site(args.results_dir, args.site_dir)}")
        except Exception as err:   # the results are written; a site that fails to build must not hide that
            failures.append("site")
            print(f"[run] site build FAILED: {err}", flush=True)
    if failures:
        print(f"[run] {len(failures)} of {total} run(s) failed: {', '.join(failures)}", flush=True)
    return 1 if failures else 0


def _grid_comparison(notebook: Path, ids: list[str]) -> Path | None:
    """Compare the runs ``ids`` of ``notebook`` (the grid just run): print the table and write a
    comparison page into ``artifacts/runs/<notebook>/``."""
    import pandas as pd

    count = len(ids)
    try:
        frame = _runs.compare(notebook.stem, ids)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        page = _runs.compare_html(notebook.stem, _runs.runs_root() / notebook.stem / f"compare-{stamp}.html", ids)
    except Exception as err:   # the runs are recorded; a comparison that fails must not hide that
        print(f"[run] comparison FAILED: {err}", flush=True)
        return None
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(f"[run] comparison of the {count} runs:\n{frame}", flush=True)
    print(f"[run] comparison page: {page}", flush=True)
    return page


def run_with_retries(notebook: Path, results_dir: Path | None, profile: str, parameters: dict[str, Any] | None = None,
                     timeout: int | None = None, retries: int = 1, *, publish: bool = True,
                     command: list[str] | None = None) -> Path:
    """:func:`run_notebook`, started again up to ``retries`` times when its kernel dies.

    A cell that raises is not retried (it would raise again); a dead kernel may not
    recur, and the retry resumes training from the checkpoints the dead attempt left.
    Each attempt is a run record of its own (the dead ones with status ``kernel died``).
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0; got {retries!r}")
    attempts: list[dict[str, Any]] = []
    while True:
        try:
            return run_notebook(notebook, results_dir, profile, parameters, timeout, previous_attempts=attempts,
                                publish=publish, command=command)
        except KernelDied as err:
            attempts.append(err.record)
            if len(attempts) > retries:
                raise
            print(f"[run] {err}\n[run] retrying {notebook.stem} (attempt {len(attempts) + 1} of {retries + 1})",
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
