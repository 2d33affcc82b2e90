"""The environment and the runner's command line: what a user's setup may get wrong."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from imgmine_jax import run

NB01 = run.NOTEBOOK_DIR / "01_cnn_classification.ipynb"


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_unusable_artifacts_directory_does_not_break_the_import(tmp_path, kind):
    """``import imgmine_jax`` works; the first use of the artifacts directory fails, naming the variable."""
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    target = blocker if kind == "a file" else blocker / "artifacts"
    code = ("import imgmine_jax\n"
            "from imgmine_jax import checkpoint\n"
            "try:\n"
            "    checkpoint.artifacts_dir()\n"
            "except ValueError as err:\n"
            "    print('ERROR', err)\n")
    env = {**os.environ, "IMGMINE_ARTIFACTS": str(target)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ERROR $IMGMINE_ARTIFACTS" in proc.stdout and str(target) in proc.stdout, proc.stdout


def test_a_notebook_path_runs_that_file(tmp_path):
    copy = tmp_path / "my_copy" / NB01.name
    copy.parent.mkdir()
    shutil.copy(NB01, copy)
    assert run.find_notebooks([str(copy)]) == [copy.resolve()]
    assert run.find_notebooks([str(copy), str(copy)]) == [copy.resolve()]


def test_a_notebook_named_twice_runs_once():
    assert run.find_notebooks(["01", "01_cnn_classification", str(NB01)]) == [NB01.resolve()]
    assert [nb.stem for nb in run.find_notebooks(["01", "00", "01"])] == ["01_cnn_classification", "00_background"]


def test_notebook_parameters_accept_what_the_notebooks_use():
    """The range checks do not refuse sensible overrides (zero dropout, no augmentation, ...)."""
    run.check_parameters(NB01, {"dropout": 0.0, "augment_shift": 0, "warmup_epochs": 0.0, "label_smoothing": 0.0,
                                "epochs": 1, "train_size": 2000, "learning_rate": 1e-2, "sweep_learning_rates": [1e-3]})


@pytest.mark.parametrize("notebook", run.find_notebooks(), ids=lambda p: p.stem)
def test_every_notebooks_own_defaults_pass_the_parameter_checks(notebook):
    defaults = run.notebook_parameters(notebook)
    run.check_parameters(notebook, {k: v for k, v in defaults.items() if v is not None})
