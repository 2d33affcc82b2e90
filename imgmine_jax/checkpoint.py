"""Save and restore trained models with Orbax (no pickle, no code execution).

A checkpoint is a directory::

    <path>/meta.json       architecture name and constructor arguments, plus free-form info
    <path>/state/          the model's parameters and batch statistics (Orbax)
    <path>/checksums.json  size and SHA-256 of every other file

:func:`save_model` writes into a temporary sibling and swaps it into place with
renames, so a crash mid-write leaves the previous checkpoint intact; a temporary left
by a killed writer is removed by the next save or load. :func:`load_model` checks every
file against ``checksums.json`` (a flipped bit or a truncated file is refused with
:class:`CheckpointError`), then rebuilds the architecture from ``meta.json`` (only names
from :data:`imgmine_jax.models.REGISTRY`) -- first abstractly, so that a ``meta.json``
asking for arrays other than those stored is refused before anything is allocated.
Training checkpoints (:func:`save_training`) carry checksums too, and
:func:`latest_training` skips a damaged one for the newest intact epoch.

Several processes (``jax.distributed``): training state is replicated, so one copy is the
whole checkpoint. Process 0 alone writes it, after every process has confirmed the same
epoch and step, and all wait at a barrier until it is renamed into place; on restart
process 0 chooses the newest intact epoch and broadcasts it. Orbax's ``CheckpointManager``
would do the primary-host writing and the commit, but not the per-file SHA-256 manifest and
the fallback past a damaged newest step that :func:`latest_training` gives, and it works
through its own directory layout; so the writer here stays and Orbax only serialises the
arrays. The checkpoint directory must be on a file system every process sees.

Trained models live under :func:`artifacts_dir` (``artifacts/`` in the repository,
git-ignored; override with ``$IMGMINE_ARTIFACTS``), so one notebook can reuse what
another trained.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from imgmine_jax import validate
from imgmine_jax.files import clean_stale, json_default, recover_dir, replace_dir, temp_dir

ARTIFACTS_ENV = "IMGMINE_ARTIFACTS"
_SAVED = (nnx.Param, nnx.BatchStat)
FORMAT = 2                      # 2: with checksums.json; 1: without (read without verification)
MANIFEST = "checksums.json"
_READ_RETRIES = 50              # a reader beside a writer retries while the directory is swapped


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, damaged, corrupt or of another architecture."""


def artifacts_dir(create: bool = True) -> Path:
    """Where trained models and scratch outputs go: ``$IMGMINE_ARTIFACTS`` (made absolute against the
    working directory) or ``<repo>/artifacts``. Raises ``ValueError``/``PermissionError`` naming
    the variable when that is a file or cannot be created or written."""
    env = os.environ.get(ARTIFACTS_ENV)
    path = env if env else Path(__file__).resolve().parent.parent / "artifacts"
    name = f"${ARTIFACTS_ENV} (where trained models and outputs go)" if env else "the artifacts directory"
    return validate.directory(path, name, create=create)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(directory: Path) -> None:
    """``checksums.json``: size and SHA-256 of every file under ``directory`` (fsynced)."""
    files = {}
    for f in sorted(directory.rglob("*")):
        if f.is_file() and f.name != MANIFEST:
            files[f.relative_to(directory).as_posix()] = {"size": f.stat().st_size, "sha256": _file_digest(f)}
    payload = json.dumps({"algorithm": "sha256", "files": files}, indent=1) + "\n"
    with open(directory / MANIFEST, "w") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def verify(path: str | os.PathLike, required: bool = True) -> None:
    """Check every file of checkpoint ``path`` against its ``checksums.json``.

    Raises :class:`CheckpointError` naming the first missing, truncated or altered file.
    ``required=False`` accepts a checkpoint written before checksums existed (no manifest).
    """
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        if required:
            raise CheckpointError(f"checkpoint {path} is damaged: its {MANIFEST} is missing")
        return
    try:
        files = json.loads(manifest.read_text())["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError("no files listed")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} is damaged: unreadable {MANIFEST} ({err})") from None
    for rel, want in files.items():
        f = path / rel
        if ".." in Path(rel).parts or not f.is_file():
            raise CheckpointError(f"checkpoint {path} is damaged: file {rel} is missing")
        size = f.stat().st_size
        if size != want.get("size"):
            raise CheckpointError(f"checkpoint {path} is damaged: file {rel} has {size} bytes, "
                                  f"expected {want.get('size')} (truncated or overwritten)")
        digest = _file_digest(f)
        if digest != want.get("sha256"):
            raise CheckpointError(f"checkpoint {path} is damaged: file {rel} has SHA-256 {digest[:16]}..., "
                                  f"expected {str(want.get('sha256'))[:16]}... (flipped bits or another file)")


