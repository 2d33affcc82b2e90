"""Model contracts: shapes, dtypes, eval-mode determinism and clear input errors."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imgmine_jax import data, models, train
from imgmine_jax.models.common import max_pool_2x2


@pytest.mark.parametrize("name,feature_dim", [("seed_cnn", 128), ("resnet", 64)])
def test_output_and_feature_shapes(name, feature_dim, mnist_test):
    model = models.build(name, models.classifier_config(name, 10, (28, 28, 1)))
    x = data.normalize(jnp.asarray(mnist_test.images[:5]))
    model.eval()
    logits = model(x)
    assert logits.shape == (5, 10) and logits.dtype == jnp.float32
    assert model.features(x).shape == (5, feature_dim)
    assert all(np.isfinite(np.asarray(logits)).ravel())


def test_eval_mode_is_deterministic_and_train_mode_is_not():
    model = models.build("resnet", models.classifier_config("resnet", 10, (28, 28, 1), dropout=0.5))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 28, 28, 1)), jnp.float32)
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))
    model.train()
    assert not np.array_equal(model(x), model(x))      # dropout draws new masks


def test_reshape_max_pool_equals_reduce_window_pool():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 14, 14, 3)), jnp.float32)
    np.testing.assert_array_equal(max_pool_2x2(x), nnx.max_pool(x, (2, 2), (2, 2)))


@pytest.mark.parametrize("x,error,match", [
    (np.zeros((28, 28, 1), np.float32), ValueError, r"batch of images of shape \(N, 28, 28, 1\).*\(28, 28, 1\)"),
    (np.zeros((2, 32, 32, 1), np.float32), ValueError, r"\(H, W, C\) = \(28, 28, 1\); got \(32, 32, 1\)"),
    (np.zeros((2, 28, 28, 3), np.float32), ValueError, r"got \(28, 28, 3\)"),
    (np.zeros((2, 28, 28, 1), np.uint8), TypeError, r"floating-point images normalised.*uint8"),
])
@pytest.mark.parametrize("name", ["seed_cnn", "resnet"])
def test_bad_image_batches_get_clear_errors(name, x, error, match):
    model = models.build(name, models.classifier_config(name, 10, (28, 28, 1)))
    with pytest.raises(error, match=match):
        model(jnp.asarray(x))


def test_unknown_model_name_is_rejected():
    with pytest.raises(ValueError, match=r"unknown model 'vgg'; expected one of \['resnet', 'seed_cnn'\]"):
        models.classifier_config("vgg", 10, (28, 28, 1))


def test_predict_rejects_float_images():
    model = models.build("seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1)))
    with pytest.raises(ValueError, match="uint8 images"):
        train.predict(model, np.zeros((2, 28, 28, 1), np.float32))
