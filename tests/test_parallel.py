"""Data parallelism: four (forced CPU) devices follow the one-device trajectory; sweeps split their members."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgmine_jax import parallel

WORKER = Path(__file__).with_name("parallel_worker.py")


def test_four_devices_match_one_device_within_float_tolerance(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "out.npz")], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as f:
        out = {k: f[k] for k in f.files}
    assert int(out["one_devices"]) == 1 and int(out["four_devices"]) == 4, "the state was not replicated"
    assert int(out["four_compilations"]) == 2, "the sharded train and eval steps compile once each"
    assert str(out["odd_batch_error"]) == "batch_size=6 cannot be split evenly over 4 devices; use a multiple of 4"
    one, four = json.loads(str(out["one_history"])), json.loads(str(out["four_history"]))
    for a, b in zip(one, four, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            # accuracies count whole images: float rounding may flip a borderline one of the
            # 300 validation images or 40-image batches, so allow three validation images
            tol = 3 / 300 + 1e-9 if k.endswith("accuracy") else 2e-3
            assert a[k] == pytest.approx(b[k], rel=2e-3, abs=tol), (k, a[k], b[k])
    assert out["predict_four"].shape == (301, 10)
    np.testing.assert_allclose(out["predict_four"], out["predict_one"], rtol=0, atol=1e-5)
    # the sweep's six members ran on three devices, two each, and trained as on one device
    assert int(out["sweep_one_devices"]) == 1 and int(out["sweep_four_devices"]) == 3
    assert out["member_mesh_sizes"].tolist() == [4, 3, 2, 0, 0], "devices that split 8, 6, 2, 7, 1 members"
    np.testing.assert_allclose(out["sweep_four_val_loss"], out["sweep_one_val_loss"], rtol=1e-3)
    assert len(set(np.round(out["sweep_one_val_loss"], 4))) == 6        # the members really differ
    assert str(out["late_cpu_devices_error"]) == (
        "use_cpu_devices(2) came after JAX started with 4 CPU device(s); "
        "call it before any JAX computation (restart the kernel)")
    # after one step the parameters agree to float rounding; after 50 Adam steps tiny rounding
    # differences have grown (Adam rescales near-zero gradients), but stay small
    for prefix, atol in (("step1_", 1e-5), ("", 1e-2)):
        names = [k[len(prefix + "one/"):] for k in out if k.startswith(prefix + "one/")]
        assert len(names) > 10
        for name in names:
            np.testing.assert_allclose(out[f"{prefix}one/{name}"], out[f"{prefix}four/{name}"], rtol=0, atol=atol,
                                       err_msg=prefix + name)


def test_one_device_is_the_identity():
    dp = parallel.DataParallel(parallel.jax.devices()[:1])
    idx = np.arange(8)
    assert dp.shard_batch(idx) is idx and dp.size == 1
    dp.check_batch_size(7)


@pytest.mark.parametrize("count", [0, -2, 1.5, True, "2"])
def test_use_cpu_devices_rejects_a_bad_count(count):
    with pytest.raises(ValueError, match=r"use_cpu_devices needs a positive integer device count; got "):
        parallel.use_cpu_devices(count)



TIGHT_LOOP = """
import json, os, sys
import numpy as np
from imgmine_jax import parallel
parallel.use_cpu_devices(2)
import jax
from imgmine_jax import data, models, recipes, train
images = data.load("mnist", "train").head(3200)
cfg = train.TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, schedule="constant", warmup_epochs=0.0,
                        weight_decay=0.0)
trainer = train.build_trainer(models.build("seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1))),
                              train.Classification(10), cfg, 100)
arrays = trainer.dp.replicate(images.arrays())
idx = np.arange(3200, dtype=np.int32).reshape(100, 32)
for _ in range(3):   # back-to-back steps, dispatched ahead: what stalled with XLA's default pool
    trainer.run_epoch(arrays, idx)
jax.block_until_ready(trainer.state)
print(json.dumps({"NPROC": os.environ.get("NPROC"), "devices": len(jax.devices()), "steps": trainer.step}))
"""


def _tight_loop(env):
    proc = subprocess.run([sys.executable, "-c", TIGHT_LOOP], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_cpu_devices_train_without_an_all_reduce_stall():
    """With XLA's default pool (one thread per core) this loop was aborted by XLA's 40 s
    all-reduce termination timeout in every run on a 2-core machine; the package's pool
    (four threads per device) finished every one."""
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    out = _tight_loop(env)
    assert out == {"NPROC": str(parallel.cpu_threads(2)), "devices": 2, "steps": 300}


@pytest.mark.parametrize("nproc,expected", [(None, str(max(os.cpu_count(), 8))), ("6", "6")])
def test_two_cpu_devices_get_a_larger_pool_unless_the_user_chose_one(nproc, expected):
    env = {k: v for k, v in os.environ.items() if k != "NPROC"} | ({"NPROC": nproc} if nproc else {})
    code = ("import os; from imgmine_jax import parallel; parallel.use_cpu_devices(2); import jax; "
            "print(os.environ.get('NPROC'), len(jax.devices()))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == [expected, "2"]
