"""Time to 99.0% MNIST test accuracy: the project's ResNet against the seed Keras script.

    .venv/bin/python benchmarks/time_to_accuracy.py [--epochs 1] [--skip-keras-epochs]

* **Project**: notebook 01's ResNet (16-32-64, BN, dropout 0.2) and recipe (AdamW with a
  one-cycle schedule peaking at 3e-3, weight decay 0.05, label smoothing 0.1, random
  shifts of up to 2 pixels, batch 32) under a short epoch budget (``--epochs``; the
  one-cycle schedule spans the budget, its ramp-up is ``--warmup-epochs``), trained with
  ``train.fit`` on all 60,000 MNIST training images.
* **Keras peer**: the seed Keras script -- Conv32-pool-Conv64-pool-Dense128-Dense10
  (``benchmarks/peers/keras_models.seed_cnn``), Adam 1e-3, batch 32, 10 epochs,
  ``model.fit`` on the same 60,000 images scaled to [0, 1]. ``--skip-keras-epochs``
  skips it (about 150 s on a quiet 2-core machine).

Both are evaluated on the 10,000 MNIST test images after every epoch; the evaluation is
not counted as training time. "Seconds to target" is the cumulative training wall time
(first-step compilation or tracing included) up to the end of the first epoch whose test
accuracy reaches ``--target``; looking at the test set after each epoch is the usual
time-to-accuracy protocol (as in DAWNBench), not model selection. The project stops
training once the target is reached; the Keras script always runs its 10 epochs, as the
seed script does.

Results go into ``results/benchmarks.json`` under ``time_to_accuracy`` (the file's other
keys are kept) and ``results/README.md`` is regenerated.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "results" / "benchmarks.json"


def log(msg: str) -> None:
    print(msg, flush=True)


def run_project(train_set, test_set, args) -> dict:
    import dataclasses

    from imgmine_jax import models, recipes, train

    # notebook 01's recipe, over this run's epoch budget and ramp-up
    recipe = recipes.CLASSIFIER
    cfg = dataclasses.replace(recipe.train_config("mnist"), epochs=args.epochs,
                              warmup_epochs=min(args.warmup_epochs, args.epochs), seed=args.seed)
    config = models.classifier_config(recipe.model, 10, train_set.image_shape, **recipe.arch_kwargs())
    net = models.build("resnet", config, seed=cfg.seed)
    reached = {}

    def stop_at_target(row, trainer):
        if row["val_accuracy"] >= args.target and not reached:
            reached["epoch"] = row["epoch"]
            if not args.full_budget:
                raise StopIteration

    res = train.fit(net, train.Classification.from_config(10, cfg), train_set.arrays(), test_set.arrays(), cfg,
                    monitor=None, progress=False, on_epoch_end=stop_at_target)
    epochs = [{"epoch": r["epoch"], "train_seconds": r["seconds"], "test_accuracy": r["val_accuracy"],
               "images_per_sec": r["images_per_sec"]} for r in res.history]
    cum, to_target = 0.0, None
    for e in epochs:
        cum += e["train_seconds"]
        e["cumulative_train_seconds"] = cum
        if to_target is None and e["test_accuracy"] >= args.target:
            to_target = cum
    return {"model": "ResNet 16-32-64 (notebook 01)", "parameters": models.count_params(res.model),
            "recipe": {k: v for k, v in vars(cfg).items()}, "train_images": len(train_set),
            "epoch_budget": args.epochs, "epochs": epochs, "seconds_to_target": to_target,
            "final_test_accuracy": epochs[-1]["test_accuracy"], "train_seconds": res.train_seconds,
            "compilations": res.trainer.compilations()}


def run_keras(train_set, test_set, args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from benchmarks.peers import keras_models

    keras.utils.set_random_seed(args.seed)
    x = train_set.images.astype(np.float32) / 255.0
    y = train_set.labels.astype(np.int32)
    xt = test_set.images.astype(np.float32) / 255.0
    yt = test_set.labels.astype(np.int32)
    model = keras_models.seed_cnn()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    class EpochClock(keras.callbacks.Callback):
        """Training seconds per epoch; the test evaluation happens outside the clock."""

        def __init__(self):
            super().__init__()
            self.rows, self.paused = [], 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.t0
            t_eval = time.perf_counter()
            _, acc = self.model.evaluate(xt, yt, batch_size=1000, verbose=0)
            self.rows.append({"epoch": epoch + 1, "train_seconds": seconds, "test_accuracy": float(acc),
                              "images_per_sec": len(x) / seconds})
            self.paused += time.perf_counter() - t_eval
            log(f"[tta] keras epoch {epoch + 1}: {seconds:.1f} s, test accuracy {acc:.4f}")

    clock = EpochClock()
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=args.keras_epochs, verbose=0, callbacks=[clock])
    wall = time.perf_counter() - t0 - clock.paused
    cum, to_target = 0.0, None
    for e in clock.rows:
        cum += e["train_seconds"]
        e["cumulative_train_seconds"] = cum
        if to_target is None and e["test_accuracy"] >= args.target:
            to_target = cum
    return {"model": "seed Keras script: Conv32-pool-Conv64-pool-Dense128-Dense10, Adam 1e-3, batch 32",
            "version": keras_models.version(), "train_images": len(x), "epochs": clock.rows,
            "seconds_to_target": to_target, "train_seconds": cum, "fit_wall_seconds_without_eval": wall,
            "final_test_accuracy": clock.rows[-1]["test_accuracy"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=1, help="the project's epoch budget (one-cycle over it)")
    p.add_argument("--warmup-epochs", type=float, default=0.3, help="one-cycle ramp-up, in epochs")
    p.add_argument("--full-budget", action="store_true", help="train the whole budget even after the target")
    p.add_argument("--target", type=float, default=0.99, help="test accuracy to reach")
    p.add_argument("--keras-epochs", type=int, default=10)
    p.add_argument("--skip-keras-epochs", action="store_true", help="skip the Keras peer (the slow part)")
    p.add_argument("--train-size", type=int, default=None, help="first N training images (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-index", action="store_true", help="do not regenerate results/README.md")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.keras_epochs < 1 or not 0 < args.target <= 1:
        p.error("--epochs and --keras-epochs must be >= 1 and --target in (0, 1]")

    from benchmarks.peers.common import merge_into_json
    from imgmine_jax import data

    started = dt.datetime.now(dt.timezone.utc)
    train_set = data.load("mnist", "train").head(args.train_size)
    test_set = data.load("mnist", "test")
    log(f"[tta] project: ResNet, {args.epochs} epoch(s) budget, {len(train_set):,} training images")
    project = run_project(train_set, test_set, args)
    for e in project["epochs"]:
        log(f"[tta] project epoch {e['epoch']}: {e['train_seconds']:.1f} s, test accuracy {e['test_accuracy']:.4f}")
    keras_result = None
    if args.skip_keras_epochs:
        log("[tta] Keras peer skipped (--skip-keras-epochs)")
    else:
        try:
            import keras  # noqa: F401
        except ImportError as err:
            log(f"[tta] Keras peer skipped: {err}")
        else:
            log(f"[tta] Keras seed script: {args.keras_epochs} epochs")
            keras_result = run_keras(train_set, test_set, args)
    doc = {"date": started.isoformat(timespec="seconds"),
           "command": "python benchmarks/time_to_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "target_test_accuracy": args.target, "machine": {"cpu_count": os.cpu_count(),
                                                           "platform": platform.platform(terse=True),
                                                           "load_average_at_start": os.getloadavg()},
           "project": project, "keras": keras_result}
    if keras_result is not None:
        reference = keras_result["train_seconds"]
        doc["keras_reference_seconds"] = reference
        if project["seconds_to_target"] is not None:
            doc["project_over_keras_time"] = project["seconds_to_target"] / reference
            doc["target_met"] = project["seconds_to_target"] <= 0.5 * reference
            if keras_result["seconds_to_target"]:
                doc["speedup_vs_keras_time_to_target"] = (keras_result["seconds_to_target"]
                                                          / project["seconds_to_target"])
        else:
            doc["target_met"] = False
    out = args.out
    merge_into_json(out, "time_to_accuracy", doc)
    log(f"[tta] project: {project['seconds_to_target'] or float('nan'):.1f} s to {args.target:.1%} "
        f"(final {project['final_test_accuracy']:.4f})"
        + (f"; Keras: {keras_result['train_seconds']:.1f} s for {args.keras_epochs} epochs, "
           f"{keras_result['final_test_accuracy']:.4f}, {keras_result['seconds_to_target'] or float('nan'):.1f} s "
           f"to target" if keras_result else ""))
    log(f"[tta] wrote {out}")
    if not args.no_index and out.resolve().parent == (ROOT / "results").resolve():
        from imgmine_jax.run import write_index

        log(f"[tta] index: {write_index(out.resolve().parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
