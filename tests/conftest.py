"""Test configuration: offline data, a scratch artifacts directory, shared fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Prepared TFDS data beside the checkout (CI and offline machines); elsewhere TFDS's own
# default applies (and downloads when online).
_SHARED_TFDS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tensorflow_datasets"
if "TFDS_DATA_DIR" not in os.environ and _SHARED_TFDS.is_dir():
    os.environ["TFDS_DATA_DIR"] = str(_SHARED_TFDS)


@pytest.fixture(scope="session", autouse=True)
def scratch_artifacts(tmp_path_factory):
    """Keep trained models and interactive outputs of the tests out of the repository."""
    path = tmp_path_factory.mktemp("artifacts")
    old = os.environ.get("IMGMINE_ARTIFACTS")
    os.environ["IMGMINE_ARTIFACTS"] = str(path)
    yield path
    if old is None:
        os.environ.pop("IMGMINE_ARTIFACTS", None)
    else:
        os.environ["IMGMINE_ARTIFACTS"] = old


@pytest.fixture(scope="session")
def mnist_train():
    from imgmine_jax import data

    return data.load("mnist", "train")


@pytest.fixture(scope="session")
def mnist_test():
    from imgmine_jax import data

    return data.load("mnist", "test")


@pytest.fixture(scope="session")
def trained_seed_cnn(mnist_train):
    """A SeedCNN trained for two short epochs on 5,000 MNIST training images (about 97% test
    accuracy): a real model for tests that need one that has learnt something."""
    from imgmine_jax import models, train

    cfg = train.TrainConfig(epochs=2, batch_size=64, learning_rate=3e-3, warmup_epochs=0.5, seed=0)
    net = models.build("seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1)), seed=0)
    return train.fit(net, train.Classification(10), mnist_train.head(5000).arrays(), None, cfg,
                     progress=False, log=None).model
