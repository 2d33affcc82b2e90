"""Does notebook 02's video predictor need more training or a different model?

    python benchmarks/video_probe.py [--model convlstm|conv] [--train-sequences 4800] [--epochs 4]
                                     [--test-sequences 300] [--out benchmarks/video_probes.jsonl]

Trains one of notebook 02's Moving MNIST predictors with the notebook's recipe
(``recipes.VIDEO`` / ``VIDEO_ARCH`` / ``VIDEO_TASK`` for the ConvLSTM, ``VIDEO_BASELINE`` /
``VIDEO_BASELINE_ARCH`` for the SimVP-style conv) on more sequences and epochs than the
notebook can afford, with the one-cycle schedule stretched over the whole run (warm-up the
same fraction of it). Records the free-running validation MSE after every epoch against
sequences seen and seconds, then the test MSE and SSIM (mean over the 10 horizons, test
sequences from MNIST test digits) of the kept weights, as one JSON line appended to
``--out``. The notebook's own run is the first point of the same curve. Results and what
they say: ``video_probes.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform

import numpy as np
from flax import nnx

from imgmine_jax import data, moving_mnist, recipes, runs, sequence, train
from imgmine_jax.models import video


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("convlstm", "conv"), default="convlstm")
    p.add_argument("--train-sequences", type=int, default=4800)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--val-sequences", type=int, default=100)
    p.add_argument("--test-sequences", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "video_probes.jsonl"))
    args = p.parse_args()

    mnist_train, mnist_test = data.load("mnist", "train"), data.load("mnist", "test")
    mm_all = moving_mnist.generate(mnist_train, args.train_sequences + args.val_sequences, seed=args.seed)
    mm_train, mm_val = mm_all.head(args.train_sequences), mm_all.take(slice(args.train_sequences, None))
    mm_test = moving_mnist.generate(mnist_test, args.test_sequences, seed=args.seed + 1)
    observed_n = mm_test.num_observed
    future_n = mm_test.num_frames - observed_n

    recipe = recipes.VIDEO if args.model == "convlstm" else recipes.VIDEO_BASELINE
    warmup = recipe.warmup_epochs / recipe.epochs * args.epochs   # the recipe's fraction of the run
    cfg = dataclasses.replace(recipe, epochs=args.epochs, warmup_epochs=warmup, seed=args.seed)
    steps = args.epochs * (args.train_sequences // cfg.batch_size)
    if args.model == "convlstm":
        net = video.ConvLSTMPredictor(**recipes.VIDEO_ARCH, future=future_n, rngs=nnx.Rngs(args.seed))
        task = sequence.ScheduledSampling(observed_n, loss_kind=recipes.VIDEO_TASK["loss_kind"],
                                          sampling_steps=int(recipes.VIDEO_TASK["sampling_fraction"] * steps))
        arch = dict(recipes.VIDEO_ARCH, **recipes.VIDEO_TASK)
    else:
        net = video.ConvPredictor(observed=observed_n, future=future_n, **recipes.VIDEO_BASELINE_ARCH,
                                  rngs=nnx.Rngs(args.seed))
        task = sequence.NextFrames(observed_n)
        arch = dict(recipes.VIDEO_BASELINE_ARCH)

    res = train.fit(net, task, mm_train.arrays(), mm_val.arrays(), cfg, monitor="val_mse")
    frames = mm_test.frames()
    truth = frames[:, observed_n:].astype(np.float32) / 255.0
    errors = sequence.horizon_errors(sequence.predict_frames(res.model, frames[:, :observed_n], batch_size=50), truth)
    elapsed = np.cumsum(res.column("seconds"))
    row = {
        "model": args.model, "arch": {k: list(v) if isinstance(v, tuple) else v for k, v in arch.items()},
        "train_sequences": args.train_sequences, "epochs": args.epochs, "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate, "warmup_epochs": warmup, "seed": args.seed,
        "val_mse_per_epoch": [round(float(v), 2) for v in res.column("val_mse")],
        "sequences_seen_per_epoch": [args.train_sequences * (i + 1) for i in range(len(res.history))],
        "seconds_at_epoch_end": [round(float(s), 1) for s in elapsed],
        "train_seconds": round(res.train_seconds, 1),
        "test_sequences": args.test_sequences,
        "test_mse": round(float(errors["mse"].mean()), 2), "test_mse_t1": round(float(errors["mse"][0]), 2),
        "test_mse_t10": round(float(errors["mse"][-1]), 2),
        "test_ssim": round(float(errors["ssim"].mean()), 4), "test_ssim_t1": round(float(errors["ssim"][0]), 4),
        "processor": runs.processor(), "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
