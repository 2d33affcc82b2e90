"""Stress test: how often does XLA:CPU's all-reduce between two CPU devices stall?

Runs notebook 01's two-device work -- ``train.fit`` of its ResNet and SeedCNN recipes, evaluation,
``train.predict`` and ``train.predict_tta`` -- in a loop in worker processes for a fixed
time, and counts the stalls: XLA's "may be stuck" warning (a rendezvous waited 20 s) and
the process exit that follows ("Termination timeout ... exceeded", 40 s). A worker that
dies is counted and replaced, so one invocation measures many hours-equivalent of
collectives. ``--load`` runs a competing CPU load (a numpy matmul loop on every core) in
another process, as when something else runs beside a notebook.

    python benchmarks/allreduce_stress.py --minutes 20                 # the package's pool
    python benchmarks/allreduce_stress.py --minutes 20 --threads 2     # XLA's default on 2 cores
    python benchmarks/allreduce_stress.py --minutes 20 --load          # beside a CPU load

``--threads N`` sets the size of XLA:CPU's thread pool (``NPROC``, read when the backend
starts); 0 (default) leaves the choice to ``parallel.use_cpu_devices`` (four threads per
device); XLA's own default is one thread per core. Each invocation appends one record
(stalls, training seconds, steps, stalls per hour, load average, processor) to
``benchmarks/allreduce_stress.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STUCK = "may be stuck"
TERMINATED = "Termination timeout"


def worker(train_size: int, epochs: int) -> None:
    """One process: the notebook-01 calls over two CPU devices, forever; one line per round."""
    from imgmine_jax import parallel

    parallel.use_cpu_devices(2)
    from imgmine_jax import data, metrics, models, train

    full = data.load("mnist", "train")
    train_part, val_part = data.train_val_split(full, 1000, seed=0)
    train_part = train_part.head(train_size)
    test = data.load("mnist", "test").head(2000)
    # notebook 01's two recipes: the ResNet (one-cycle AdamW) and the SeedCNN baseline (Adam 1e-3)
    recipes = [
        ("resnet", train.TrainConfig(epochs=epochs, batch_size=32, learning_rate=3e-3, schedule="onecycle",
                                     warmup_epochs=min(1.0, epochs), weight_decay=0.05, label_smoothing=0.1,
                                     augment_shift=2),
         models.classifier_config("resnet", 10, train_part.image_shape, widths=[16, 32, 64], dropout=0.2)),
        ("seed_cnn", train.TrainConfig(epochs=epochs, batch_size=32, learning_rate=1e-3, schedule="constant",
                                       warmup_epochs=0.0, weight_decay=0.0),
         models.classifier_config("seed_cnn", 10, train_part.image_shape)),
    ]
    round_ = 0
    while True:
        arch, cfg, config = recipes[round_ % len(recipes)]
        t0 = time.perf_counter()
        net = models.build(arch, config, seed=round_)
        res = train.fit(net, train.Classification.from_config(10, cfg), train_part.arrays(),
                        val_part.arrays(), cfg, progress=False, log=None)
        acc = metrics.accuracy(test.labels, train.predict(res.model, test.images).argmax(-1))
        tta = metrics.accuracy(test.labels, train.predict_tta(res.model, test.images, shift=1).argmax(-1))
        steps = epochs * (len(train_part) // cfg.batch_size)
        print(json.dumps({"round": round_, "model": arch, "seconds": time.perf_counter() - t0, "steps": steps,
                          "train_seconds": res.train_seconds, "test_accuracy": acc, "tta": tta}), flush=True)
        round_ += 1


def cpu_load() -> None:
    """Keep every core busy with float matmuls until killed."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    while True:
        a = np.tanh(a @ a)


def main() -> None:
    from imgmine_jax.runs import processor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="wall time of the measurement")
    ap.add_argument("--threads", type=int, default=0,
                    help="XLA:CPU thread-pool size (NPROC); 0: the package's choice (parallel.cpu_threads)")
    ap.add_argument("--load", action="store_true", help="run a competing CPU load beside the workers")
    ap.add_argument("--train-size", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--label", default="", help="free text stored with the record")
    ap.add_argument("--out", type=Path, default=HERE / "allreduce_stress.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cpu-load", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.train_size, args.epochs)
    if args.cpu_load:
        return cpu_load()

    env = dict(os.environ, PYTHONUNBUFFERED="1", IMGMINE_RESUME="0")
    env.pop("NPROC", None)
    if args.threads:
        env["NPROC"] = str(args.threads)
    load = None
    if args.load:
        load = subprocess.Popen([sys.executable, __file__, "--cpu-load"],
                                env=dict(env, OMP_NUM_THREADS=str(os.cpu_count())),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + args.minutes * 60
    record = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "minutes": args.minutes,
              "threads": args.threads, "load": args.load, "label": args.label, "processor": processor(),
              "cores": os.cpu_count(), "workers": 0, "stuck_warnings": 0, "terminations": 0,
              "other_deaths": 0, "rounds": 0, "steps": 0, "train_seconds": 0.0, "loadavg": []}
    try:
        while time.monotonic() < deadline:
            record["workers"] += 1
            log, out = HERE / ".stress_worker.log", HERE / ".stress_worker.out"
            with open(log, "w") as err, open(out, "w") as rows:
                proc = subprocess.Popen([sys.executable, __file__, "--worker", "--train-size", str(args.train_size),
                                         "--epochs", str(args.epochs)], env=env, stdout=rows, stderr=err, text=True)
                seen = 0
                while proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(1.0)
                    lines = out.read_text().split("\n")[:-1]
                    for line in lines[seen:]:
                        row = json.loads(line)
                        record["rounds"] += 1
                        record["steps"] += row["steps"]
                        record["train_seconds"] += row["train_seconds"]
                        record["loadavg"].append(round(os.getloadavg()[0], 2))
                        print(f"[{time.strftime('%H:%M:%S')}] round {record['rounds']} ({row['model']}): "
                              f"{row['seconds']:.0f} s, "
                              f"test {row['test_accuracy']:.3f}, stalls so far {record['terminations']}", flush=True)
                    seen = len(lines)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                    text = log.read_text(errors="replace")
                else:
                    text = log.read_text(errors="replace")
                    if TERMINATED in text:
                        record["terminations"] += 1
                        print(f"[{time.strftime('%H:%M:%S')}] STALL: worker died (all-reduce termination timeout)",
                              flush=True)
                    else:
                        record["other_deaths"] += 1
                        print(f"[{time.strftime('%H:%M:%S')}] worker exited ({proc.returncode}):\n{text[-2000:]}",
                              flush=True)
                record["stuck_warnings"] += text.count(STUCK)
    finally:
        if load is not None:
            load.kill()
            load.wait()
    hours = record["train_seconds"] / 3600
    record["stalls_per_training_hour"] = round(record["terminations"] / hours, 2) if hours else None
    record["loadavg_median"] = sorted(record["loadavg"])[len(record["loadavg"]) // 2] if record["loadavg"] else None
    del record["loadavg"]
    from imgmine_jax.files import atomic_write_bytes

    runs = json.loads(args.out.read_text()) if args.out.exists() else []
    runs.append(record)
    atomic_write_bytes(args.out, (json.dumps(runs, indent=1) + "\n").encode())
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
