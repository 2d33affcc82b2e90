"""Worker for test_parallel.py, run with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.

    python tests/parallel_worker.py OUTPUT.npz

Trains the same small ResNet (batch norm, dropout, augmentation) on one device and on
all four, and a SeedCNN sweep with its members on one device and split over several;
saves the histories, final parameters and validation losses.
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
# prediction split over the four devices (301 images: a padded last batch) equals one device's
trained = result.model
out["predict_one"] = train.predict(trained, tr.images[:301], batch_size=128,
                                   data_parallel=parallel.DataParallel(jax.devices()[:1]))
out["predict_four"] = train.predict(trained, tr.images[:301], batch_size=128)
# a sweep's members split over devices: six members on three of the four devices
sweep_cfg = train.TrainConfig(epochs=1, batch_size=50, learning_rate=1e-3, schedule="constant", warmup_epochs=0)
seed_config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
    swept = train.sweep(lambda rngs: models.REGISTRY["seed_cnn"](**seed_config, rngs=rngs),
                        train.Classification(10, augment_shift=1), tr.arrays(), va.arrays(), sweep_cfg,
                        [3e-4, 1e-3, 3e-3], [0, 1], progress=False, log=None, devices=devices)
    out[f"sweep_{name}_devices"] = len(jax.tree.leaves(swept.states)[0].sharding.device_set)
    out[f"sweep_{name}_val_loss"] = swept.final("val_loss")
meshes = [parallel.member_mesh(m) for m in (8, 6, 2, 7, 1)]
out["member_mesh_sizes"] = np.array([0 if mesh is None else mesh.size for mesh in meshes])
# the CPU device count can be restated, not changed, once JAX has started
parallel.use_cpu_devices(4)
try:
    parallel.use_cpu_devices(2)
except RuntimeError as err:
    out["late_cpu_devices_error"] = str(err)
np.savez(sys.argv[1], **out)
