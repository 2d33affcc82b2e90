"""Run records: every execution of a notebook in its own folder, listed, compared, removed.

Each execution -- by the runner (``python -m imgmine_jax.run``) or interactively in
JupyterLab (through :class:`imgmine_jax.run.Report`) -- gets a folder
``artifacts/runs/<notebook>/<UTC timestamp>-<short id>/`` holding:

- ``run.json``: notebook, every parameter (and which were overridden), profile, git commit
  and whether the tree was dirty, command line, start/end time, wall time, status
  (``running``, ``finished``, ``failed``, ``kernel died``, ``interrupted``), machine and
  library versions, headline metrics, the training calls (``trainings``) and for a
  failed run the failing cell and its traceback;
- ``metrics.json`` and ``figures/`` (what :class:`~imgmine_jax.run.Report` wrote);
- ``trainings.jsonl`` (one line per :func:`imgmine_jax.train.fit` / ``sweep`` call: its
  configuration, whether it was reused from the finished-training cache, its cache key)
  and ``history/<NN>-<kind>.jsonl`` (that call's per-epoch history, one JSON line per epoch);
- ``tensorboard/<NN>-fit/``, ``tensorboard/<NN>-sweep/<learning_rate=..,seed=..>/``:
  TensorBoard event files of each ``fit`` and of each member of a ``sweep`` (per-epoch
  scalars and the hyperparameters): ``tensorboard --logdir artifacts/runs``;
- for runner runs, the executed notebook and its HTML page.

Command line::

    python -m imgmine_jax.runs list [NOTEBOOK]
    python -m imgmine_jax.runs show RUN_ID
    python -m imgmine_jax.runs compare 01 [--html PATH] [--runs ID ...]
    python -m imgmine_jax.runs remove RUN_ID ... | --older-than DAYS [NOTEBOOK]
    python -m imgmine_jax.runs clean [--max-gb N]      # bound artifacts/training/

From Python (a notebook cell): ``imgmine_jax.runs.compare("01")`` returns a pandas
DataFrame, ``imgmine_jax.runs.plot_curves("01")`` overlays the learning curves.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

from imgmine_jax.files import atomic_write_bytes, json_default

RUN_DIR_ENV = "IMGMINE_RUN_DIR"     # the run folder the runner chose (inside the notebook's kernel)
REPO_ROOT = Path(__file__).resolve().parent.parent
RECORD = "run.json"
TRAININGS = "trainings.jsonl"
STATUSES = ("running", "finished", "failed", "kernel died", "interrupted")
_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


class RunError(ValueError):
    """A run record that is not there or cannot be read; the message names it."""


# --------------------------------------------------------------------------- where runs live

def runs_root() -> Path:
    from imgmine_jax import checkpoint

    return checkpoint.artifacts_dir() / "runs"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def new_run_dir(notebook: str) -> Path:
    """A new, empty ``artifacts/runs/<notebook>/<timestamp>-<short id>/``.

    Folders sort by name in the order they were made: the short id is random, so a run that
    would share its second with an earlier run of the same notebook (a fast grid) waits for
    the next second rather than sort before it by chance.
    """
    parent = runs_root() / notebook
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if any(parent.glob(f"{stamp}-*")):
            time.sleep(0.05)
            continue
        path = parent / f"{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def git_info() -> dict[str, Any]:
    """The repository's commit and whether its tracked files differ from it (None outside git).

    ``results/`` does not count: a full run publishes there notebook by notebook, and the
    notebooks after the first would otherwise all be recorded as run from modified code."""
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def processor() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """Host and library versions, without starting JAX (the runner must not take the accelerator)."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "tensorflow-cpu"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"host": platform.node(), "system": platform.platform(), "machine": platform.machine(),
            "processor": processor(), "cpu_count": os.cpu_count(), "versions": versions}


def _dump(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, default=_jsonable) + "\n").encode()


def _jsonable(value):
    try:
        return json_default(value)
    except TypeError:
        return repr(value)


def read_record(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RECORD
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"run folder {run_dir} has no {RECORD} (deleted or not a run record)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is corrupted ({err}); expected a JSON run record") from None
    if not isinstance(doc, dict):
        raise RunError(f"{path} is corrupted (a {type(doc).__name__}); expected a JSON object")
    return doc


