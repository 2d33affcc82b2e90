"""Model contracts: shapes, dtypes, eval-mode determinism and the sweep convolution.

Input errors are in test_bad_input.py."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from imgmine_jax import data, models
from imgmine_jax.models.common import conv_general_dilated, max_pool_2x2


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


def _conv_group_counts(fn, *args) -> list[int]:
    """``feature_group_count`` of every convolution in ``fn``'s lowered program."""
    text = jax.jit(fn).lower(*args).as_text()
    return [int(n) for n in re.findall(r"feature_group_count = (\d+)", text)]


def test_sweep_convolution_is_lax_conv_outside_vmap_and_per_member_inside():
    rng = np.random.default_rng(2)
    members = 3
    x = jnp.asarray(rng.normal(size=(members, 4, 9, 9, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(members, 3, 3, 5, 6)) * 0.2, jnp.float32)
    kw = dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.tanh(conv(x, w, **kw)))

    grad_new = jax.grad(loss(conv_general_dilated), argnums=(0, 1))
    grad_lax = jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1))
    # outside vmap: the same numbers as lax, bit for bit
    np.testing.assert_array_equal(jax.jit(lambda x, w: conv_general_dilated(x, w, **kw))(x[0], w[0]),
                                  jax.jit(lambda x, w: lax.conv_general_dilated(x, w, **kw))(x[0], w[0]))
    for a, b in zip(jax.jit(grad_new)(x[0], w[0]), jax.jit(grad_lax)(x[0], w[0])):
        np.testing.assert_array_equal(a, b)
    # vmapped over members, with the input per member (in_axes 0) or shared (None)
    for in_x in (0, None):
        xs = x if in_x == 0 else x[0]
        member_x = [xs[i] if in_x == 0 else xs for i in range(members)]
        out = jax.jit(jax.vmap(lambda x, w: conv_general_dilated(x, w, **kw), in_axes=(in_x, 0)))(xs, w)
        expected = [lax.conv_general_dilated(member_x[i], w[i], **kw) for i in range(members)]
        np.testing.assert_allclose(out, jnp.stack(expected), rtol=1e-5, atol=1e-5)
        gx, gw = jax.jit(jax.vmap(grad_new, in_axes=(in_x, 0)))(xs, w)
        per_member = [grad_lax(member_x[i], w[i]) for i in range(members)]
        np.testing.assert_allclose(gx, jnp.stack([g[0] for g in per_member]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gw, jnp.stack([g[1] for g in per_member]), rtol=1e-5, atol=1e-5)
        groups = _conv_group_counts(jax.vmap(grad_new, in_axes=(in_x, 0)), xs, w)
        if jax.default_backend() == "cpu":     # on accelerators the grouped convolution is kept
            assert groups and set(groups) == {1}
    # plain lax under the same vmap is the grouped convolution this avoids
    assert members in _conv_group_counts(jax.vmap(grad_lax), x, w)


@pytest.mark.parametrize("name", ["seed_cnn", "resnet"])
def test_classifiers_use_the_sweep_convolution(name):
    config = models.classifier_config(name, 10, (28, 28, 1))
    convs = [m for _, m in nnx.iter_graph(models.build(name, config)) if isinstance(m, nnx.Conv)]
    assert convs and all(c.conv_general_dilated is conv_general_dilated for c in convs)


def test_vmapped_seed_cnn_gradients_equal_per_member_gradients():
    """Two SeedCNNs vmapped as ``train.sweep`` stacks them: per-member gradients, no grouped conv."""
    config = models.classifier_config("seed_cnn", 10, (28, 28, 1))
    graphdef, state0 = nnx.split(models.build("seed_cnn", config, seed=0))
    state1 = nnx.state(models.build("seed_cnn", config, seed=1))
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), state0, state1)
    x = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, size=(8, 28, 28, 1)), jnp.float32)

    def grads(state, x):
        return jax.grad(lambda s: jnp.sum(nnx.merge(graphdef, s)(x) ** 2))(state)

    vmapped = jax.jit(jax.vmap(grads, in_axes=(0, None)))(stacked, x)
    for i, state in enumerate([state0, state1]):
        single = jax.jit(grads)(state, x)
        for a, b in zip(jax.tree.leaves(vmapped), jax.tree.leaves(single)):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-5)
    if jax.default_backend() == "cpu":
        assert set(_conv_group_counts(jax.vmap(grads, in_axes=(0, None)), stacked, x)) == {1}
