"""Training-step throughput of the notebook-02 sequence models on this machine.

    python benchmarks/rnn_step_throughput.py [row|completion|video]

Each case jits one `imgmine_jax.train` step (AdamW, one-cycle) on real MNIST or Moving
MNIST batches and reports the median step time after warm-up; see rnn_probes.md.
"""
from __future__ import annotations

import sys

import numpy as np
from flax import nnx

from imgmine_jax import data, moving_mnist, sequence, train
from imgmine_jax.models import count_params, rnn
from imgmine_jax.timing import median_seconds


def step_time(model, task, arrays, batch_size, repeats=10):
    cfg = train.TrainConfig(epochs=1, batch_size=batch_size)
    trainer = train.Trainer(model, task, train.make_optimizer(cfg, 100))
    dev = data.to_device(arrays)
    idx = np.arange(batch_size)
    key = train.jax.random.key(0)

    def step():
        trainer.state, m = trainer.train_step(trainer.state, dev, idx, key)
        return m["loss"]

    return median_seconds(step, repeats=repeats, warmup=2)


def main(which: str) -> None:
    mnist = data.load("mnist", "train").head(4096)
    if which == "row":
        for cell, hidden, layers in [("lstm", 128, 1), ("gru", 128, 1), ("lstm", 128, 2), ("lstm", 256, 1)]:
            for bs in (32, 64, 128, 256):
                m = rnn.RowClassifier(cell=cell, hidden=hidden, num_layers=layers, rngs=nnx.Rngs(0))
                t = step_time(m, train.Classification(10), mnist.arrays(), bs)
                print(f"row {cell} {hidden}x{layers} ({count_params(m):,} params) batch {bs}: "
                      f"{t * 1e3:.1f} ms/step, {bs / t:,.0f} images/s", flush=True)
    elif which == "completion":
        for hidden in (128, 256):
            for bs in (64, 128, 256):
                m = rnn.RowCompleter(hidden=hidden, rngs=nnx.Rngs(0))
                t = step_time(m, sequence.RowCompletion(), {"image": mnist.images}, bs)
                print(f"completion lstm {hidden} batch {bs}: {t * 1e3:.1f} ms/step, {bs / t:,.0f} images/s",
                      flush=True)
    else:
        seqs = moving_mnist.generate(mnist, 512, seed=0)
        for embed, hidden in [(32, (32,)), (32, (64,)), (32, (32, 32)), (48, (64, 64))]:
            for bs in (16, 32):
                m = rnn.EncoderForecaster(embed=embed, hidden=hidden, rngs=nnx.Rngs(0))
                t = step_time(m, sequence.NextFrames(), seqs.arrays(), bs, repeats=5)
                print(f"video embed {embed} hidden {hidden} ({count_params(m):,} params) batch {bs}: "
                      f"{t * 1e3:.0f} ms/step, {bs / t:,.1f} sequences/s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "row")
