"""Worker for test_multiprocess.py: notebook 01's ResNet recipe on an MNIST slice through ``train.fit``,
as one of ``NUM_PROCESSES`` JAX processes (one CPU device each).

    python tests/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUTPUT.npz CHECKPOINT_DIR EPOCHS

With ``NUM_PROCESSES`` 1 it is the single-process reference (no ``jax.distributed``);
otherwise it joins the coordinator on ``127.0.0.1:PORT``. Writes the history, the final
parameters, the predictions (through a process-local and a global ``DataParallel``) and the
error for a batch size that does not split over the processes.
"""
import dataclasses
import json
import sys

import jax

pid, nproc, port, out, ckpt_dir, epochs = sys.argv[1:7]
pid, nproc, epochs = int(pid), int(nproc), int(epochs)
jax.config.update("jax_num_cpu_devices", 1)
if nproc > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
                               coordinator_bind_address=f"127.0.0.1:{port}", initialization_timeout=120,
                               heartbeat_timeout_seconds=30)

import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from imgmine_jax import data, models, parallel, recipes, train  # noqa: E402

recipe = dataclasses.replace(recipes.CLASSIFIER, widths=(8, 16, 32), epochs=epochs, warmup_epochs=0.5,
                             batch_size=40, seed=3)
cfg = recipe.train_config("mnist")
tr, va = data.train_val_split(data.load("mnist", "train").head(800), 200, seed=0)
config = models.classifier_config("resnet", 10, (28, 28, 1), **recipe.arch_kwargs())
result = train.fit(models.build("resnet", config, seed=cfg.seed), train.Classification.from_config(10, cfg),
                   tr.arrays(), va.arrays(), cfg, checkpoint_dir=ckpt_dir, progress=False)
assert len(jax.devices()) == nproc and jax.process_count() == nproc
params = {"/".join(map(str, path)): np.asarray(v.get_value())
          for path, v in nnx.to_flat_state(nnx.state(result.model, nnx.Param))}
history = [{k: float(v) for k, v in row.items() if k not in ("seconds", "images_per_sec")} for row in result.history]
extra = {
    "predict_local": train.predict(result.model, va.images[:101], batch_size=50),
    "predict_global": train.predict(result.model, va.images[:101], batch_size=50,
                                    data_parallel=parallel.DataParallel()),
    "evaluate": json.dumps({k: float(v) for k, v in result.trainer.evaluate(va.arrays(), 64).items()}),
}
if nproc > 1:
    try:
        train.fit(models.build("resnet", config), train.Classification(10), tr.arrays(), None,
                  dataclasses.replace(cfg, batch_size=41), progress=False, log=None)
        extra["odd_batch_error"] = "no error"
    except ValueError as err:
        extra["odd_batch_error"] = str(err)
np.savez(out + f".{pid}.tmp.npz", history=json.dumps(history), best_epoch=result.best_epoch,
         devices=len(jax.devices()), processes=jax.process_count(), **extra, **params)
import os  # noqa: E402

os.replace(out + f".{pid}.tmp.npz", out + f".{pid}.npz")
print("worker done", pid, flush=True)
