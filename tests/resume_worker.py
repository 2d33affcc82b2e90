"""Worker for test_resume.py: a short, checkpointed training run on real MNIST.

    python tests/resume_worker.py CHECKPOINT_DIR OUTPUT.npz [fit|sweep]

``fit``: a ResNet (batch norm, dropout, augmentation); ``sweep``: a vmapped SeedCNN
learning-rate x seed sweep.
"""
import json
import sys

import numpy as np
from flax import nnx

from imgmine_jax import data, models, train

ckpt_dir, out = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "fit"
tr, va = data.train_val_split(data.load("mnist", "train").head(2500), 500, seed=0)
timing = {"seconds", "images_per_sec"}
if mode == "fit":
    config = models.classifier_config("resnet", 10, (28, 28, 1), widths=[8, 16, 32], dropout=0.3)
    cfg = train.TrainConfig(epochs=5, batch_size=50, learning_rate=3e-3, augment_shift=2, label_smoothing=0.1,
                            seed=3)
    result = train.fit(models.build("resnet", config, seed=3), train.Classification.from_config(10, cfg),
                       tr.arrays(), va.arrays(), cfg, checkpoint_dir=ckpt_dir, progress=False)
    state, extra = result.trainer.state, {"best_epoch": result.best_epoch}
    history = result.history
else:
    config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
    cfg = train.TrainConfig(epochs=3, batch_size=50, schedule="constant", warmup_epochs=0.0, augment_shift=1,
                            seed=3)
    result = train.sweep(lambda rngs: models.REGISTRY["seed_cnn"](**config, rngs=rngs), train.Classification(10),
                         tr.head(600).arrays(), va.head(200).arrays(), cfg, [1e-3, 3e-3], [0], checkpoint_dir=ckpt_dir,
                         progress=False)
    state, extra, history = result.states, {}, result.history
params = {"/".join(map(str, path)): np.asarray(v.get_value())
          for path, v in nnx.to_flat_state(nnx.state(state, nnx.Param))}
history = [{k: np.asarray(v).tolist() for k, v in row.items() if k not in timing} for row in history]
np.savez(out, history=json.dumps(history), **extra, **params)
