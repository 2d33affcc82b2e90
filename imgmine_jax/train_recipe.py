"""Train a notebook recipe outside a notebook: for batch jobs and clusters.

    python -m imgmine_jax.train_recipe mnist_resnet --workdir runs/a [--set epochs=20] [--profile quick]
    python -m imgmine_jax.train_recipe mnist_resnet --workdir /shared/runs/a --distributed   # one per host

A recipe is ``<dataset>_<model>``: notebook 01's classifier (:data:`imgmine_jax.recipes.CLASSIFIER`,
the same definition the notebook's parameters cell shows) for a dataset of
:data:`DATASETS` and a classifier of :data:`imgmine_jax.models.CLASSIFIERS`. ``--set``
changes one recipe field (``--set widths=8,16,32 --set train_size=none``).

``--workdir`` receives ``checkpoints/`` (the complete training state after every epoch; a
rerun with the same recipe resumes from the newest complete one, and one with another
recipe or process count is refused), ``recipe.json``, ``history.json`` (one row per epoch,
rewritten after each) and, when training ends, ``model/`` (:func:`imgmine_jax.checkpoint.load_model`
reads it) with its test accuracy in ``result.json``.

``--distributed`` joins a multi-process run first: ``jax.distributed.initialize()`` with no
arguments, so JAX detects the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU); outside
one, ``--coordinator HOST:PORT --num-processes N --process-id I`` say it explicitly.
Process 0 writes the files; every process trains its share of each batch.

Bad input -- an unknown recipe, a ``--set`` of an unknown field or a wrong type, a
coordinator that does not answer within ``--timeout`` seconds, a workdir whose checkpoints
another recipe or process count wrote -- ends with a one-line error naming the value
(exit status 2).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any, Sequence

DATASETS = ("mnist", "fashion_mnist")


from imgmine_jax.checkpoint import CheckpointError  # noqa: E402  (a workdir of another recipe)


class UsageError(ValueError):
    """Bad input to the command: reported as one line."""


def recipe_names() -> list[str]:
    from imgmine_jax import models

    return [f"{d}_{m}" for d in DATASETS for m in sorted(models.CLASSIFIERS)]


def parse_recipe(name: str):
    """``(dataset, ClassifierRecipe)`` of a recipe name such as ``mnist_resnet``."""
    from imgmine_jax import classifier

    if name not in recipe_names():
        raise UsageError(f"unknown recipe {name!r}; expected one of {', '.join(recipe_names())}")
    dataset, model = next((d, name[len(d) + 1:]) for d in sorted(DATASETS, key=len, reverse=True)
                          if name.startswith(d + "_"))
    return dataset, classifier.expected_recipe(model, "full")


def _convert(field: dataclasses.Field, hint: Any, text: str) -> Any:
    """``text`` as a value of the recipe field's type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    expected = getattr(hint, "__name__", str(hint))
    try:
        if type(None) in args:                              # "int | None"
            if text.lower() in ("none", "null", ""):
                return None
            return _convert(field, next(a for a in args if a is not type(None)), text)
        if hint is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is str:
            return text
        if origin is tuple:
            expected = "comma-separated integers"
            return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--set {field.name}={text!r}: expected {expected}") from None
    raise UsageError(f"--set {field.name}: this field cannot be set from the command line")


def apply_sets(recipe, sets: Sequence[str]):
    """``recipe`` with each ``field=value`` of ``sets`` applied (checked by the recipe's own
    validation through its training configuration)."""
    fields = {f.name: f for f in dataclasses.fields(recipe)}
    hints = typing.get_type_hints(type(recipe))
    changes = {}
    for item in sets:
        name, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r}: expected field=value")
        if name not in fields or name == "dataset_overrides":
            raise UsageError(f"--set {name}: unknown recipe field; expected one of "
                             f"{', '.join(n for n in fields if n != 'dataset_overrides')}")
        changes[name] = _convert(fields[name], hints[name], text)
    # a field set explicitly wins over the recipe's per-dataset overrides
    overrides = {d: {k: v for k, v in o.items() if k not in changes} for d, o in recipe.dataset_overrides.items()}
    return dataclasses.replace(recipe, **changes, dataset_overrides=overrides)


def join_cluster(args) -> None:
    """``jax.distributed.initialize`` (no arguments: JAX's cluster detection), bounded by ``--timeout``.

    XLA ends the process (SIGABRT, a stack trace) when the coordinator does not answer, so a
    process other than 0 first checks that the coordinator's port accepts connections within
    the timeout and otherwise stops with a one-line error. Process 0 runs the coordinator: if
    another process never joins, XLA aborts it after ``--timeout`` seconds (a bounded wait).
    """
    import jax

    explicit = {k: v for k, v in (("coordinator_address", args.coordinator), ("num_processes", args.num_processes),
                                  ("process_id", args.process_id)) if v is not None}
    address, process_id = _detected(explicit, args.timeout)
    if address is not None and process_id not in (None, 0):
        _wait_for_coordinator(address, args.timeout)
    try:
        jax.distributed.initialize(**explicit, initialization_timeout=args.timeout)
    except Exception as err:
        where = address or "the coordinator JAX detected"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"--distributed: could not join the run at {where} within {args.timeout} s "
                         f"({first[:300]})") from None


