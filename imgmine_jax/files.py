"""Crash-safe writes: a reader sees the old version or the new one, never a half-written one."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
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


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (a writer that may still finish)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # alive, owned by someone else
        return True
    return True


_STALE_UNNAMED_SECONDS = 3600   # a temporary without a writer's pid in its name (older versions)


def temp_dir(parent: Path, name: str) -> Path:
    """A new hidden directory ``.<name>.tmp-<pid>-<random>`` in ``parent`` for a write in progress."""
    return Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-{os.getpid()}-"))


def _writer_pid(entry: Path, marker: str) -> int | None:
    rest = entry.name.split(marker, 1)[1]
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def clean_stale(parent: Path, name: str) -> list[Path]:
    """Remove what a killed writer of ``parent/name`` left: ``.<name>.tmp-<pid>-*`` temporaries and
    ``.old-<name>-<pid>`` copies whose writer no longer runs (a live writer's are kept).

    An ``.old-`` copy is removed only when ``name`` itself exists (else :func:`recover_dir`
    puts it back). Returns what was removed.
    """
    parent = Path(parent)
    removed = []
    if not parent.is_dir():
        return removed
    target_exists = (parent / name).exists()
    for entry in list(parent.glob(f".{glob_escape(name)}.tmp-*")) + _old_copies(parent, name):
        marker = ".tmp-" if entry.name.startswith(f".{name}.tmp-") else f".old-{name}-"
        if marker != ".tmp-" and not target_exists:
            continue
        pid = _writer_pid(entry, marker)
        if pid is not None and pid_alive(pid) and pid != os.getpid():
            continue
        if pid is None:
            try:
                if time.time() - entry.stat().st_mtime < _STALE_UNNAMED_SECONDS:
                    continue
            except OSError:
                continue
        _remove(entry)
        removed.append(entry)
    return removed


def _old_copies(parent: Path, name: str) -> list[Path]:
    """``.old-<name>-<pid>`` siblings (not those of another name that starts with ``name-``)."""
    prefix = f".old-{name}-"
    return [p for p in parent.glob(f"{glob_escape(prefix)}*") if p.name[len(prefix):].isdigit()]


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_dir(new: Path, target: Path) -> None:
    """Put directory ``new`` at ``target`` with renames; the old ``target`` is deleted only after.

    If moving ``new`` into place fails, the old ``target`` is put back. A crash (SIGKILL)
    between the two renames leaves the previous version in a hidden ``.old-<name>-<pid>``
    sibling, which :func:`recover_dir` (called by every reader) moves back once that
    writer is gone; one after the second rename is removed by :func:`clean_stale`.
    """
    new, target = Path(new), Path(target)
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        if old.exists():
            _remove(old)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        _remove(old)


def recover_dir(target: Path, wait: float = 5.0) -> None:
    """Undo a crash inside :func:`replace_dir`: if ``target`` is missing, restore its newest ``.old-``
    copy -- once its writer is gone. While that writer still runs (between its two renames)
    wait up to ``wait`` seconds for it to finish instead of taking the old copy back."""
    target = Path(target)
    deadline = time.monotonic() + wait
    while not target.exists():
        olds = sorted(_old_copies(target.parent, target.name), key=_mtime)
        if not olds:
            return
        pid = _writer_pid(olds[-1], f".old-{target.name}-")
        if pid is not None and pid != os.getpid() and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
            continue
        try:
            os.replace(olds[-1], target)
        except OSError:          # another reader restored it first, or the writer finished
            if not target.exists():
                raise
        return


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0
