"""Model contracts: shapes, dtypes and eval-mode determinism (input errors: test_bad_input.py)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imgmine_jax import data, models
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
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, size=(8, 28, 28, 1)), jnp.float32)
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))
    model.train()
    assert not np.array_equal(model(x), model(x))      # dropout draws new masks


def test_reshape_max_pool_equals_reduce_window_pool():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 14, 14, 3)), jnp.float32)
    np.testing.assert_array_equal(max_pool_2x2(x), nnx.max_pool(x, (2, 2), (2, 2)))
