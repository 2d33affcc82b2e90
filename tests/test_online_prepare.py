"""The first run on an online machine: TFDS's real download-and-prepare path, without the internet.

A machine with network access and no prepared data downloads MNIST's source files and
prepares them (what the README promises). CI is offline, so this test serves
MNIST-format source files (gzipped IDX, the format of the real ones) from an HTTP server
on 127.0.0.1 and points TFDS's MNIST builder at it: the download manager, the extraction,
the example generation and the writing of the prepared dataset all run for real, so a
dependency missing from that path (e.g. ``importlib_resources``, imported by TFDS's
``dataset_builder``) fails here. Only the base URL and the split sizes are changed (a few
hundred synthetic examples instead of 70,000, to stay fast); nothing leaves the loopback.
"""
from __future__ import annotations

import functools
import gzip
import http.server
import os
import struct
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

N_TRAIN, N_TEST = 120, 40


def _idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return gzip.compress(struct.pack(">IIII", 2051, n, h, w) + images.tobytes())


def _idx_labels(labels: np.ndarray) -> bytes:
    return gzip.compress(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_server(tmp_path):
    """An HTTP server on 127.0.0.1 with MNIST's four source files; yields (url, arrays)."""
    rng = np.random.default_rng(0)
    arrays = {split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10)
              for split, n in (("train", N_TRAIN), ("test", N_TEST))}
    root = tmp_path / "served"
    root.mkdir()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[split]
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx_images(images))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(_idx_labels(labels))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", arrays
    finally:
        server.shutdown()
        server.server_close()


# Runs in a fresh interpreter, so that nothing imported by other tests hides a missing module.
_PREPARE = textwrap.dedent("""
    import sys
    import numpy as np
    from tensorflow_datasets.image_classification import mnist
    from imgmine_jax import data

    url, data_dir, n_train, n_test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    mnist.MNIST.URL = url                                   # the loopback server, not the CVDF mirror
    mnist._TRAIN_EXAMPLES, mnist._TEST_EXAMPLES = n_train, n_test
    train = data.load("mnist", "train", data_dir=data_dir, download=True)
    test = data.load("mnist", "test", data_dir=data_dir, download=True)
    np.savez(sys.argv[5], train_images=train.images, train_labels=train.labels,
             test_images=test.images, test_labels=test.labels)
""")


def test_first_run_downloads_and_prepares_mnist(mnist_server, tmp_path):
    url, arrays = mnist_server
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", TFDS_DATA_DIR=str(tmp_path / "unused"))
    out = tmp_path / "loaded.npz"
    proc = subprocess.run([sys.executable, "-c", _PREPARE, url, str(tmp_path / "tfds"), str(N_TRAIN), str(N_TEST),
                           str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "tfds" / "downloads").is_dir(), "the download manager did not fetch the source files"
    loaded = np.load(out)
    for split in ("train", "test"):
        images, labels = arrays[split]
        # TFDS writes examples in its own (shuffled, deterministic) order: compare as sets of pairs
        got = sorted(zip(loaded[f"{split}_labels"].tolist(), map(bytes, loaded[f"{split}_images"][..., 0])))
        want = sorted(zip(labels.tolist(), map(bytes, images)))
        assert got == want, f"the prepared {split} split differs from the served files"