def _detected(explicit: dict, timeout: int) -> tuple[str | None, int | None]:
    """The coordinator address and process id ``jax.distributed.initialize`` will use (None: unknown)."""
    import os

    address = explicit.get("coordinator_address") or os.environ.get("JAX_COORDINATOR_ADDRESS")
    process_id = explicit.get("process_id")
    try:   # JAX's own cluster detection (SLURM, Open MPI, ...), as initialize() runs it
        from jax._src import clusters

        address, _, process_id, _ = clusters.ClusterEnv.auto_detect_unset_distributed_params(
            address, explicit.get("num_processes"), process_id, None, None, timeout)
    except Exception:   # private API or no cluster: initialize() reports what is missing
        pass
    return address, process_id


def _wait_for_coordinator(address: str, timeout: int) -> None:
    import socket
    import time

    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except (OSError, ValueError) as err:
            if time.monotonic() >= deadline:
                raise UsageError(f"--distributed: could not join the run at {address} within {timeout} s "
                                 f"(the coordinator, process 0, does not answer: {err})") from None
        time.sleep(0.5)


def run(args) -> dict:
    from imgmine_jax import checkpoint, classifier, metrics, train
    from imgmine_jax.files import atomic_write_bytes, json_default

    dataset, recipe = parse_recipe(args.recipe)
    recipe = apply_sets(recipe.for_profile(args.profile), args.set or [])
    try:
        cfg = recipe.train_config(dataset)
    except ValueError as err:
        raise UsageError(f"--set: {err}") from None
    workdir = Path(args.workdir).resolve()
    primary = checkpoint.is_primary()
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(workdir / "recipe.json", json.dumps(
            {"recipe": args.recipe, "dataset": dataset, "profile": args.profile, **recipe.as_dict()},
            indent=1, default=json_default).encode())
    checkpoint.sync_processes("train_recipe start")
    train_part, val_part, test = classifier.splits(dataset, recipe)
    history: list[dict] = []

    def record(row, trainer):
        if not history and (workdir / "history.json").is_file():   # resumed: keep the earlier epochs
            history.extend(r for r in json.loads((workdir / "history.json").read_text()) if r["epoch"] < row["epoch"])
        history.append({k: float(v) for k, v in row.items()})
        if primary:
            atomic_write_bytes(workdir / "history.json", json.dumps(history, indent=1).encode())

    from imgmine_jax import models

    config = models.classifier_config(recipe.model, train_part.num_classes, train_part.image_shape,
                                      **recipe.arch_kwargs())
    result = train.fit(models.build(recipe.model, config, seed=cfg.seed),
                       train.Classification.from_config(train_part.num_classes, cfg), train_part.arrays(),
                       val_part.arrays(), cfg, checkpoint_dir=workdir / "checkpoints", on_epoch_end=record,
                       progress=False)
    history = [{k: float(v) for k, v in row.items()} for row in result.history]   # with resumed epochs
    accuracy = metrics.accuracy(test.labels, train.predict(result.model, test.images).argmax(-1))
    summary = {"recipe": args.recipe, "epochs": len(history), "best_epoch": result.best_epoch,
               "test_accuracy": float(accuracy), "train_seconds": result.train_seconds}
    if primary:
        atomic_write_bytes(workdir / "history.json", json.dumps(history, indent=1).encode())
        if args.save_classifier:
            classifier.save(dataset, result.model, config, recipe, profile=args.profile, test_accuracy=accuracy)
        checkpoint.save_model(workdir / "model", result.model, recipe.model, config,
                              info={"dataset": dataset, "test_accuracy": float(accuracy), "profile": args.profile,
                                    "recipe": recipe.as_dict()})
        atomic_write_bytes(workdir / "result.json", json.dumps(summary, indent=1).encode())
    checkpoint.sync_processes("train_recipe done")
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m imgmine_jax.train_recipe", description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", help="e.g. mnist_resnet (see --list)", nargs="?")
    p.add_argument("--workdir", help="checkpoints, history and the trained model go here; a rerun resumes")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="change one recipe field (repeatable)")
    p.add_argument("--profile", choices=("quick", "full"), default="full",
                   help="quick: one epoch on 2,000 images (as the notebooks' quick profile)")
    p.add_argument("--save-classifier", action="store_true",
                   help="also save the model where notebooks 03 and 04 look for it")
    p.add_argument("--list", action="store_true", help="print the recipe names and exit")
    g = p.add_argument_group("several processes")
    g.add_argument("--distributed", action="store_true", help="join a multi-process run (jax.distributed)")
    g.add_argument("--coordinator", help="HOST:PORT of process 0 (default: detected from the cluster)")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)
    g.add_argument("--timeout", type=int, default=300, help="seconds to wait for the other processes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.list:
            print("\n".join(recipe_names()))
            return 0
        if args.recipe is None or args.workdir is None:
            raise UsageError("a recipe and --workdir are required (e.g. mnist_resnet --workdir runs/a)")
        parse_recipe(args.recipe)       # bad input is reported before anything slow starts
        from imgmine_jax import recipes

        apply_sets(recipes.CLASSIFIER, args.set or [])
        if args.distributed:
            join_cluster(args)
        elif any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)):
            raise UsageError("--coordinator, --num-processes and --process-id need --distributed")
        summary = run(args)
    except (UsageError, CheckpointError) as err:
        print(f"train_recipe: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
