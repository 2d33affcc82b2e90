"""The training command: a notebook recipe outside a notebook, resumable from its workdir."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from imgmine_jax import checkpoint, train_recipe


def _main(capsys, *argv) -> tuple[int, str, str]:
    rc = train_recipe.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("argv,message", [
    (["mnist_vgg", "--workdir", "w"], "unknown recipe 'mnist_vgg'; expected one of "),
    (["mnist_resnet", "--workdir", "w", "--set", "epochz=3"], "--set epochz: unknown recipe field; expected one of "),
    (["mnist_resnet", "--workdir", "w", "--set", "epochs=many"], "--set epochs='many': expected int"),
    (["mnist_resnet", "--workdir", "w", "--set", "widths=8,x"], "expected comma-separated integers"),
    (["mnist_resnet", "--workdir", "w", "--set", "augment_flip=maybe"], "--set augment_flip='maybe': expected bool"),
    (["mnist_resnet", "--workdir", "w", "--set", "epochs"], "--set 'epochs': expected field=value"),
    (["mnist_resnet"], "a recipe and --workdir are required"),
    (["mnist_resnet", "--workdir", "w", "--process-id", "1"], "need --distributed"),
])
def test_bad_input_is_one_line_naming_the_value(capsys, tmp_path, argv, message):
    rc, out, err = _main(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("train_recipe: error: ") and message in err, err


def test_a_value_the_recipe_refuses_is_one_line(capsys, tmp_path):
    rc, _, err = _main(capsys, "mnist_resnet", "--workdir", str(tmp_path), "--set", "learning_rate=-1")
    assert rc == 2 and err.count("\n") == 1
    assert "TrainConfig.learning_rate must be a number > 0; got -1.0" in err


def test_an_unreachable_coordinator_is_a_bounded_one_line_error(tmp_path):
    with socket.socket() as s:          # a free loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "imgmine_jax.train_recipe", "mnist_resnet", "--workdir",
                           str(tmp_path), "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                           "2", "--process-id", "1", "--timeout", "5"],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "IMGMINE_PROGRESS": "0"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train_recipe: error: --distributed: could not join the run at "
                           f"127.0.0.1:{port} within 5 s"), proc.stderr[-2000:]
    assert not (tmp_path / "checkpoints").exists()


def test_trains_a_recipe_into_its_workdir_and_a_rerun_resumes(capsys, tmp_path):
    argv = ["mnist_resnet", "--workdir", str(tmp_path), "--profile", "quick", "--set", "train_size=300",
            "--set", "val_size=100", "--set", "widths=8,16,32", "--set", "batch_size=50"]
    rc, out, err = _main(capsys, *argv)
    assert rc == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and 0 <= summary["test_accuracy"] <= 1
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    assert recipe["widths"] == [8, 16, 32] and recipe["train_size"] == 300 and recipe["profile"] == "quick"
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1] and "val_accuracy" in history[0]
    assert checkpoint.latest_training(tmp_path / "checkpoints").name == "epoch-0001"
    model, meta = checkpoint.load_model(tmp_path / "model", expect_architecture="resnet")
    assert meta["info"]["test_accuracy"] == summary["test_accuracy"]
    assert json.loads((tmp_path / "result.json").read_text()) == summary
    rc, out, err = _main(capsys, *argv)          # the same command again: resumed, nothing retrained
    assert rc == 0 and "resumed from" in out and "epoch-0001" in out
    assert json.loads((tmp_path / "history.json").read_text()) == history
    rc, out, err = _main(capsys, *argv[:-2], "--set", "batch_size=25")   # another recipe in the same workdir
    assert rc == 2 and err.count("\n") == 1 and "different parameters" in err, err
