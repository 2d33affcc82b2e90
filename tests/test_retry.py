"""A notebook whose kernel dies mid-training: the runner says where, retries, and the retry
resumes the interrupted training and loads the finished one instead of repeating it."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from tiny_notebooks import write_notebook

from imgmine_jax import run

SETUP = """
import dataclasses, os, signal
from pathlib import Path
from imgmine_jax import data, models, train
from imgmine_jax.run import Report
report = Report("97_dies_once", profile=profile, seed=0, dataset="mnist")
images = data.load("mnist", "train").head(256)
cfg = train.TrainConfig(epochs=1, batch_size=64, seed=0)
config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
first = train.fit(models.build("seed_cnn", config), train.Classification(10), images.arrays(), None, cfg,
                  progress=False)
"""
DIES = """
def die_once(row, trainer):
    # the first attempt is killed as an abort inside XLA would kill it, after epoch 1's checkpoint
    if row["epoch"] == 1 and not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)

second = train.fit(models.build("seed_cnn", config, seed=1), train.Classification(10), images.arrays(), None,
                   dataclasses.replace(cfg, epochs=2, seed=1), progress=False, on_epoch_end=die_once)
"""
WRITE = """
report.metrics["first_reused"] = first.reused
report.metrics["second_epochs"] = len(second.history)
report.write()
"""


def _notebook(path: Path, marker: Path) -> Path:
    return write_notebook(path, f'profile = "full"\nmarker = {str(marker)!r}\n', SETUP, DIES, WRITE)


@pytest.mark.notebook
def test_dead_kernel_is_retried_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGMINE_ARTIFACTS", str(tmp_path / "artifacts"))
    nb = _notebook(tmp_path / "97_dies_once.ipynb", tmp_path / "killed-once")
    results = tmp_path / "results"

    target = run.run_with_retries(nb, results, "quick", retries=1)

    metrics = json.loads((target / "metrics.json").read_text())
    assert metrics["runner"]["attempts"] == 2
    [died] = metrics["runner"]["previous_attempts"]
    assert died["error"] == "kernel died" and died["cell"].startswith("cell 3 ") and "die_once" in died["cell"]
    assert metrics["metrics"] == {"first_reused": True, "second_epochs": 2}
    text = "\n".join(o.get("text", "") for c in nbformat.read(target / "97_dies_once.ipynb", as_version=4).cells
                     for o in c.get("outputs", []))
    assert "reused the finished training" in text      # the finished training was not repeated
    assert "resumed from" in text and "epoch-0001" in text   # the interrupted one resumed
    assert "This run took 2 attempts" in (target / "97_dies_once.html").read_text()
    [kept] = (tmp_path / "artifacts" / "failed").iterdir()
    assert (kept / "97_dies_once.ipynb").exists() and (kept / "kernel.log").exists()
    # each attempt is a run record: the dead one with its cell, the retry with the reused training
    from imgmine_jax import runs
    dead, retry = (runs.read_record(d) for d in runs.run_dirs("97_dies_once"))
    assert dead["status"] == "kernel died" and dead["error"]["cell"] == died["cell"]
    assert retry["status"] == "finished" and retry["attempt"] == 2
    assert [t["reused"] for t in retry["trainings"]] == [True, False]


@pytest.mark.notebook
def test_dead_kernel_without_retries_names_the_cell_and_keeps_results(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGMINE_ARTIFACTS", str(tmp_path / "artifacts"))
    results = tmp_path / "results"
    (results / "97_dies_once").mkdir(parents=True)
    (results / "97_dies_once" / "metrics.json").write_text('{"earlier": true}')
    nb = _notebook(tmp_path / "97_dies_once.ipynb", tmp_path / "killed-once")

    with pytest.raises(run.KernelDied) as err:
        run.run_with_retries(nb, results, "quick", retries=0)

    message = str(err.value)
    assert "the kernel of 97_dies_once died while running cell 3" in message
    assert "resumes training where it stopped" in message
    assert (results / "97_dies_once" / "metrics.json").read_text() == '{"earlier": true}'
    assert not list(results.glob(".staging-*"))


@pytest.mark.parametrize("retries", [-1, 1.5, True, "2"])
def test_retries_must_be_a_count(tmp_path, retries):
    with pytest.raises(ValueError, match=f"retries must be an integer >= 0; got {retries!r}"):
        run.run_with_retries(tmp_path / "none.ipynb", tmp_path, "quick", retries=retries)
