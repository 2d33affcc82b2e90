"""Mining helpers: embeddings, retrieval, clustering scores, label-noise ranking (on real MNIST)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from imgmine_jax import metrics, mining, models, recipes


@pytest.fixture(scope="module")
def resnet():
    config = models.classifier_config("resnet", 10, (28, 28, 1), widths=[8, 16], dropout=0.2)
    return models.build("resnet", config, seed=0)


@pytest.mark.parametrize("arch, dim", [("resnet", 16), ("seed_cnn", 128)])
def test_embedding_shape_and_determinism(arch, dim, resnet, mnist_test):
    model = resnet if arch == "resnet" else models.build(
        "seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1)), seed=0)
    images = mnist_test.images[:250]
    first = mining.embed(model, images, batch_size=100)      # 3 batches, the last one padded
    again = mining.embed(model, images, batch_size=100)
    assert first.shape == (250, dim) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    # eval mode: an image's embedding does not depend on the batch it came in
    np.testing.assert_allclose(mining.embed(model, images[200:], batch_size=50), first[200:], atol=1e-5)


def test_embed_rejects_bad_input(resnet, mnist_test):
    with pytest.raises(ValueError, match="uint8"):
        mining.embed(resnet, mnist_test.images[:4].astype(np.float32))
    with pytest.raises(TypeError, match="features"):
        mining.embed(object(), mnist_test.images[:4])


def test_retrieval_returns_the_query_first_when_it_is_in_the_index(resnet, mnist_test):
    index = mining.embed(resnet, mnist_test.images[:500])
    queries = [0, 7, 123, 499]
    for space in (index, mining.pixels(mnist_test.images[:500])):
        dist, idx = mining.nearest_neighbors(space, space[queries], k=5)
        assert idx.shape == (4, 5)
        np.testing.assert_array_equal(idx[:, 0], queries)
        np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-5)
        assert np.all(np.diff(dist, axis=1) >= -1e-6), "neighbours must come nearest first"
    # leave-one-out (no queries): a point is never its own neighbour
    _, loo = mining.nearest_neighbors(index, k=3)
    assert not np.any(loo == np.arange(500)[:, None])
    with pytest.raises(ValueError, match="k must be"):
        mining.nearest_neighbors(index, k=500)


def test_precision_and_cluster_scores():
    labels = np.array([0, 0, 1, 1])
    assert metrics.precision_at_k(np.array([[0, 1], [0, 0], [1, 1], [0, 0]]), labels) == pytest.approx(0.625)
    assert metrics.purity(labels, np.array([5, 5, 5, 9])) == pytest.approx(0.75)
    perfect = mining.cluster_scores(labels, np.array([3, 3, 7, 7]))
    assert perfect == {"nmi": pytest.approx(1.0), "purity": pytest.approx(1.0)}
    # two well-separated blobs: pixels-free sanity check of kmeans + retrieval
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([5, 0], 0.1, (50, 2)), rng.normal([0, 5], 0.1, (50, 2))])
    y = np.repeat([0, 1], 50)
    assert mining.cluster_scores(y, mining.kmeans(x, 2, seed=0))["nmi"] == pytest.approx(1.0)
    assert mining.precision_at_k(x, y, k=5) == pytest.approx(1.0)
    assert mining.map_2d(x, "pca").shape == (100, 2)
    far = np.concatenate([x, [[-3.0, -3.0]]])
    assert mining.sparsity(far, k=3).argmax() == 100


def test_label_noise_ranks_flipped_labels_first(mnist_train):
    subset = mnist_train.head(2000)
    labels = subset.labels.copy()
    zero, one = np.flatnonzero(labels == 0)[0], np.flatnonzero(labels == 1)[0]
    labels[zero], labels[one] = 1, 0      # a 0 labelled "1" and a 1 labelled "0"
    noisy = dataclasses.replace(subset, labels=labels)
    cfg = dataclasses.replace(recipes.LABEL_NOISE_FOLDS, epochs=3)
    oof = mining.out_of_fold_probabilities(noisy, folds=2, cfg=cfg, progress=False, log=None)
    assert oof.probabilities.shape == (2000, 10)
    np.testing.assert_allclose(oof.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert set(np.unique(oof.fold)) == {0, 1}
    assert oof.accuracy > 0.9, "the fold models should learn MNIST from 1,000 images"
    ranking = mining.label_noise_ranking(oof.probabilities, noisy.labels)
    assert set(ranking[:2]) == {zero, one}
    assert mining.confident_learning_issues(oof.probabilities, noisy.labels)[[zero, one]].all()


def test_out_of_fold_rejects_bad_folds(mnist_train):
    with pytest.raises(ValueError, match="folds"):
        mining.out_of_fold_probabilities(mnist_train.head(100), folds=1)
