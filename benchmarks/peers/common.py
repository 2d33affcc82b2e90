"""What the peers share: the model specs of the benchmark and their inputs as plain numpy arrays.

The project's step gathers uint8 batches on the device and normalises them inside the
jitted step (and, for Moving MNIST, renders the frames there too). A peer gets what a
typical PyTorch or Keras script would feed: float32 arrays already normalised (or
rendered) once, before the timed loop.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Mirrors imgmine_jax.data.normalize: uint8 [0, 255] -> float32 [-1, 1].
PIXEL_MEAN, PIXEL_SCALE = 127.5, 127.5


def normalize(images: np.ndarray) -> np.ndarray:
    return ((images.astype(np.float32) - PIXEL_MEAN) / PIXEL_SCALE).astype(np.float32)


class Batches:
    """Cycles through ``(inputs, targets)`` batches of fixed size in a fixed order."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray | None, batch_size: int):
        n = (len(inputs) // batch_size) * batch_size
        if n == 0:
            raise ValueError(f"need at least one batch of {batch_size}; got {len(inputs)} examples")
        self.inputs, self.targets = inputs[:n], None if targets is None else targets[:n]
        self.batch_size, self.num_batches, self.i = batch_size, n // batch_size, 0

    def next(self):
        s = slice(self.i * self.batch_size, (self.i + 1) * self.batch_size)
        self.i = (self.i + 1) % self.num_batches
        return self.inputs[s], None if self.targets is None else self.targets[s]


# The benchmark's five model families: the project's configuration of each (as its notebook
# trains it: the values of imgmine_jax.recipes, which tests/test_recipes.py checks this table
# against; kept here so the peers' workers import no JAX), and the batch size all three
# frameworks use. Batch sizes follow issue 7
# (128, DCGAN 256); the ConvLSTM uses notebook 02's batch of 16 sequences.
SPECS: dict[str, dict] = {
    "seed_cnn": {"batch_size": 128, "unit": "images", "title": "SeedCNN (Conv32-Conv64-Dense128)",
                 "config": {}},
    "resnet": {"batch_size": 128, "unit": "images", "title": "ResNet 16-32-64 (BN, residual, dropout)",
               "config": {"widths": (16, 32, 64), "blocks": 1, "dropout": 0.2,
                          "label_smoothing": 0.1, "augment_shift": 2}},
    "lstm": {"batch_size": 128, "unit": "images", "title": "row-by-row LSTM, hidden 128",
             "config": {"hidden": 128}},
    "dcgan": {"batch_size": 256, "unit": "images", "title": "DCGAN step (D then G), G width 32, D width 64",
              "config": {"latent_dim": 64, "width": 32, "d_width": 64, "upsample": "depth_to_space", "dropout": 0.0,
                         "ema_decay": 0.995}},
    "convlstm": {"batch_size": 16, "unit": "sequences", "title": "ConvLSTM encoder-forecaster, 10+10 frames",
                 "config": {"embed": 32, "hidden": 32, "patch": 4, "observed": 10, "future": 10,
                            "frame_size": 64}},
}


def merge_into_json(out: Path, key: str, value) -> None:
    """Set ``key`` of the JSON document ``out`` (atomically), keeping its other keys."""
    from imgmine_jax.files import atomic_write_bytes, json_default

    doc = {}
    if out.exists():
        try:
            doc = json.loads(out.read_text())
        except json.JSONDecodeError:
            doc = {}
    doc[key] = value
    atomic_write_bytes(out, (json.dumps(doc, indent=1, default=json_default) + "\n").encode())
