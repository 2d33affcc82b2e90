"""Save and restore trained models with Orbax (no pickle, no code execution).

A checkpoint is a directory::

    <path>/meta.json    architecture name and constructor arguments, plus free-form info
    <path>/state/       the model's parameters and batch statistics (Orbax)

:func:`save_model` writes into a temporary sibling and swaps it into place with
renames, so a crash mid-write leaves the previous checkpoint intact.
:func:`load_model` rebuilds the architecture from ``meta.json`` (only names from
:data:`imgmine_jax.models.REGISTRY`) and refuses a checkpoint whose arrays do not
match it.

Trained models live under :func:`artifacts_dir` (``artifacts/`` in the repository,
git-ignored; override with ``$IMGMINE_ARTIFACTS``), so one notebook can reuse what
another trained.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from imgmine_jax.files import json_default, recover_dir, replace_dir

ARTIFACTS_ENV = "IMGMINE_ARTIFACTS"
_SAVED = (nnx.Param, nnx.BatchStat)


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, corrupt or of another architecture."""


def artifacts_dir() -> Path:
    """Where trained models and scratch outputs go: ``$IMGMINE_ARTIFACTS`` or ``<repo>/artifacts``."""
    env = os.environ.get(ARTIFACTS_ENV)
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _flat_state(model: nnx.Module) -> dict[str, np.ndarray]:
    """The saved variables as ``{"path/to/leaf": array}`` (string keys, as Orbax wants)."""
    state = nnx.state(model, nnx.Any(*_SAVED))
    return {"/".join(map(str, path)): np.asarray(var.get_value())
            for path, var in nnx.to_flat_state(state)}


def save_model(path: str | os.PathLike, model: nnx.Module, architecture: str,
               config: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (built as ``REGISTRY[architecture](**config)``) to the directory ``path``."""
    import orbax.checkpoint as ocp

    from imgmine_jax.models import REGISTRY

    if architecture not in REGISTRY:
        raise CheckpointError(f"unknown architecture {architecture!r}; expected one of {sorted(REGISTRY)}")
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / "state", _flat_state(model))
            ckptr.wait_until_finished()
        meta = {"format": 1, "architecture": architecture, "config": config, "info": info or {}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint, with clear errors for missing or broken ones."""
    path = Path(path)
    recover_dir(path)
    meta_file = path / "meta.json"
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path} (expected a directory with meta.json and state/)")
    if not meta_file.exists() or not (path / "state").is_dir():
        raise CheckpointError(f"checkpoint {path} is incomplete: expected meta.json and state/, found "
                              f"{sorted(p.name for p in path.iterdir())}")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint {path} has a corrupt meta.json: {err}") from None
    if not isinstance(meta, dict) or "architecture" not in meta or "config" not in meta:
        raise CheckpointError(f"checkpoint {path}: meta.json lacks 'architecture'/'config'")
    return meta


def load_model(path: str | os.PathLike, expect_architecture: str | None = None) -> tuple[nnx.Module, dict]:
    """Rebuild the model saved at ``path`` and load its weights. Returns ``(model, meta)``."""
    import orbax.checkpoint as ocp

    from imgmine_jax.models import REGISTRY

    path = Path(path).absolute()
    meta = read_meta(path)
    arch = meta["architecture"]
    if expect_architecture is not None and arch != expect_architecture:
        raise CheckpointError(f"checkpoint {path} holds a {arch!r} model; expected {expect_architecture!r}")
    if arch not in REGISTRY:
        raise CheckpointError(f"checkpoint {path} names unknown architecture {arch!r}; "
                              f"expected one of {sorted(REGISTRY)}")
    model = REGISTRY[arch](**meta["config"], rngs=nnx.Rngs(0))
    target = _flat_state(model)
    with ocp.StandardCheckpointer() as ckptr:
        try:
            stored = ckptr.metadata(path / "state")
            stored_tree = getattr(stored, "item_metadata", stored)
            stored_shapes = {k: tuple(v.shape) for k, v in dict(stored_tree).items()}
        except Exception as err:
            raise CheckpointError(f"checkpoint {path}/state is unreadable: {err}") from None
        expected = {k: v.shape for k, v in target.items()}
        if stored_shapes != expected:
            diff = sorted(set(stored_shapes.items()) ^ set(expected.items()))[:4]
            raise CheckpointError(f"checkpoint {path} does not match architecture {arch!r} with "
                                  f"config {meta['config']}: differing arrays {diff}")
        try:
            restored = ckptr.restore(path / "state", jax.tree.map(np.zeros_like, target))
        except Exception as err:
            raise CheckpointError(f"checkpoint {path}/state is corrupt: {err}") from None
    state = nnx.state(model, nnx.Any(*_SAVED))
    for p, var in nnx.to_flat_state(state):
        var.set_value(jax.numpy.asarray(restored["/".join(map(str, p))]))
    nnx.update(model, state)
    model.eval()
    return model, meta


