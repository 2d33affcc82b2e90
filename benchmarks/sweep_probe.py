"""The vmapped sweep's training step against one model's step, on this machine.

    python benchmarks/sweep_probe.py [--members 8] [--batch 32] [--steps 20] [--repeats 7]

Times ``train.sweep``'s step (``train.sweep_program``: vmapped over stacked SeedCNN states, as
notebook 01 sweeps them: learning rates x seeds, constant Adam, batch 32, shared batches)
in three variants, in one process, interleaved repeat by repeat:

* ``single``: one SeedCNN, the step ``train.fit`` runs;
* ``vmap grouped``: the sweep with plain ``lax.conv_general_dilated`` in the model, which
  ``jax.vmap`` turns into grouped convolutions (the model before the member loop);
* ``vmap looped``: the sweep with the model as it is
  (``imgmine_jax.models.common.conv_general_dilated``: one convolution per member on CPU).

Reports the median time per step and per member-step, and "vs sequential": the single
step's time over the per-member time (above 1: the sweep beats running the members one
after another). Synthetic uint8 images of MNIST shape; the persistent compilation cache is
off so that compile times are real. Results are recorded in cpu_probes.md.
"""
from __future__ import annotations

import os

os.environ.setdefault("IMGMINE_COMPILATION_CACHE", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax import lax  # noqa: E402

from imgmine_jax import data, models, train  # noqa: E402

CONFIG = models.classifier_config("seed_cnn", 10, (28, 28, 1))


def make_model(conv):
    """SeedCNN with ``conv`` as every layer's convolution (None: the model's own)."""
    def make(rngs: nnx.Rngs) -> nnx.Module:
        model = models.REGISTRY["seed_cnn"](**CONFIG, rngs=rngs)
        if conv is not None:
            for _, module in nnx.iter_graph(model):
                if isinstance(module, nnx.Conv):
                    module.conv_general_dilated = conv
        return model
    return make


def build_step(make, members: int, cfg: train.TrainConfig, steps_per_epoch: int):
    """(jitted step, state): ``train.sweep``'s own for ``members`` > 0; ``members=0``: one model, as ``fit``."""
    task = train.Classification(10)
    if members == 0:
        model = make(nnx.Rngs(0))
        model.train()
        graphdef, state = nnx.split((model, nnx.Optimizer(model, train.make_optimizer(cfg, steps_per_epoch),
                                                          wrt=nnx.Param)))
        return jax.jit(train.train_step_fn(graphdef, task), donate_argnums=0), state
    lrs = np.geomspace(3e-4, 1e-2, max(members // 2, 1)).astype(np.float32)
    seeds = np.arange(members // len(lrs), dtype=np.uint32)
    states, step, _ = train.sweep_program(make, task, cfg, steps_per_epoch, np.repeat(lrs, len(seeds)),
                                          np.tile(seeds, len(lrs)))
    return step, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=8, help="sweep members (even: learning rates x 2 seeds)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    arrays = data.to_device({"image": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                             "label": rng.integers(0, 10, n).astype(np.int32)})
    idx = np.arange(n).reshape(args.steps, args.batch)
    key = jax.random.key(0)
    cfg = train.TrainConfig(epochs=1, batch_size=args.batch, learning_rate=1e-3, schedule="constant",
                            warmup_epochs=0.0, weight_decay=0.0)
    variants = {"single": (make_model(None), 0),
                "vmap grouped": (make_model(lax.conv_general_dilated), args.members),
                "vmap looped": (make_model(None), args.members)}
    runs = {}
    for name, (make, members) in variants.items():
        step, state = build_step(make, members, cfg, args.steps)
        t0 = time.perf_counter()
        compiled = step.lower(state, arrays, idx[0], key).compile()
        compile_s = time.perf_counter() - t0
        state, metrics = compiled(state, arrays, idx[0], key)      # first call, untimed
        jax.block_until_ready(metrics)
        runs[name] = {"step": compiled, "state": state, "members": max(members, 1),
                      "compile_s": compile_s, "times": []}
    print(f"backend {jax.default_backend()}, members {args.members}, batch {args.batch}, "
          f"{args.steps} steps x {args.repeats} interleaved repeats, load average {os.getloadavg()[0]:.2f}",
          flush=True)
    for _ in range(args.repeats):
        for run in runs.values():
            state = run["state"]
            t0 = time.perf_counter()
            for i in range(args.steps):
                state, metrics = run["step"](state, arrays, idx[i], jax.random.fold_in(key, i))
            jax.block_until_ready(metrics)
            run["times"].append((time.perf_counter() - t0) / args.steps)
            run["state"] = state
    single = np.median(runs["single"]["times"])
    grouped_member = np.median(runs["vmap grouped"]["times"]) / args.members
    rows = []
    for name, run in runs.items():
        step_s = float(np.median(run["times"]))
        member_s = step_s / run["members"]
        rows.append({"variant": name, "step_ms": round(step_s * 1e3, 2), "per_member_ms": round(member_s * 1e3, 2),
                     "vs_sequential": round(float(single / member_s), 3),
                     "vs_grouped": round(float(grouped_member / member_s), 3),
                     "compile_s": round(run["compile_s"], 2)})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