def update_record(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run.json`` (written atomically: a reader sees old or new)."""
    path = Path(run_dir) / RECORD
    try:
        doc = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        doc = {}
    doc.update(fields)
    atomic_write_bytes(path, _dump(doc))
    return doc


def start_record(run_dir: Path, notebook: str, *, source: str, profile: str | None,
                 parameters: dict[str, Any], overrides: dict[str, Any], command: list[str] | None = None,
                 **extra: Any) -> dict[str, Any]:
    """Write the opening ``run.json`` of a run (status ``running``)."""
    return update_record(run_dir, run_id=Path(run_dir).name, notebook=notebook, source=source, status="running",
                         profile=profile, parameters=parameters, overrides=overrides,
                         command=list(sys.argv if command is None else command), cwd=os.getcwd(),
                         started=now(), git=git_info(), machine=machine_info(), **extra)


def trainings(run_dir: Path) -> list[dict[str, Any]]:
    """The training calls recorded in a run folder, in order."""
    path = Path(run_dir) / TRAININGS
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass       # a line cut by a killed kernel
    return out


def history(run_dir: Path, name: str) -> list[dict[str, Any]]:
    path = Path(run_dir) / "history" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- the training recorder

_active: dict[str, Any] = {"dir": None, "hparams": {}}


def activate(run_dir: Path | None, hparams: dict[str, Any] | None = None) -> None:
    """Record every following training call of this process into ``run_dir`` (None: stop)."""
    _active["dir"] = None if run_dir is None else Path(run_dir)
    _active["hparams"] = dict(hparams or {})


def active_dir() -> Path | None:
    if _active["dir"] is not None:
        return _active["dir"]
    env = os.environ.get(RUN_DIR_ENV)
    return Path(env) if env else None


def record_training(kind: str, cfg, rows: list[dict], *, reused: bool, cache_key: str | None,
                    train_seconds: float, task: str = "", members: list[dict] | None = None) -> Path | None:
    """Called by :func:`imgmine_jax.train.fit` and ``sweep`` when they finish: append the call to
    ``trainings.jsonl``, its per-epoch history to ``history/``, and TensorBoard summaries: one
    run for a ``fit``, one per member of a ``sweep`` (``members``: each member's hyperparameters,
    in the order of the arrays in ``rows``). Does nothing outside a run; a failure here warns and
    never stops training."""
    run_dir = active_dir()
    if run_dir is None:
        return None
    try:
        import dataclasses

        number = len(trainings(run_dir)) + 1
        name = f"{number:02d}-{kind}"
        lines = b"".join(json.dumps(_plain(row), default=_jsonable).encode() + b"\n" for row in rows)
        atomic_write_bytes(run_dir / "history" / f"{name}.jsonl", lines)
        config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
        entry = {"call": number, "name": name, "kind": kind, "reused": bool(reused), "cache_key": cache_key,
                 "epochs": len(rows), "train_seconds": round(float(train_seconds), 3), "task": task,
                 "config": _plain(config), "time": now()}
        with open(run_dir / TRAININGS, "ab") as f:
            f.write(json.dumps(entry, default=_jsonable).encode() + b"\n")
        hparams = {**_active["hparams"], **config}
        if members is None:
            write_tensorboard(run_dir / "tensorboard" / name, rows, hparams)
        for i, member in enumerate(members or []):
            member_rows = [{k: _member_value(v, i) for k, v in row.items()} for row in rows]
            label = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in member.items())
            write_tensorboard(run_dir / "tensorboard" / name / label, member_rows, {**hparams, **member})
        return run_dir
    except Exception as err:     # the record must never cost a finished training
        warnings.warn(f"could not record the training in {run_dir}: {err}", stacklevel=2)
        return None


def _plain(value):
    import numpy as np

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def _member_value(value, i: int):
    """Member ``i``'s entry of a sweep's per-member metric (scalars, e.g. the epoch, are shared)."""
    import numpy as np

    arr = np.asarray(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    return arr[i] if arr is not None and arr.ndim == 1 else value


def _scalar(value) -> float | None:
    import numpy as np

    if isinstance(value, bool):
        return None
    try:
        arr = np.asarray(value)
    except Exception:
        return None
    if arr.shape != () or arr.dtype.kind not in "fiu":
        return None
    return float(arr)


def write_tensorboard(log_dir: Path, rows: list[dict], hparams: dict[str, Any]) -> Path:
    """Per-epoch scalars of a history (step = epoch) and the hyperparameters, with Flax's
    TensorBoard writer (TensorFlow's summary writer)."""
    from imgmine_jax.logs import quiet_native_startup

    with quiet_native_startup():
        from flax.metrics.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir), auto_flush=False)
    try:
        for row in rows:
            step = int(row.get("epoch", 0))
            for key, value in row.items():
                number = _scalar(value)
                if key != "epoch" and number is not None:
                    writer.scalar(key, number, step)
        writer.hparams({k: v if isinstance(v, (bool, int, float, str)) else json.dumps(_plain(v), default=str)
                        for k, v in hparams.items() if v is not None})
        writer.flush()
    finally:
        writer.close()
    return log_dir


