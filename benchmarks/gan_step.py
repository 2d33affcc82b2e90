"""Throughput of one jitted GAN step (D then G update) on this machine, per architecture and batch size.

    python benchmarks/gan_step.py [--modes transpose depth_to_space resize] [--batches 64 128 256]

Reports training images per second (real images consumed per second; every step also
generates and discriminates as many fakes). Results are recorded in gan_step.md.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from imgmine_jax import data, gan, train


def images_per_sec(mode: str, batch: int, width: int, conditional: bool, steps: int, repeats: int) -> float:
    model = gan.GAN(latent_dim=64, width=width, num_classes=10 if conditional else 0, upsample=mode,
                    rngs=__import__("flax").nnx.Rngs(0))
    task = gan.GANTask(latent_dim=64, conditional=conditional)
    trainer = train.Trainer(model, task, task.make_optimizer(model))
    rng = np.random.default_rng(0)
    arrays = data.to_device({"image": rng.integers(0, 256, (batch * steps, 28, 28, 1), dtype=np.uint8),
                             "label": rng.integers(0, 10, batch * steps).astype(np.int32)})
    idx = np.arange(batch * steps).reshape(steps, batch)
    trainer.run_epoch(arrays, idx[:2])  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer.run_epoch(arrays, idx)
        times.append(time.perf_counter() - t0)
    assert trainer.compilations("train") == 1
    return batch * steps / float(np.median(times))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--modes", nargs="+", default=list(gan.UPSAMPLE))
    p.add_argument("--batches", nargs="+", type=int, default=[64, 128, 256])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--conditional", action="store_true")
    p.add_argument("--images", type=int, default=2560, help="images per timed repeat")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; width {args.width}, "
          f"{'conditional' if args.conditional else 'unconditional'}")
    print("| upsample | batch | images/s |\n|---|---|---|")
    for mode in args.modes:
        for b in args.batches:
            ips = images_per_sec(mode, b, args.width, args.conditional, max(2, args.images // b), args.repeats)
            print(f"| {mode} | {b} | {ips:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
