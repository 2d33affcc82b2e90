"""Worker for test_resume.py: a short, checkpointed ResNet training run on real MNIST.

    python tests/resume_worker.py CHECKPOINT_DIR OUTPUT.npz
"""
import json
import sys

import numpy as np
from flax import nnx

from imgmine_jax import data, models, train

ckpt_dir, out = sys.argv[1], sys.argv[2]
tr, va = data.train_val_split(data.load("mnist", "train").head(2500), 500, seed=0)
config = models.classifier_config("resnet", 10, (28, 28, 1), widths=[8, 16, 32], dropout=0.3)
cfg = train.TrainConfig(epochs=5, batch_size=50, learning_rate=3e-3, augment_shift=2, label_smoothing=0.1, seed=3)
result = train.fit(models.build("resnet", config, seed=3), train.Classification.from_config(10, cfg),
                   tr.arrays(), va.arrays(), cfg, checkpoint_dir=ckpt_dir, progress=False)
params = {"/".join(map(str, path)): np.asarray(v.get_value())
          for path, v in nnx.to_flat_state(nnx.state(result.trainer.state, nnx.Param))}
timing = {"seconds", "images_per_sec"}
history = [{k: v for k, v in row.items() if k not in timing} for row in result.history]
np.savez(out, history=json.dumps(history), best_epoch=result.best_epoch, **params)