def data_fingerprint(*arrays: dict | None) -> str:
    """SHA-256 of the contents of dicts of arrays (keys, dtypes, shapes and bytes), for resume checks."""
    h = hashlib.sha256()
    for d in arrays:
        if d is None:
            h.update(b"None")
            continue
        for key in sorted(d):
            a = np.ascontiguousarray(np.asarray(d[key]))
            h.update(f"{key}|{a.dtype}|{a.shape}|".encode())
            h.update(a.data)
    return h.hexdigest()


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _read_beside_writers(path: Path, read):
    """``read()``; if it fails while a writer swapped ``path`` (another directory now, or none),
    read again: a reader never reports a checkpoint as damaged because it was being replaced."""
    for attempt in range(_READ_RETRIES):
        before = _inode(path)
        try:
            return read()
        except CheckpointError:
            after = _inode(path)
            swapping = any(path.parent.glob(f".old-{path.name}-*"))
            if attempt + 1 == _READ_RETRIES or (after == before and not swapping):
                raise
            time.sleep(0.02)


def _flat_state(model: nnx.Module) -> dict[str, np.ndarray]:
    """The saved variables as ``{"path/to/leaf": array}`` (string keys, as Orbax wants)."""
    state = nnx.state(model, nnx.Any(*_SAVED))
    return {"/".join(map(str, path)): np.asarray(var.get_value())
            for path, var in nnx.to_flat_state(state)}


def _abstract_shapes(architecture: str, config: dict, where: str) -> dict[str, tuple]:
    """The arrays ``REGISTRY[architecture](**config)`` would hold, computed without allocating them."""
    from imgmine_jax.models import REGISTRY

    cls = REGISTRY[architecture]
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(config) - set(params) - {"self"})
    if unknown or "rngs" in config:
        raise CheckpointError(f"{where}: config {config} has arguments {unknown or ['rngs']} that "
                              f"{architecture!r} does not take; expected some of "
                              f"{sorted(set(params) - {'self', 'rngs'})}")
    try:
        abstract = nnx.eval_shape(lambda: cls(**config, rngs=nnx.Rngs(0)))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: config {config} is not valid for {architecture!r}: {err}") from None
    state = nnx.state(abstract, nnx.Any(*_SAVED))
    return {"/".join(map(str, p)): tuple(v.get_value().shape) for p, v in nnx.to_flat_state(state)}


