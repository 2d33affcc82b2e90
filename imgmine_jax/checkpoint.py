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

from imgmine_jax.files import replace_dir

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
