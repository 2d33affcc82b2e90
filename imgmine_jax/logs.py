"""Keep native libraries' start-up notices out of notebook outputs.

TensorFlow (behind TFDS) prints C++ log lines from static initialisers while it is imported
("WARNING: All log messages before absl::InitializeLog() ...", the oneDNN notice). They are
written straight to file descriptor 2 before any logging configuration applies, so
``TF_CPP_MIN_LOG_LEVEL`` cannot hide them, and in a notebook they become the first output of
every rendered page. :func:`quiet_native_startup` captures descriptor 2 around such an import
and passes on every line that is not one of those notices.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

# Lines that TensorFlow/absl write at import and that say nothing about this project's run.
NOTICE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .*"
    r"|[IW]\d{4} [\d:.]+\s+\d+ (port|cpu_feature_guard|cuda_\w+|gpu_device)\.cc:\d+\].*)$")


def is_notice(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's/absl's start-up notices."""
    return bool(NOTICE.match(line.rstrip("\n")))


@contextlib.contextmanager
def quiet_native_startup() -> Iterator[None]:
    """Capture file descriptor 2 for the duration; re-emit all but the start-up notices."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):   # no real descriptor 2 (embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not is_notice(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