def save_model(path: str | os.PathLike, model: nnx.Module, architecture: str,
               config: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (built as ``REGISTRY[architecture](**config)``) to the directory ``path``.

    ``path`` may be relative (to the working directory); it must not be an existing file.
    """

    from imgmine_jax.models import REGISTRY

    path = validate.path(path, "save_model(path)")
    if not isinstance(model, nnx.Module):
        validate.fail("save_model(model)", model, "a Flax NNX module", TypeError)
    if not isinstance(architecture, str) or architecture not in REGISTRY:
        raise CheckpointError(f"unknown architecture {architecture!r}; expected one of {sorted(REGISTRY)}")
    config = validate.config_dict(config, "save_model(config)")
    if info is not None and not isinstance(info, dict):
        validate.fail("save_model(info)", info, "a dict or None", TypeError)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"save_model(path) must be a checkpoint directory or a new path; got "
                              f"{str(path)!r}, which is a file")
    validate.directory(path.parent, "save_model(path)'s parent", create=True)
    expected = _abstract_shapes(architecture, config, "save_model")
    actual = {k: tuple(v.shape) for k, v in _flat_state(model).items()}
    if expected != actual:
        diff = sorted(set(expected.items()) ^ set(actual.items()))[:4]
        raise CheckpointError(f"save_model: the model is not a {architecture!r} built with config {config} "
                              f"(differing arrays {diff}); it could not be loaded back")
    clean_stale(path.parent, path.name)
    tmp = temp_dir(path.parent, path.name)
    try:
        with _checkpointer() as ckptr:
            ckptr.save(tmp / "state", _flat_state(model))
            ckptr.wait_until_finished()
        meta = {"format": FORMAT, "architecture": architecture, "config": config, "info": info or {}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        _write_manifest(tmp)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint, with clear errors for missing or broken ones."""
    path = validate.path(path, "checkpoint path")
    recover_dir(path)
    clean_stale(path.parent, path.name)
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
    if not isinstance(meta["config"], dict) or not isinstance(meta.get("info", {}), dict):
        raise CheckpointError(f"checkpoint {path}: meta.json's config must be a dict; got {meta['config']!r}")
    return meta


def load_model(path: str | os.PathLike, expect_architecture: str | None = None) -> tuple[nnx.Module, dict]:
    """Rebuild the model saved at ``path`` and load its weights. Returns ``(model, meta)``."""

    from imgmine_jax.models import REGISTRY

    path = validate.path(path, "load_model(path)")
    if expect_architecture is not None and expect_architecture not in REGISTRY:
        raise CheckpointError(f"load_model(expect_architecture) must be one of {sorted(REGISTRY)}; "
                              f"got {expect_architecture!r}")
    return _read_beside_writers(path, lambda: _load_model(path, expect_architecture))


def _load_model(path: Path, expect_architecture: str | None) -> tuple[nnx.Module, dict]:

    from imgmine_jax.models import REGISTRY

    meta = read_meta(path)
    verify(path, required=meta.get("format", 1) >= 2)
    arch = meta["architecture"]
    if expect_architecture is not None and arch != expect_architecture:
        raise CheckpointError(f"checkpoint {path} holds a {arch!r} model; expected {expect_architecture!r}")
    if not isinstance(arch, str) or arch not in REGISTRY:
        raise CheckpointError(f"checkpoint {path} names unknown architecture {arch!r}; "
                              f"expected one of {sorted(REGISTRY)}")
    expected = _abstract_shapes(arch, meta["config"], f"checkpoint {path}")
    with _checkpointer() as ckptr:
        try:
            stored = ckptr.metadata(path / "state")
            stored_tree = getattr(stored, "item_metadata", stored)
            stored_shapes = {k: tuple(v.shape) for k, v in dict(stored_tree).items()}
        except Exception as err:
            raise CheckpointError(f"checkpoint {path}/state is unreadable: {err}") from None
        if stored_shapes != expected:    # checked before the model is built: nothing allocated yet
            diff = sorted(set(stored_shapes.items()) ^ set(expected.items()))[:4]
            raise CheckpointError(f"checkpoint {path} does not match architecture {arch!r} with "
                                  f"config {meta['config']}: differing arrays {diff}")
        model = REGISTRY[arch](**meta["config"], rngs=nnx.Rngs(0))
        target = _flat_state(model)
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

def _checkpointer():
    """Orbax's ``StandardCheckpointer`` for this process alone.

    The arrays saved here are host copies (``numpy``), written by one process; Orbax's default
    would make every process of a ``jax.distributed`` run join its barriers, and a save by the
    primary alone would wait for the others forever.
    """
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        return ocp.StandardCheckpointer()
    me = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"process{me}"))


def is_primary() -> bool:
    """Whether this process writes shared files (process 0 of a multi-process run; always on one)."""
    return jax.process_index() == 0


_BARRIERS = [0]


def sync_processes(name: str, timeout_s: int = 3600) -> None:
    """Wait until every process of a multi-process run reaches this point (nothing on one process).

    A barrier of JAX's coordination service, not a device collective: XLA:CPU's gloo
    collectives give up when a process arrives at its first one more than 30 s after another
    (a slow data load, a checkpoint write), the coordination service waits ``timeout_s``.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed

    _BARRIERS[0] += 1
    distributed.global_state.client.wait_at_barrier(f"imgmine-{_BARRIERS[0]}-{name}", timeout_s * 1000)


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

    In a multi-process run (``jax.distributed``) every process calls it with the same
    arguments (the state is replicated): the processes first check that they are at the same
    ``epoch`` and ``progress["step"]`` (a ``RuntimeError`` names both otherwise), process 0
    alone writes, and every process returns only once the checkpoint is complete, so a
    process killed later finds it on restart. ``directory`` must be on a file system all
    processes share.
    """
    validate.integer(epoch, "save_training(epoch)", min=0, max=9999)
    validate.integer(keep, "save_training(keep)", min=1)
    if not isinstance(progress, dict):
        validate.fail("save_training(progress)", progress, "a dict", TypeError)
    target = validate.path(directory, "checkpoint_dir") / f"epoch-{epoch:04d}"
    if jax.process_count() == 1:
        return _write_training(directory, target, epoch, state, progress, keep)
    _agree_on_step(epoch, progress.get("step", -1))
    try:
        if is_primary():
            _write_training(directory, target, epoch, state, progress, keep)
        else:   # every process joins the host copies (a collective for a replicated global array)
            [_to_storable(leaf) for _, leaf in _leaves_with_names(state)]
    finally:
        sync_processes(f"imgmine save_training {target.name}")
    return target


