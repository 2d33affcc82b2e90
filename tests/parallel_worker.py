"""Worker for test_parallel.py, run with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.

    python tests/parallel_worker.py OUTPUT.npz

Trains the same small ResNet (batch norm, dropout, augmentation) on one device and on
all four, and saves both histories and final parameters.
"""
import json
import sys

import jax
import numpy as np
from flax import nnx

from imgmine_jax import data, models, parallel, train

assert jax.device_count() == 4, f"expected 4 forced host devices, got {jax.devices()}"
tr, va = data.train_val_split(data.load("mnist", "train").head(1300), 300, seed=0)
config = models.classifier_config("resnet", 10, (28, 28, 1), widths=[8, 8, 16], dropout=0.2)
cfg = train.TrainConfig(epochs=2, batch_size=40, learning_rate=3e-3, augment_shift=2, seed=1, eval_batch_size=128)
out = {}
# one step, exactly: the sharded gradient (and batch-norm statistics) equal the single-device ones
for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
    dp = parallel.DataParallel(devices)
    trainer = train.Trainer(models.build("resnet", config, seed=1), train.Classification.from_config(10, cfg),
                            train.make_optimizer(cfg, 25), seed=1, data_parallel=dp)
    trainer.run_epoch(dp.replicate(tr.arrays()), np.arange(40)[None])
    for path, v in nnx.to_flat_state(nnx.state(trainer.state, nnx.Param)):
        out[f"step1_{name}/" + "/".join(map(str, path))] = np.asarray(v.get_value())
for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
    result = train.fit(models.build("resnet", config, seed=1), train.Classification.from_config(10, cfg),
                       tr.arrays(), va.arrays(), cfg, progress=False, log=None,
                       data_parallel=parallel.DataParallel(devices))
    state = result.trainer.state
    leaf = jax.tree.leaves(nnx.state(state, nnx.Param))[0]
    out[f"{name}_devices"] = len(leaf.sharding.device_set)
    out[f"{name}_history"] = json.dumps([{k: v for k, v in row.items() if k not in ("seconds", "images_per_sec")}
                                         for row in result.history])
    for path, v in nnx.to_flat_state(nnx.state(state, nnx.Param)):
        out[f"{name}/" + "/".join(map(str, path))] = np.asarray(v.get_value())
    out[f"{name}_compilations"] = result.trainer.compilations()
try:
    train.fit(models.build("resnet", config), train.Classification(10), tr.arrays(), None,
              train.TrainConfig(epochs=1, batch_size=6), progress=False, log=None,
              data_parallel=parallel.DataParallel(jax.devices()))
except ValueError as err:
    out["odd_batch_error"] = str(err)
np.savez(sys.argv[1], **out)
