"""Throughput of notebook 01's ResNet step: 1 process x 2 CPU devices vs 2 processes x 1 CPU device.

Both arms train the same recipe (``recipes.CLASSIFIER``: widths 16/32/64, global batch 32)
through ``Trainer.run_epoch`` on the same MNIST slice: arm ``devices`` splits the CPU into
two devices in one process (``parallel.use_cpu_devices(2)``), arm ``processes`` runs two
``jax.distributed`` processes of one device each (gloo collectives over loopback). The arms
alternate, ``--rounds`` times, so that a changing load from other jobs falls on both; each
round reports both throughputs and their ratio.

    python benchmarks/multiprocess.py --rounds 3 --steps 60

Appends one record to ``benchmarks/multiprocess.json``. On one machine the processes share
its cores; a real gain needs real hosts (this measures the overhead of the multi-process path).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(pid: int, nproc: int, port: int, steps: int) -> None:
    import jax

    if nproc == 1:
        from imgmine_jax import parallel

        parallel.use_cpu_devices(2)
    else:
        jax.config.update("jax_num_cpu_devices", 1)
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
                                   coordinator_bind_address=f"127.0.0.1:{port}", initialization_timeout=120)
    import numpy as np

    from imgmine_jax import checkpoint, data, models, recipes, train

    recipe = recipes.CLASSIFIER
    cfg = recipe.train_config("mnist")
    images = data.load("mnist", "train").head(steps * cfg.batch_size)
    config = models.classifier_config("resnet", 10, (28, 28, 1), **recipe.arch_kwargs())
    trainer = train.build_trainer(models.build("resnet", config), train.Classification.from_config(10, cfg), cfg,
                                  steps)
    arrays = trainer.dp.replicate(images.arrays())
    checkpoint.sync_processes("benchmark start")   # start the first collective together
    idx = np.arange(steps * cfg.batch_size, dtype=np.int32).reshape(steps, cfg.batch_size)
    trainer.run_epoch(arrays, idx[:5])            # compile and warm up
    jax.block_until_ready(trainer.state)
    t0 = time.perf_counter()
    trainer.run_epoch(arrays, idx)
    jax.block_until_ready(trainer.state)
    seconds = time.perf_counter() - t0
    if pid == 0:
        print(json.dumps({"devices": len(jax.devices()), "processes": jax.process_count(),
                          "images_per_sec": steps * cfg.batch_size / seconds}), flush=True)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def arm(nproc: int, steps: int) -> float:
    port = _port()
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(i), str(nproc), str(port), str(steps)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(nproc)]
    try:
        outs = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(err[-2000:])
    return json.loads(outs[0][0].strip().splitlines()[-1])["images_per_sec"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*map(int, sys.argv[2:6]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args()
    rounds = []
    for r in range(args.rounds):
        order = (1, 2) if r % 2 == 0 else (2, 1)     # alternate which arm goes first
        result = {n: arm(n, args.steps) for n in order}
        row = {"devices_1x2": result[1], "processes_2x1": result[2], "ratio": result[2] / result[1],
               "loadavg": os.getloadavg()[0]}
        rounds.append(row)
        print(json.dumps(row), flush=True)
    from imgmine_jax.runs import processor

    record = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "processor": processor(),
              "cpus": os.cpu_count(), "steps": args.steps, "rounds": rounds,
              "median_ratio": statistics.median(r["ratio"] for r in rounds)}
    path = HERE / "multiprocess.json"
    history = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps(history + [record], indent=1) + "\n")
    print(json.dumps({"median_ratio": record["median_ratio"]}))


if __name__ == "__main__":
    main()
