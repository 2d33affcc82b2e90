"""Several JAX processes (``jax.distributed``, CPU collectives over gloo) train as one.

Two processes with one CPU device each train notebook 01's ResNet recipe through
``train.fit`` on a small MNIST slice, as a cluster job would on two hosts; a single
process with the same global batch is the reference. Then one of the two is killed after
its first checkpoint, both are restarted, and they resume to the parameters of the
uninterrupted run. The coordinator listens on the loopback interface, on a port the
test chooses; every process is bounded in time and killed when the test ends.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("multiprocess_worker.py")
LIMIT = 600          # seconds any one process may run


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_loopback_hostname() -> None:
    """Gloo connects the processes at the address this machine's hostname resolves to (jax
    0.10 offers no way to choose it); the test may only talk over the loopback interface."""
    address = socket.gethostbyname(socket.gethostname())
    if not address.startswith("127."):
        message = (f"the hostname {socket.gethostname()!r} resolves to {address}, not a loopback address: "
                   f"gloo would leave the loopback interface (map the hostname to 127.0.0.1 in /etc/hosts)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def _processes(out: Path, ckpt: Path, count: int, epochs: int):
    """Start ``count`` workers (one job); yield them; kill whatever still runs on the way out."""
    if count > 1:
        _require_loopback_hostname()
    port = _free_port() if count > 1 else 0
    env = {**os.environ, "IMGMINE_PROGRESS": "0"}
    env.pop("NPROC", None)
    procs = []
    try:
        for pid in range(count):
            procs.append(subprocess.Popen(
                [sys.executable, str(WORKER), str(pid), str(count), str(port), str(out), str(ckpt), str(epochs)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _finish(procs) -> list[str]:
    logs = []
    deadline = time.monotonic() + LIMIT
    for i, p in enumerate(procs):
        try:
            output, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"process {i} ran past {LIMIT} s")
        logs.append(output.decode(errors="replace"))
        assert p.returncode == 0, f"process {i} failed:\n{logs[-1][-3000:]}"
    return logs


def _load(path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The single-process reference and the two-process run, started together."""
    tmp = tmp_path_factory.mktemp("multiprocess")
    with _processes(tmp / "one", tmp / "ck-one", 1, 2) as one, _processes(tmp / "two", tmp / "ck-two", 2, 2) as two:
        _finish(two)
        _finish(one)
    return tmp, _load(tmp / "one.0.npz"), [_load(tmp / f"two.{i}.npz") for i in range(2)]


def _params(out: dict) -> list[str]:
    return sorted(k for k in out if "/" in k)


def test_two_processes_follow_the_single_process_trajectory(runs):
    _, one, (p0, p1) = runs
    assert int(one["processes"]) == 1 and int(p0["processes"]) == 2 and int(p0["devices"]) == 2
    ref, two = json.loads(str(one["history"])), json.loads(str(p0["history"]))
    assert len(ref) == len(two) == 2
    for a, b in zip(ref, two, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            # accuracies count whole images: float rounding may flip a borderline one of
            # the 200 validation images, so allow two
            tol = 2 / 200 + 1e-9 if k.endswith("accuracy") else 2e-3
            assert a[k] == pytest.approx(b[k], rel=2e-3, abs=tol), (k, a[k], b[k])
    names = _params(one)
    assert len(names) > 10 and names == _params(p0)
    for name in names:   # 30 Adam steps: float rounding of the all-reduce grows, but stays small
        np.testing.assert_allclose(one[name], p0[name], rtol=0, atol=1e-2, err_msg=name)


def test_both_processes_end_with_identical_parameters_and_results(runs):
    _, _, (p0, p1) = runs
    assert sorted(p0) == sorted(p1)
    for k in p0:
        np.testing.assert_array_equal(p0[k], p1[k], err_msg=k)


def test_evaluation_and_predict_gather_every_process(runs):
    _, one, (p0, _) = runs
    for key in ("predict_local", "predict_global"):
        assert p0[key].shape == one[key].shape == (101, 10)
        np.testing.assert_allclose(p0[key], one[key], rtol=0, atol=2e-2, err_msg=key)
    np.testing.assert_allclose(p0["predict_global"], p0["predict_local"], rtol=0, atol=1e-5)
    ev_one, ev_two = json.loads(str(one["evaluate"])), json.loads(str(p0["evaluate"]))
    assert ev_two["loss"] == pytest.approx(ev_one["loss"], rel=2e-3)
    assert ev_two["accuracy"] == pytest.approx(ev_one["accuracy"], abs=2 / 200 + 1e-9)
    # the history's last validation row is the same evaluation, with another batch size
    assert ev_two["loss"] == pytest.approx(json.loads(str(p0["history"]))[-1]["val_loss"], rel=1e-5)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(runs):
    _, _, (p0, p1) = runs
    msg = "batch_size=41 cannot be split evenly over 2 devices (2 processes); use a multiple of 2"
    assert str(p0["odd_batch_error"]) == str(p1["odd_batch_error"]) == msg


def test_one_process_killed_then_both_restarted_resume_to_the_same_parameters(runs):
    tmp, _, (p0, _) = runs
    ckpt = tmp / "ck-killed"
    with _processes(tmp / "killed", ckpt, 2, 2) as procs:
        deadline = time.monotonic() + LIMIT
        while not (ckpt / "epoch-0001").exists():
            assert all(p.poll() is None for p in procs), procs[0].stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the workers never reached their first checkpoint"
            time.sleep(0.05)
        os.killpg(procs[1].pid, signal.SIGKILL)      # one host lost; the job is then restarted whole
    assert not any((tmp / f"killed.{i}.npz").exists() for i in range(2)), "finished before the kill"
    assert not list(ckpt.glob(".*")), "a temporary or half-swapped checkpoint was left"
    with _processes(tmp / "killed", ckpt, 2, 2) as procs:
        logs = _finish(procs)
    for log in logs:
        assert "resumed from" in log and "epoch-0001" in log, log[-2000:]
    for i in range(2):
        out = _load(tmp / f"killed.{i}.npz")
        assert json.loads(str(out["history"])) == json.loads(str(p0["history"]))
        for name in _params(p0):
            np.testing.assert_array_equal(out[name], p0[name], err_msg=name)   # bitwise on CPU
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch-0001", "epoch-0002"]
