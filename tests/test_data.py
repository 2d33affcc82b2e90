"""The data layer on the real datasets."""
from __future__ import annotations

import time

import jax
import numpy as np
import pytest

from imgmine_jax import data

# Published class counts of MNIST (LeCun et al.) and Fashion-MNIST (6,000 / 1,000 per class).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_shapes_dtypes_and_class_counts(mnist_train, mnist_test):
    assert mnist_train.images.shape == (60000, 28, 28, 1) and mnist_train.images.dtype == np.uint8
    assert mnist_train.labels.shape == (60000,) and mnist_train.labels.dtype == np.int32
    assert mnist_test.images.shape == (10000, 28, 28, 1)
    assert mnist_train.class_counts().tolist() == MNIST_TRAIN_COUNTS
    assert mnist_test.class_counts().tolist() == MNIST_TEST_COUNTS
    assert mnist_train.images.max() == 255 and mnist_train.images.min() == 0
    assert mnist_train.class_names == tuple(str(i) for i in range(10))


def test_fashion_mnist_is_balanced_and_named():
    train = data.load("fashion_mnist", "train")
    assert train.images.shape == (60000, 28, 28, 1)
    assert train.class_counts().tolist() == [6000] * 10
    assert train.class_names[0] == "T-shirt/top" and train.class_names[9] == "Ankle boot"


def test_load_is_cached_per_process(mnist_train):
    t0 = time.perf_counter()
    again = data.load("mnist", "train")
    assert again is mnist_train
    assert time.perf_counter() - t0 < 0.1


def test_split_expressions_work():
    part = data.load("mnist", "test[:100]")
    assert len(part) == 100


def test_train_val_split_is_disjoint_complete_and_deterministic(mnist_train):
    small = mnist_train.head(3000)
    tr, va = data.train_val_split(small, 500, seed=3)
    assert len(tr) == 2500 and len(va) == 500
    # Rows are identified by their pixels+label: disjoint and together exactly the input.
    key = lambda ds: {(img.tobytes(), int(label)) for img, label in zip(ds.images, ds.labels)}
    assert not key(tr) & key(va)
    assert key(tr) | key(va) == key(small)
    tr2, va2 = data.train_val_split(small, 500, seed=3)
    np.testing.assert_array_equal(va.images, va2.images)
    _, va3 = data.train_val_split(small, 500, seed=4)
    assert not np.array_equal(va.labels, va3.labels)


def test_epoch_batches_shuffle_without_repeats_and_follow_the_key():
    key = jax.random.key(0)
    a = data.epoch_batches(key, 1000, 32)
    assert a.shape == (31, 32)                      # 1000 // 32 full batches; 8 examples dropped
    assert len(np.unique(a)) == a.size              # no example twice in an epoch
    np.testing.assert_array_equal(a, data.epoch_batches(jax.random.key(0), 1000, 32))
    b = data.epoch_batches(jax.random.key(1), 1000, 32)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a.ravel(), np.arange(a.size))   # really shuffled


def test_eval_batches_cover_every_example_once():
    idx, mask = data.eval_batches(1050, 500)
    assert idx.shape == mask.shape == (3, 500)
    assert sorted(idx[mask].tolist()) == list(range(1050))
    assert mask.sum() == 1050


def test_normalize_maps_to_minus_one_one():
    x = np.array([0, 255, 127], dtype=np.uint8)
    y = np.asarray(data.normalize(x))
    np.testing.assert_allclose(y, [-1.0, 1.0, -0.00392157], atol=1e-6)
    np.testing.assert_allclose(np.asarray(data.denormalize(y)) * 255, x, atol=1e-3)


def test_unprepared_dataset_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_network_reachable", lambda *a, **k: False)
    t0 = time.perf_counter()
    with pytest.raises(data.DatasetError, match=r"'mnist' is not prepared.*TFDS_DATA_DIR"):
        data.load("mnist", "train", data_dir=tmp_path)
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("bad", [0, -5, 60000, 2.5])
def test_bad_val_size_is_rejected(mnist_train, bad):
    with pytest.raises(data.DatasetError, match="val_size"):
        data.train_val_split(mnist_train, bad)