def _agree_on_step(epoch: int, step: int) -> None:
    from jax.experimental import multihost_utils

    mine = np.array([epoch, step], dtype=np.int64)
    primary = np.asarray(multihost_utils.broadcast_one_to_all(mine))
    if not np.array_equal(primary, mine):
        raise RuntimeError(f"process {jax.process_index()} is at epoch {epoch}, step {step}, but process 0 at "
                           f"epoch {int(primary[0])}, step {int(primary[1])}: the processes diverged; "
                           f"no checkpoint written")


def _write_training(directory, target: Path, epoch: int, state, progress: dict, keep: int) -> Path:
    directory = validate.directory(directory, "checkpoint_dir", create=True)
    for entry in directory.glob(".epoch-*.tmp-*"):
        clean_stale(directory, entry.name.split(".tmp-")[0][1:])
    clean_stale(directory, target.name)
    tmp = temp_dir(directory, target.name)
    try:
        named = _leaves_with_names(state)
        arrays = {f"{i:05d}": _to_storable(leaf) for i, (_, leaf) in enumerate(named)}
        with _checkpointer() as ckptr:
            ckptr.save(tmp / "state", arrays)
            ckptr.wait_until_finished()
        doc = {"format": FORMAT, "epoch": epoch, "leaves": [name for name, _ in named], "progress": progress}
        (tmp / "progress.json").write_text(json.dumps(doc, default=json_default) + "\n")
        _write_manifest(tmp)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(directory.glob("epoch-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _training_format(path: Path) -> int:
    try:
        return int(json.loads((path / "progress.json").read_text()).get("format", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return FORMAT       # unreadable: verify() against the manifest says what is wrong


def latest_training(directory: str | os.PathLike) -> Path | None:
    """The newest intact ``epoch-NNNN`` checkpoint under ``directory`` (absolute), or None.

    A damaged newer one (a flipped bit, a truncated file: see :func:`verify`) is skipped with
    a warning naming it, so a resume starts from the newest epoch that can be trusted.

    In a multi-process run every process must call it: process 0 looks (and removes what a
    killed writer left) and every process gets its answer, so all resume from the same epoch.
    """
    if jax.process_count() == 1:
        return _latest_training(directory)
    from jax.experimental import multihost_utils

    directory = validate.path(directory, "checkpoint_dir")
    found = _latest_training(directory) if is_primary() else None
    epoch = int(multihost_utils.broadcast_one_to_all(np.int64(-1 if found is None else int(found.name[6:]))))
    return None if epoch < 0 else directory / f"epoch-{epoch:04d}"


def _latest_training(directory: str | os.PathLike) -> Path | None:
    directory = validate.path(directory, "checkpoint_dir")
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"checkpoint_dir must be a directory; got {str(directory)!r}, which is a file")
    for entry in directory.glob(".old-epoch-*-*"):    # a writer killed between its two renames
        name = entry.name[len(".old-"):].rsplit("-", 1)[0]
        recover_dir(directory / name)
        clean_stale(directory, name)
    for entry in directory.glob(".epoch-*.tmp-*"):
        clean_stale(directory, entry.name.split(".tmp-")[0][1:])
    for p in sorted(directory.glob("epoch-[0-9][0-9][0-9][0-9]"), reverse=True):
        if not ((p / "progress.json").exists() and (p / "state").is_dir()):
            continue
        try:
            verify(p, required=_training_format(p) >= 2)
        except CheckpointError as err:
            warnings.warn(f"skipping a damaged training checkpoint: {err}", stacklevel=2)
            continue
        return p
    return None


def restore_training(path: str | os.PathLike, like) -> tuple[Any, dict[str, Any]]:
    """Load a training checkpoint into a pytree shaped like ``like``; returns ``(state, progress)``.

    Refuses (``CheckpointError``) a checkpoint whose arrays do not match ``like``: another
    architecture, optimiser or configuration.
    """

    path = validate.path(path, "restore_training(path)")
    verify(path, required=_training_format(path) >= 2)
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
        with _checkpointer() as ckptr:
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