# --------------------------------------------------------------------------- listing and comparing

def _notebook_name(notebook: str) -> str:
    """``01`` -> ``01_cnn_classification`` (a folder under ``artifacts/runs/`` or a notebook)."""
    root = runs_root()
    names = sorted({p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set())
    from imgmine_jax.run import NOTEBOOK_DIR

    names = sorted(set(names) | {p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")})
    matches = [n for n in names if n == notebook or n.startswith(notebook + "_")]
    if len(matches) != 1:
        raise RunError(f"notebook {notebook!r} matches {len(matches)} of {names}; expected exactly one")
    return matches[0]


def run_dirs(notebook: str | None = None) -> list[Path]:
    """Run folders (oldest first), of one notebook or all."""
    root = runs_root()
    if not root.is_dir():
        return []
    parents = [root / _notebook_name(notebook)] if notebook else sorted(p for p in root.iterdir() if p.is_dir())
    return sorted((d for p in parents if p.is_dir() for d in p.iterdir() if d.is_dir() and _ID.match(d.name)),
                  key=lambda d: d.name)


def find_run(run_id: str) -> Path:
    """The folder of run ``run_id`` (its full id or an unambiguous prefix or its short id)."""
    if not isinstance(run_id, str) or not run_id:
        raise RunError(f"a run id must be a non-empty string; got {run_id!r}")
    found = [d for d in run_dirs() if d.name == run_id or d.name.startswith(run_id) or d.name.endswith("-" + run_id)]
    if len(found) != 1:
        raise RunError(f"run id {run_id!r} matches {len(found)} run records; expected exactly one "
                       f"(see `python -m imgmine_jax.runs list`)")
    return found[0]


def load(run_dir: Path) -> dict[str, Any]:
    """``run.json`` with the trainings recorded so far, ``dir`` set."""
    doc = read_record(run_dir)
    doc.setdefault("trainings", trainings(run_dir))
    doc["dir"] = str(run_dir)
    return doc


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def compare(notebook: str, runs: Iterable[str] | None = None):
    """One row per run of ``notebook`` (a pandas DataFrame, indexed by run id): status, wall
    time, trainings reused from the cache, the parameters that differ between the runs, and
    the headline metrics."""
    import pandas as pd

    name = _notebook_name(notebook)
    dirs = [find_run(r) for r in runs] if runs else run_dirs(name)
    docs = []
    for d in dirs:
        try:
            docs.append(load(d))
        except RunError as err:
            warnings.warn(str(err), stacklevel=2)
    if not docs:
        raise RunError(f"notebook {name} has no run records under {runs_root() / name}; "
                       f"run it first (python -m imgmine_jax.run {name[:2]})")
    params = [{"profile": d.get("profile"), **(d.get("parameters") or {})} for d in docs]
    keys = sorted({k for p in params for k in p})
    differ = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True, default=str) for p in params}) > 1]
    rows = []
    for doc, p in zip(docs, params):
        calls = doc.get("trainings") or []
        row = {"run": doc.get("run_id", Path(doc["dir"]).name), "status": doc.get("status"),
               "started": doc.get("started"), "wall_seconds": doc.get("wall_seconds"),
               "trainings": len(calls), "reused": sum(bool(c.get("reused")) for c in calls)}
        row.update({k: p.get(k) for k in differ})
        row.update(_headline(doc.get("metrics")))
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def plot_curves(notebook: str, runs: Iterable[str] | None = None, column: str | None = None):
    """The learning curves (``column`` per epoch, default the first ``val_`` metric or the loss)
    of every training call of the selected runs, overlaid in one figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    name = _notebook_name(notebook)
    dirs = [find_run(r) for r in runs] if runs else run_dirs(name)
    fig, ax = plt.subplots(figsize=(7, 4))
    for d in dirs:
        for call in trainings(d):
            try:
                rows = history(d, call["name"])
            except (OSError, json.JSONDecodeError):
                continue
            if not rows:
                continue
            col = column or next((k for k in ("val_accuracy", "val_loss", "train_loss") if k in rows[0]), None)
            if col is None or col not in rows[0]:
                continue
            y = np.array([r[col] for r in rows], dtype=float)
            what = col if y.ndim == 1 else f"{col} (mean of {y.shape[1]} members)"
            y = y if y.ndim == 1 else y.mean(axis=1)       # a sweep: the mean over its members
            ax.plot([r["epoch"] for r in rows], y, marker="o", label=f"{d.name[-6:]} {call['name']} {what}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(column or "validation accuracy, else loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{name}: learning curves of {len(dirs)} run(s)")
    if ax.lines:
        ax.legend(fontsize=7)
    return fig


def compare_html(notebook: str, path: Path, runs: Iterable[str] | None = None) -> Path:
    """A self-contained comparison page: the table and the overlaid learning curves."""
    import base64
    import io

    import matplotlib.pyplot as plt

    frame = compare(notebook, runs)
    fig = plot_curves(notebook, runs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode()
    title = f"Runs of {_notebook_name(notebook)}"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
            f"<h1>{title}</h1>{frame.to_html(na_rep='')}"
            f"<h2>Learning curves</h2><img alt='learning curves' src='data:image/png;base64,{png}'></body></html>")
    atomic_write_bytes(Path(path), page.encode())
    return Path(path)


def remove(run_ids: Iterable[str] = (), older_than_days: float | None = None,
           notebook: str | None = None) -> list[Path]:
    """Delete run folders by id, or those started more than ``older_than_days`` ago."""
    targets = [find_run(r) for r in run_ids]
    if older_than_days is not None:
        if isinstance(older_than_days, bool) or not isinstance(older_than_days, (int, float)) or older_than_days < 0:
            raise RunError(f"--older-than expects a number of days >= 0; got {older_than_days!r}")
        cutoff = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=older_than_days)
        for d in run_dirs(notebook):
            started = _dt.datetime.strptime(d.name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
            if started < cutoff and d not in targets:
                targets.append(d)
    for d in targets:
        shutil.rmtree(d)
    return targets


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def clean(max_bytes: int) -> list[Path]:
    """Bound the finished-training cache (``artifacts/training/``) to ``max_bytes``: remove the
    least recently used entries first."""
    from imgmine_jax import checkpoint

    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, float)) or max_bytes < 0:
        raise RunError(f"the cache bound must be a number of bytes >= 0; got {max_bytes!r}")
    root = checkpoint.artifacts_dir() / "training"
    entries = [(d.stat().st_mtime, _size(d), d) for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, d in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        shutil.rmtree(d, ignore_errors=True)
        total -= size
        removed.append(d)
    return removed


# --------------------------------------------------------------------------- command line

def _print_list(notebook: str | None) -> None:
    for d in run_dirs(notebook):
        try:
            doc = read_record(d)
        except RunError as err:
            print(f"{d.parent.name}  {d.name}  (unreadable: {err})")
            continue
        over = " ".join(f"{k}={json.dumps(v)}" for k, v in (doc.get("overrides") or {}).items())
        print(f"{d.parent.name}  {d.name}  {doc.get('status', '?'):<11} {doc.get('profile') or '?':<5} "
              f"{doc.get('wall_seconds', '')!s:>7}s  {over}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imgmine_jax.runs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list run records")
    p.add_argument("notebook", nargs="?")
    p = sub.add_parser("show", help="print one run record")
    p.add_argument("run_id")
    p = sub.add_parser("compare", help="compare the runs of a notebook")
    p.add_argument("notebook")
    p.add_argument("--runs", nargs="+", metavar="RUN_ID", help="only these runs")
    p.add_argument("--html", type=Path, help="also write a comparison page")
    p = sub.add_parser("remove", help="delete run records")
    p.add_argument("run_ids", nargs="*")
    p.add_argument("--older-than", type=float, metavar="DAYS")
    p.add_argument("--notebook")
    p = sub.add_parser("clean", help="bound the disk use of the finished-training cache")
    p.add_argument("--max-gb", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            _print_list(args.notebook)
        elif args.command == "show":
            print(json.dumps(load(find_run(args.run_id)), indent=2, default=str))
        elif args.command == "compare":
            import pandas as pd

            with pd.option_context("display.width", 200, "display.max_columns", 50):
                print(compare(args.notebook, args.runs))
            if args.html:
                print(f"comparison page: {compare_html(args.notebook, args.html, args.runs)}")
        elif args.command == "remove":
            if not args.run_ids and args.older_than is None:
                raise RunError("remove needs run ids or --older-than DAYS")
            for d in remove(args.run_ids, args.older_than, args.notebook):
                print(f"removed {d}")
        elif args.command == "clean":
            removed = clean(int(args.max_gb * 1e9))
            print(f"removed {len(removed)} cached training(s)" + "".join(f"\n  {d}" for d in removed))
    except RunError as err:
        raise SystemExit(f"runs {args.command}: {err}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
