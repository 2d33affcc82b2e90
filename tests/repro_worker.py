"""Worker for test_reliability.py: one reduced-size training run of a model family.

    python tests/repro_worker.py FAMILY OUTPUT.npz

Writes every parameter and the history (without timings) so that two fresh processes
can be compared bit for bit.
"""
import json
import sys

import numpy as np
from flax import nnx

from imgmine_jax import data, models, train


def cnn():
    """The ResNet with batch norm, dropout and augmentation: every source of randomness."""
    tr, va = data.train_val_split(data.load("mnist", "train").head(1200), 200, seed=0)
    config = models.classifier_config("resnet", 10, (28, 28, 1), widths=[8, 8, 16], dropout=0.3)
    cfg = train.TrainConfig(epochs=2, batch_size=50, learning_rate=3e-3, augment_shift=2, label_smoothing=0.1,
                            seed=5)
    return models.build("resnet", config, seed=5), train.Classification.from_config(10, cfg), tr, va, cfg


FAMILIES = {"cnn": cnn}

if __name__ == "__main__":
    family, out = sys.argv[1], sys.argv[2]
    model, task, tr, va, cfg = FAMILIES[family]()
    result = train.fit(model, task, tr.arrays(), va.arrays(), cfg, progress=False, log=None)
    params = {"/".join(map(str, path)): np.asarray(v.get_value())
              for path, v in nnx.to_flat_state(nnx.state(result.trainer.state, nnx.Param))}
    history = [{k: v for k, v in row.items() if k not in ("seconds", "images_per_sec")} for row in result.history]
    np.savez(out, history=json.dumps(history), **params)
