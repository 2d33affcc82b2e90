"""The runner: failures leave earlier results alone; the index is rebuilt from metrics.json."""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from tiny_notebooks import write_notebook

from imgmine_jax import run


def _notebook(path: Path, body: str) -> Path:
    return write_notebook(path, 'profile = "full"\n', body)


OK_BODY = """
import matplotlib.pyplot as plt
from imgmine_jax.run import Report
report = Report("{stem}", profile=profile, seed=1, dataset="none")
fig, ax = plt.subplots(); ax.plot([0, 1]); ax.set_title("a line")
report.figure(fig, "line", key=True)
report.metrics["answer"] = 42
report.write()
"""


@pytest.mark.notebook
def test_failed_notebook_keeps_previous_results(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGMINE_ARTIFACTS", str(tmp_path / "artifacts"))
    nb_dir, results = tmp_path / "nbs", tmp_path / "results"
    nb_dir.mkdir()
    nb = _notebook(nb_dir / "98_demo.ipynb", OK_BODY.format(stem="98_demo"))
    target = run.run_notebook(nb, results, "quick")
    before = (target / "metrics.json").read_text()
    assert json.loads(before)["metrics"]["answer"] == 42

    _notebook(nb, "raise RuntimeError('boom in cell two')")
    failed = r"98_demo failed in cell 2 \(.raise RuntimeError.*\): RuntimeError: boom in cell two"
    with pytest.raises(run.NotebookFailed, match=failed):
        run.run_notebook(nb, results, "quick")
    assert (target / "metrics.json").read_text() == before
    assert (target / "figures" / "line.png").exists()
    assert [p.name for p in results.iterdir()] == ["98_demo"]          # no staging left behind

    index = run.write_index(results).read_text()
    assert "| [98_demo](98_demo/98_demo.ipynb) | quick |" in index
    assert 'src="98_demo/figures/line.png"' in index
    device = json.loads(before)["device"]     # results may come from several machines: each row names its CPU
    assert f"| {device['platform']} x{device['count']}, {device['processor']} (" in index
    executed = nbformat.read(target / "98_demo.ipynb", as_version=4)
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1, "a figure shown by report.figure must not be displayed again"
    assert "This run" in executed.cells[0].source + executed.cells[1].source


def test_report_refuses_untitled_figures_and_unknown_profiles(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv(run.OUTPUT_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=r"profile must be one of \('quick', 'full'\); got 'fast'"):
        run.Report("x", profile="fast", seed=0)
    report = run.Report("x", profile="quick", seed=0)
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="no title"):
        report.figure(fig, "untitled", show=False)


def test_runner_profile_must_reach_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv(run.OUTPUT_ENV, str(tmp_path))
    monkeypatch.setenv(run.PROFILE_ENV, "quick")
    with pytest.raises(RuntimeError, match="runner asked for profile 'quick'"):
        run.Report("x", profile="full", seed=0)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    run.atomic_write_bytes(path, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        run.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_notebook_selection_by_prefix():
    assert run.find_notebooks(["00"])[0].stem == "00_background"
    with pytest.raises(SystemExit, match="matches 0"):
        run.find_notebooks(["77"])


def test_report_records_every_parameter_and_rounds_floats(tmp_path, monkeypatch):
    nb = _notebook(tmp_path / "97_params.ipynb", "pass")
    cells = nbformat.read(nb, as_version=4)
    cells.cells[0].source = 'profile = "full"\nseed = 0\nepochs = 10\nrate = 3e-3\nsizes = [1, 2]\n'
    nbformat.write(cells, nb)
    monkeypatch.setenv(run.OUTPUT_ENV, str(tmp_path / "out"))
    monkeypatch.setenv(run.NOTEBOOK_ENV, str(nb))
    monkeypatch.setenv(run.INJECTED_ENV, json.dumps({"profile": "quick", "epochs": 2}))
    namespace = {"profile": "quick", "seed": 0, "epochs": 2, "rate": 3e-3, "sizes": [1, 2], "other": 5}
    report = run.Report("97_params", dataset="mnist", namespace=namespace)
    report.metrics.update(accuracy=0.99643000463, per_class=[0.123456789, 1 / 3], seconds=315.2344, n=7)
    doc = json.loads(report.write().read_text())
    assert doc["profile"] == "quick" and doc["seed"] == 0
    assert doc["parameters"] == {"seed": 0, "epochs": 2, "rate": 3e-3, "sizes": [1, 2]}   # not "other"
    assert doc["injected_parameters"] == {"profile": "quick", "epochs": 2}
    assert doc["metrics"] == {"accuracy": 0.99643, "per_class": [0.123457, 0.333333], "seconds": 315.234, "n": 7}
    assert run.table(["a", "b"], [[1, "x"]]).data == "| a | b |\n|---|---|\n| 1 | x |"