# --------------------------------------------------------------------------- resumable training

def _leaves_with_names(tree) -> list[tuple[str, Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in leaves]


def _to_storable(leaf) -> np.ndarray:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)   # typed PRNG keys are stored as their raw bits
    return np.asarray(leaf)


def save_training(directory: str | os.PathLike, epoch: int, state, progress: dict[str, Any],
                  keep: int = 2) -> Path:
    """Save a complete training state (any pytree, e.g. ``Trainer.state`` and the best weights)
    as ``directory/epoch-NNNN`` with a ``progress.json``; keep the newest ``keep`` of them.

    Written to a temporary sibling and renamed into place: a crash leaves the previous
    complete checkpoint as the newest.
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"epoch-{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{target.name}.tmp-"))
    try:
        named = _leaves_with_names(state)
        arrays = {f"{i:05d}": _to_storable(leaf) for i, (_, leaf) in enumerate(named)}
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / "state", arrays)
            ckptr.wait_until_finished()
        doc = {"format": 1, "epoch": epoch, "leaves": [name for name, _ in named], "progress": progress}
        (tmp / "progress.json").write_text(json.dumps(doc, default=json_default) + "\n")
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(directory.glob("epoch-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_training(directory: str | os.PathLike) -> Path | None:
    """The newest complete ``epoch-NNNN`` checkpoint under ``directory``, or None."""
    directory = Path(directory)
    complete = [p for p in sorted(directory.glob("epoch-*"))
                if (p / "progress.json").exists() and (p / "state").is_dir()]
    return complete[-1] if complete else None


def restore_training(path: str | os.PathLike, like) -> tuple[Any, dict[str, Any]]:
    """Load a training checkpoint into a pytree shaped like ``like``; returns ``(state, progress)``.

    Refuses (``CheckpointError``) a checkpoint whose arrays do not match ``like``: another
    architecture, optimiser or configuration.
    """
    import orbax.checkpoint as ocp

    path = Path(path)
    try:
        doc = json.loads((path / "progress.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"training checkpoint {path} is unreadable: {err}") from None
    named = _leaves_with_names(like)
    if doc.get("leaves") != [name for name, _ in named]:
        raise CheckpointError(f"training checkpoint {path} was written for a different model or "
                              f"optimiser ({len(doc.get('leaves', []))} arrays stored, {len(named)} expected)")
    template = {f"{i:05d}": _to_storable(leaf) for i, (_, leaf) in enumerate(named)}
    try:
        with ocp.StandardCheckpointer() as ckptr:
            stored = ckptr.restore(path / "state", jax.tree.map(np.zeros_like, template))
    except Exception as err:
        raise CheckpointError(f"training checkpoint {path}/state is corrupt or does not match: {err}") from None
    leaves = []
    for i, (_, leaf) in enumerate(named):
        value = stored[f"{i:05d}"]
        if value.shape != template[f"{i:05d}"].shape:
            raise CheckpointError(f"training checkpoint {path}: array {i} has shape {value.shape}, "
                                  f"expected {template[f'{i:05d}'].shape}")
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaves.append(jax.random.wrap_key_data(jax.numpy.asarray(value), impl=jax.random.key_impl(leaf)))
        else:
            leaves.append(jax.numpy.asarray(value, dtype=leaf.dtype))
    return jax.tree.unflatten(jax.tree.structure(like), leaves), doc["progress"]
