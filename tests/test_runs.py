"""Run records: every execution recorded, compared, repeatable; results/ changes only on purpose."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from flax import nnx
from nbformat.v4 import new_code_cell, new_notebook
from tiny_notebooks import KERNELSPEC, write_notebook

from imgmine_jax import run, runs, train

TINY_MODEL = """
class Tiny(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(64, 3, rngs=rngs)

    def __call__(self, x):
        return self.lin(x.reshape(x.shape[0], -1))
"""


def _tiny_data(n: int = 96) -> dict:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    images = (rng.integers(0, 60, (n, 8, 8, 1)) + 60 * labels[:, None, None, None]).astype(np.uint8)
    return {"image": images, "label": labels.astype(np.int32)}


exec(TINY_MODEL)   # the same model in-process and in the notebooks below


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGMINE_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv(runs.RUN_DIR_ENV, raising=False)
    monkeypatch.delenv(train.CACHE_ENV, raising=False)
    yield tmp_path / "artifacts"
    runs.activate(None)


def _fit(cfg, log=None):
    data = _tiny_data()
    return train.fit(Tiny(nnx.Rngs(0)), train.Classification(3), data, data, cfg, progress=False, log=log)  # noqa: F821


def test_fit_records_history_cache_use_and_tensorboard(artifacts):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = runs.new_run_dir("99_demo")
    runs.activate(run_dir, hparams={"profile": "quick", "learning_rate": 0.01, "sizes": [1, 2]})
    cfg = train.TrainConfig(epochs=2, batch_size=32, learning_rate=0.01, seed=0)
    first = _fit(cfg)
    again = _fit(cfg)                                                 # the same call: the cache
    other = _fit(dataclasses.replace(cfg, learning_rate=0.02))        # another recipe: a miss
    assert (first.reused, again.reused, other.reused) == (False, True, False)

    calls = runs.trainings(run_dir)
    assert [(c["name"], c["reused"]) for c in calls] == [("01-fit", False), ("02-fit", True), ("03-fit", False)]
    assert calls[0]["cache_key"] == calls[1]["cache_key"] != calls[2]["cache_key"]
    assert calls[2]["config"]["learning_rate"] == 0.02
    rows = runs.history(run_dir, "01-fit")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows == runs.history(run_dir, "02-fit")                    # the reused history is the trained one
    assert rows[1]["val_accuracy"] == pytest.approx(float(first.history[1]["val_accuracy"]))
    fig = runs.plot_curves("99_demo")                                 # every call's curve, overlaid
    assert [list(line.get_ydata()) for line in fig.axes[0].lines][0] == [r["val_accuracy"] for r in rows]
    assert len(fig.axes[0].lines) == 3 and fig.axes[0].get_title()

    # TensorBoard's own reader finds every per-epoch scalar and the hyperparameters
    acc = EventAccumulator(str(run_dir / "tensorboard" / "01-fit"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = acc.Tags()["tensors"]
    for tag in ("train_loss", "val_loss", "val_accuracy", "lr", "images_per_sec"):
        assert tag in tags, tags
        events = acc.Tensors(tag)
        assert [e.step for e in events] == [1, 2]
    values = [float(np.asarray(nnx_tensor(e))) for e in acc.Tensors("val_loss")]
    assert values == pytest.approx([float(r["val_loss"]) for r in rows], rel=1e-6)
    assert "_hparams_/session_start_info" in tags
    plugin = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    assert b"learning_rate" in plugin and b"batch_size" in plugin


def nnx_tensor(event):
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto)


def test_sweep_records_one_tensorboard_run_per_member(artifacts):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = runs.new_run_dir("99_demo")
    runs.activate(run_dir, hparams={"profile": "quick"})
    data = _tiny_data()
    cfg = train.TrainConfig(epochs=2, batch_size=32, seed=0)
    swept = train.sweep(lambda rngs: Tiny(rngs), train.Classification(3), data, data, cfg,  # noqa: F821
                        [0.01, 0.1], [0, 1], progress=False, log=None)
    [call] = runs.trainings(run_dir)
    assert call["name"] == "01-sweep"
    members = sorted(p.name for p in (run_dir / "tensorboard" / "01-sweep").iterdir())
    assert members == ["learning_rate=0.01,seed=0", "learning_rate=0.01,seed=1",
                       "learning_rate=0.1,seed=0", "learning_rate=0.1,seed=1"]
    for i, (lr, seed) in enumerate(zip(swept.learning_rates, swept.seeds)):
        acc = EventAccumulator(str(run_dir / "tensorboard" / "01-sweep" / f"learning_rate={lr:g},seed={seed}"),
                               size_guidance={"tensors": 0})
        acc.Reload()
        values = [float(np.asarray(nnx_tensor(e))) for e in acc.Tensors("val_accuracy")]
        assert values == pytest.approx([float(row["val_accuracy"][i]) for row in swept.history], rel=1e-6)
        plugin = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        assert b"learning_rate" in plugin and b"seed" in plugin


def test_fit_outside_a_run_records_nothing(artifacts):
    result = _fit(train.TrainConfig(epochs=1, batch_size=32, seed=0))
    assert len(result.history) == 1
    assert not (artifacts / "runs").exists()


# --------------------------------------------------------------------------- the runner

NB_BODY = """
import numpy as np
from flax import nnx
""" + TINY_MODEL + """
from imgmine_jax import train
from imgmine_jax.run import Report
report = Report("{stem}", profile=profile, seed=seed, dataset="synthetic")
rng = np.random.default_rng(0)
labels = rng.integers(0, 3, 96)
images = (rng.integers(0, 60, (96, 8, 8, 1)) + 60 * labels[:, None, None, None]).astype(np.uint8)
arrays = {{"image": images, "label": labels.astype(np.int32)}}
cfg = train.TrainConfig(epochs=2, batch_size=32, learning_rate=learning_rate, seed=seed)
result = train.fit(Tiny(nnx.Rngs(seed)), train.Classification(3), arrays, arrays, cfg, progress=False)
report.metrics["val_accuracy"] = float(result.history[-1]["val_accuracy"])
report.metrics["val_loss"] = float(result.history[-1]["val_loss"])
report.write()
"""


def _notebook(path: Path, body: str) -> Path:
    return write_notebook(path, 'profile = "full"\nlearning_rate = 0.01\nseed = 0\n', body)


@pytest.mark.notebook
def test_runs_are_recorded_compared_and_reuse_finished_training(tmp_path, artifacts, capsys):
    nb = _notebook(tmp_path / "96_explore.ipynb", NB_BODY.format(stem="96_explore"))
    results = tmp_path / "results"
    common = [str(nb), "--profile", "quick", "--results-dir", str(results)]

    assert run.main(common + ["-p", "learning_rate=0.01"]) == 0
    assert run.main(common + ["-p", "learning_rate=0.05"]) == 0
    assert not results.exists()                          # explorations do not touch results/
    first, second = runs.run_dirs("96_explore")
    doc = runs.read_record(first)
    assert doc["status"] == "finished" and doc["source"] == "runner" and doc["profile"] == "quick"
    assert doc["parameters"] == {"learning_rate": 0.01, "seed": 0}
    assert doc["overrides"] == {"learning_rate": 0.01} and doc["published"] is False
    assert doc["command"][-2:] == ["-p", "learning_rate=0.01"]
    assert set(doc["git"]) == {"commit", "dirty"} and doc["machine"]["versions"]["jax"]
    assert doc["started"] <= doc["ended"] and doc["wall_seconds"] > 0
    for name in ("metrics.json", "96_explore.ipynb", "96_explore.html", "history/01-fit.jsonl"):
        assert (first / name).is_file(), name
    assert list((first / "tensorboard" / "01-fit").glob("events.out.tfevents.*"))
    assert not list(first.glob(".staging-*"))

    frame = runs.compare("96_explore")
    assert list(frame.index) == [first.name, second.name]
    assert list(frame["learning_rate"]) == [0.01, 0.05]
    assert "seed" not in frame.columns                   # only the parameters that differ
    assert list(frame["status"]) == ["finished", "finished"]
    assert list(frame["val_accuracy"]) == [runs.read_record(d)["metrics"]["val_accuracy"] for d in (first, second)]

    # A 2 x 1 grid: two more records, progress shown, a comparison written; its first member
    # repeats the first run and loads its finished training (asserted from the record).
    capsys.readouterr()
    assert run.main(common + ["--grid", "learning_rate=0.01,0.02", "--grid", "seed=0"]) == 0
    out = capsys.readouterr().out
    assert "run 1 of 2" in out and "run 2 of 2" in out and "comparison of the 2 runs" in out
    assert not results.exists()
    *_, g1, g2 = runs.run_dirs("96_explore")
    r1, r2 = runs.read_record(g1), runs.read_record(g2)
    assert r1["parameters"] == {"learning_rate": 0.01, "seed": 0} and r2["parameters"]["learning_rate"] == 0.02
    assert [t["reused"] for t in r1["trainings"]] == [True]
    assert [t["reused"] for t in r2["trainings"]] == [False]
    assert r1["metrics"] == runs.read_record(first)["metrics"]        # identical numbers from the cache
    assert runs.history(g1, "01-fit") == runs.history(first, "01-fit")
    pages = list((artifacts / "runs" / "96_explore").glob("compare-*.html"))
    assert len(pages) == 1 and g2.name in pages[0].read_text()

    # --publish puts a run into the results directory, and its page names the changed parameter
    assert run.main(common + ["-p", "learning_rate=0.05", "--publish"]) == 0
    published = json.loads((results / "96_explore" / "metrics.json").read_text())
    assert published["injected_parameters"] == {"profile": "quick", "learning_rate": 0.05}
    assert "(set for this run)" in (results / "96_explore" / "96_explore.ipynb").read_text()
    assert runs.read_record(runs.run_dirs("96_explore")[-1])["published_to"] == str(results / "96_explore")


@pytest.mark.notebook
def test_failed_run_is_recorded_with_its_cell_and_traceback(tmp_path, artifacts, capsys):
    nb = _notebook(tmp_path / "95_fails.ipynb", "x = 1\nraise ValueError('bad learning rate ' + str(learning_rate))")
    assert run.main([str(nb), "--profile", "quick", "--grid", "learning_rate=0.1,0.2",
                     "--results-dir", str(tmp_path / "results")]) == 1
    out = capsys.readouterr().out
    assert "run 2 of 2" in out and "2 of 2 run(s) failed" in out     # the first failure did not stop the second
    docs = [runs.read_record(d) for d in runs.run_dirs("95_fails")]
    assert [d["status"] for d in docs] == ["failed", "failed"]
    assert docs[1]["error"]["cell"].startswith("cell 2 ")
    assert "ValueError: bad learning rate 0.2" in docs[1]["error"]["traceback"]
    assert (runs.run_dirs("95_fails")[1] / "95_fails.ipynb").is_file()   # the partial notebook kept


# --------------------------------------------------------------------------- bad input

def test_bad_input_is_one_line_naming_the_value(tmp_path, artifacts):
    with pytest.raises(SystemExit, match=r"--grid expects name=value1,value2,...; got 'learning_rate'"):
        run.main(["01", "--grid", "learning_rate"])
    with pytest.raises(SystemExit, match=r"no selected notebook has a parameter 'learning_rat'"):
        run.main(["01", "--grid", "learning_rat=1e-3,3e-3"])
    with pytest.raises(SystemExit, match=r"parameter learning_rate='fast' of 01_cnn_classification must be a float"):
        run.main(["01", "--grid", "learning_rate=1e-3,fast"])
    with pytest.raises(SystemExit, match=r"--grid runs are recorded and compared, not published"):
        run.main(["01", "--grid", "seed=0,1", "--publish"])
    with pytest.raises(SystemExit, match=r"parameter 'seed' is given both with -p and --grid"):
        run.main(["01", "--grid", "seed=0,1", "-p", "seed=2"])
    with pytest.raises(SystemExit, match=r"--grid runs one notebook; got 2"):
        run.main(["00", "01", "--grid", "seed=0,1"])
    with pytest.raises(SystemExit, match=r"notebook '77' matches 0"):
        run.main(["77"])
    with pytest.raises(runs.RunError, match=r"notebook 01_cnn_classification has no run records"):
        runs.compare("01")
    with pytest.raises(SystemExit, match=r"runs show: run id 'nope' matches 0 run records"):
        runs.main(["show", "nope"])
    broken = runs.new_run_dir("01_cnn_classification")
    (broken / "run.json").write_text('{"status": "finis')
    with pytest.raises(SystemExit, match=r"run.json is corrupted"):
        runs.main(["show", broken.name])
    empty = runs.new_run_dir("01_cnn_classification")
    with pytest.raises(runs.RunError, match=r"has no run.json"):
        runs.read_record(empty)
    with pytest.raises(SystemExit, match=r"remove needs run ids or --older-than"):
        runs.main(["remove"])


def test_remove_and_clean(artifacts):
    old, new = runs.new_run_dir("99_demo"), runs.new_run_dir("99_demo")
    for d in (old, new):
        runs.update_record(d, status="finished")
    aged = old.with_name("20000101T000000Z-abcdef")
    old.rename(aged)
    assert runs.remove(older_than_days=30) == [aged]
    assert runs.run_dirs("99_demo") == [new]
    assert runs.main(["remove", new.name]) == 0 and runs.run_dirs("99_demo") == []

    cache = artifacts / "training"
    for name, size in (("a", 3000), ("b", 3000)):
        (cache / name).mkdir(parents=True)
        (cache / name / "blob").write_bytes(b"x" * size)
    import os
    os.utime(cache / "a", (1, 1))                                     # least recently used
    assert runs.clean(4000) == [cache / "a"]
    assert [p.name for p in cache.iterdir()] == ["b"]


def test_interactive_report_is_a_run_record_of_its_own(artifacts, monkeypatch):
    for name in (run.OUTPUT_ENV, run.PROFILE_ENV, run.NOTEBOOK_ENV, run.INJECTED_ENV):
        monkeypatch.delenv(name, raising=False)
    reports = [run.Report("01_cnn_classification", namespace={"profile": "quick", "seed": s, "epochs": 1})
               for s in (0, 1)]
    assert reports[0].dir != reports[1].dir                         # two explorations, two folders
    assert runs.read_record(reports[0].dir)["status"] == "running"
    reports[1].metrics["accuracy"] = 0.5
    reports[1].write()
    doc = runs.read_record(reports[1].dir)
    assert doc["source"] == "interactive" and doc["status"] == "finished"
    assert doc["metrics"] == {"accuracy": 0.5} and doc["parameters"]["seed"] == 1
    assert doc["overrides"]["epochs"] == 1                           # differs from the notebook's default
    assert (reports[1].dir / "metrics.json").is_file()
    assert runs.active_dir() == reports[1].dir                       # its training calls are recorded there


@pytest.mark.notebook
def test_interactive_failure_is_recorded_with_its_traceback(tmp_path, artifacts, monkeypatch):
    from nbclient import NotebookClient

    for name in (run.OUTPUT_ENV, run.PROFILE_ENV, run.NOTEBOOK_ENV, run.INJECTED_ENV):
        monkeypatch.delenv(name, raising=False)
    nb = new_notebook(cells=[
        new_code_cell('from imgmine_jax.run import Report\nreport = Report("94_live", profile="quick", seed=3)'),
        new_code_cell("raise KeyError('no such column')")],
        metadata={"kernelspec": KERNELSPEC})
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    [record] = runs.run_dirs("94_live")
    doc = runs.read_record(record)
    assert doc["source"] == "interactive" and doc["status"] == "failed"
    assert doc["error"]["ename"] == "KeyError" and doc["error"]["cell"] == "raise KeyError('no such column')"
    assert "KeyError: 'no such column'" in doc["error"]["traceback"]


def test_interactive_control_redraws_and_stays_off_rendered_pages(monkeypatch):
    import matplotlib.pyplot as plt

    from imgmine_jax import plots

    shown = []

    def show(i):
        shown.append(i)
        fig, ax = plt.subplots()
        ax.set_title(f"example {i}")
        return fig

    monkeypatch.setenv(run.OUTPUT_ENV, "/nonexistent")            # a runner's kernel: the static figure only
    before = plt.get_fignums()
    assert plots.interactive(show, range(3, 5)) is None             # no control on the rendered page ...
    assert shown == [3] and plt.get_fignums() == before             # ... but the first option drawn once, closed
    shown.clear()
    monkeypatch.delenv(run.OUTPUT_ENV)
    slider = plots.interactive(show, range(0, 10, 2), description="test image")
    slider.value = 6
    assert shown == [0, 6] and (slider.min, slider.max, slider.step) == (0, 8, 2)
    menu = plots.interactive(show, ["a", "b"])
    menu.value = "b"
    assert shown[-2:] == ["a", "b"]
    with pytest.raises(ValueError, match="options must not be empty"):
        plots.interactive(show, [])
    plt.close("all")


def test_run_folders_sort_in_the_order_they_were_made(artifacts):
    # Grid runs of a fast notebook start within one second; the random short id must not put
    # the second run before the first in `list`, `compare` and `run_dirs`.
    made = [runs.new_run_dir("97_order") for _ in range(4)]
    assert runs.run_dirs("97_order") == made
    assert len({d.name[:16] for d in made}) == 4          # one second each


def test_published_results_do_not_make_the_code_dirty(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "metrics.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(runs, "REPO_ROOT", tmp_path)
    assert runs.git_info()["dirty"] is False
    (tmp_path / "results" / "metrics.json").write_text('{"a": 1}')     # a notebook just published
    assert runs.git_info()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert runs.git_info()["dirty"] is True
