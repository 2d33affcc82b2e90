"""Every notebook: clean in git, one parameters cell, and runs top to bottom in the quick profile."""
from __future__ import annotations

import json

import nbformat
import pytest

from imgmine_jax import run

NOTEBOOKS = run.find_notebooks()


def test_there_are_notebooks():
    assert [nb.stem[:2] for nb in NOTEBOOKS][:2] == ["00", "01"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_with_one_parameters_cell(notebook):
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.get("outputs") for c in code), f"{notebook.name} has outputs; store it clean"
    assert not any(c.get("execution_count") for c in code), f"{notebook.name} has execution counts"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    params = nb.cells[tagged[0]].source
    assert 'profile = "full"' in params, "the committed default must be the full profile"
    assert all("parameters" not in c.metadata.get("tags", []) for c in nb.cells[tagged[0] + 1:])


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_quick_profile(notebook, tmp_path, record_property):
    target = run.run_notebook(notebook, tmp_path, "quick", timeout=600)
    metrics = json.loads((target / "metrics.json").read_text())
    # the sentinel: the runner's profile really reached the notebook's code
    assert metrics["profile"] == "quick"
    executed = nbformat.read(target / f"{notebook.stem}.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "quick"' in injected[0].source
    assert (target / f"{notebook.stem}.html").stat().st_size > 10_000
    text = (target / f"{notebook.stem}.ipynb").read_text()
    assert str(tmp_path) not in text and str(run.REPO_ROOT) not in text, "machine paths in rendered results"
    figures = sorted((target / "figures").glob("*.png"))
    assert figures, "every notebook saves at least one figure"
    # how long the quick profile took is a measurement (in metrics.json and the test report), not a
    # pass/fail threshold: a slower machine is no defect
    record_property("wall_seconds", metrics["wall_seconds"])
    print(f"{notebook.stem}: quick profile in {metrics['wall_seconds']:.0f} s")
    # every parameter of the parameters cell is recorded, with the runner's injection
    assert set(run.notebook_parameters(notebook)) - {"profile"} <= set(metrics["parameters"])
    assert metrics["injected_parameters"] == {"profile": "quick"}
    assert {"versions", "device", "seed", "dataset", "metrics"} <= set(metrics)
    assert metrics["metrics"], "the notebook recorded no headline numbers"
