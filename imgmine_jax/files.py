"""Crash-safe writes: a reader sees the old version or the new one, never a half-written one."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_default(value):
    """``json.dumps(default=...)`` for numpy scalars and arrays; anything else is an error."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} in JSON: {value!r}")


def replace_dir(new: Path, target: Path) -> None:
    """Put directory ``new`` at ``target`` with renames; the old ``target`` is deleted only after.

    If moving ``new`` into place fails, the old ``target`` is put back. A crash (SIGKILL)
    between the two renames leaves the previous version in a hidden ``.old-`` sibling,
    which :func:`recover_dir` (called by every reader) moves back.
    """
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: Path) -> None:
    """Undo a crash inside :func:`replace_dir`: if ``target`` is missing, restore its newest ``.old-`` copy."""
    target = Path(target)
    if target.exists():
        return
    olds = sorted(target.parent.glob(f".old-{target.name}-*"), key=lambda p: p.stat().st_mtime)
    if olds:
        os.replace(olds[-1], target)
