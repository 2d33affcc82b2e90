"""Steady-state training throughput of the CNN train steps, by model and batch size.

    python benchmarks/cnn_step_throughput.py [--steps 30] [--batch-sizes 32 128]

Measures the project's own jitted step (``imgmine_jax.train.Trainer``) on synthetic
inputs of MNIST shape, after compilation, as the median of ``--steps`` timed steps.
Absolute numbers on a shared CPU are noisy: compare rows of one invocation.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from imgmine_jax import models, train
from imgmine_jax.timing import median_seconds

CANDIDATES = {
    "seed_cnn": ("seed_cnn", {}),
    "resnet 16-32-64": ("resnet", {"widths": [16, 32, 64]}),
    "resnet 16-32-128": ("resnet", {"widths": [16, 32, 128]}),
    "resnet 16-48-96": ("resnet", {"widths": [16, 48, 96]}),
    "resnet 32-64-128": ("resnet", {"widths": [32, 64, 128]}),
}


def throughput(arch: str, kwargs: dict, batch_size: int, steps: int) -> float:
    config = models.classifier_config(arch, 10, (28, 28, 1), **kwargs)
    model = models.build(arch, config)
    cfg = train.TrainConfig(epochs=1, batch_size=batch_size)
    trainer = train.Trainer(model, train.Classification(10, augment_shift=2), train.make_optimizer(cfg, 100))
    rng = np.random.default_rng(0)
    arrays = {"image": rng.integers(0, 256, (batch_size, 28, 28, 1), dtype=np.uint8),
              "label": rng.integers(0, 10, batch_size).astype(np.int32)}
    idx = np.arange(batch_size)

    def one_step():
        trainer.state, metrics = trainer.train_step(trainer.state, arrays, idx, trainer._base_key)
        return metrics["loss"]

    return batch_size / median_seconds(one_step, repeats=steps, warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--models", nargs="+", default=list(CANDIDATES))
    args = parser.parse_args()
    rows = []
    for name in args.models:
        arch, kwargs = CANDIDATES[name]
        for bs in args.batch_sizes:
            ips = throughput(arch, kwargs, bs, args.steps)
            rows.append({"model": name, "batch_size": bs, "images_per_sec": round(ips)})
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
