"""Reproducibility across processes for every model family, and a long run that does not grow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from imgmine_jax import data, models, train

WORKER = Path(__file__).with_name("repro_worker.py")
sys.path.insert(0, str(WORKER.parent))
from repro_worker import FAMILIES  # noqa: E402


def _train_in_fresh_process(family: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, str(WORKER), family, str(out)], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_seed_gives_identical_parameters_and_metrics_in_two_fresh_processes(family, tmp_path):
    a = _train_in_fresh_process(family, tmp_path / "a.npz")
    b = _train_in_fresh_process(family, tmp_path / "b.npz")
    assert json.loads(str(a.pop("history"))) == json.loads(str(b.pop("history")))
    assert a.keys() == b.keys() and len(a) > 2
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_long_run_keeps_compilations_device_arrays_and_memory_flat():
    """30 epochs (480 steps): no recompilation, no device arrays accumulating, no RSS creep."""
    ds = data.load("mnist", "test")
    tr, va = ds.head(512), ds.take(np.arange(9000, 9500))
    model = models.build("seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1)))
    samples = []

    def record(row, trainer):
        samples.append((trainer.compilations(), len(jax.live_arrays()), _resident_mb()))

    train.fit(model, train.Classification(10), tr.arrays(), va.arrays(),
              train.TrainConfig(epochs=30, batch_size=32), progress=False, log=None, on_epoch_end=record)
    compilations, live, rss = map(np.array, zip(*samples))
    assert (compilations == 2).all(), f"train + eval step should compile once each: {compilations}"
    assert (live[2:] == live[2]).all(), f"device arrays accumulate across epochs: {live}"
    # the allocator settles in the first epochs and then moves in steps of up to ~25 MB; a
    # leak of one model state per step would add ~1.3 GB (one per epoch: the live-array check)
    assert rss[-1] - rss[3] < 96, f"resident memory grew from {rss[3]:.0f} to {rss[-1]:.0f} MB"
