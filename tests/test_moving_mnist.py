"""Moving MNIST generator: shapes, range, motion inside the canvas, determinism, disjoint sources."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from imgmine_jax import metrics, moving_mnist


@pytest.fixture(scope="module")
def train_seqs(mnist_train):
    return moving_mnist.generate(mnist_train, 64, seed=0)


@pytest.fixture(scope="module")
def test_seqs(mnist_test):
    return moving_mnist.generate(mnist_test, 64, seed=0)


def test_frame_shapes_and_value_range(train_seqs):
    frames = train_seqs.frames()
    assert frames.shape == (64, 20, 64, 64) and frames.dtype == np.uint8
    assert train_seqs.num_observed == 10 and train_seqs.num_frames == 20
    assert frames.max() == 255 and frames.min() == 0
    rendered = np.asarray(jax.jit(moving_mnist.render)(train_seqs.digits[:8], train_seqs.positions[:8]))
    assert rendered.shape == (8, 20, 64, 64, 1) and rendered.dtype == np.float32
    assert 0.0 <= rendered.min() and rendered.max() <= 1.0
    # the jitted renderer (used in training) and the numpy one (figures, tests) agree
    np.testing.assert_allclose(rendered[..., 0] * 255.0, frames[:8], atol=1e-3)


def test_digits_stay_inside_the_canvas(train_seqs):
    pos = train_seqs.positions
    assert pos.min() >= 0 and pos.max() <= 64 - 28
    # every digit is drawn whole in every frame: the frame holds at least the brighter digit's mass
    frames = train_seqs.frames().astype(np.int64)
    digit_mass = train_seqs.digits.astype(np.int64).sum(axis=(2, 3)).max(axis=1)
    assert (frames.sum(axis=(2, 3)) >= digit_mass[:, None]).all()
    # the digits move 3.6 pixels per frame (step_length 0.1 of the free range 36) and bounce
    step = np.abs(np.diff(pos, axis=1))
    assert step.max() <= 5 and (np.linalg.norm(np.diff(pos, axis=1), axis=-1) > 0).mean() > 0.9
    moving_away = (np.diff(pos[:, :-1], axis=1) * np.diff(pos[:, 1:], axis=1) < 0).any()
    assert moving_away, "no digit ever bounced off a wall in 64 sequences"


def test_same_seed_same_sequences_other_seed_other_sequences(mnist_train, train_seqs):
    again = moving_mnist.generate(mnist_train, 64, seed=0)
    np.testing.assert_array_equal(again.frames(), train_seqs.frames())
    other = moving_mnist.generate(mnist_train, 64, seed=1)
    assert not np.array_equal(other.positions, train_seqs.positions)
    assert not np.array_equal(other.digit_indices, train_seqs.digit_indices)


def test_train_and_test_sequences_use_disjoint_digit_sources(mnist_train, mnist_test, train_seqs, test_seqs):
    assert train_seqs.source == "mnist/train" and test_seqs.source == "mnist/test"
    np.testing.assert_array_equal(train_seqs.digits, mnist_train.images[train_seqs.digit_indices][..., 0])
    np.testing.assert_array_equal(test_seqs.digits, mnist_test.images[test_seqs.digit_indices][..., 0])
    # no digit image drawn into a test sequence is one drawn into a training sequence
    train_digits = {d.tobytes() for d in train_seqs.digits.reshape(-1, 28, 28)}
    assert not any(d.tobytes() in train_digits for d in test_seqs.digits.reshape(-1, 28, 28))


def test_head_and_arrays(train_seqs):
    part = train_seqs.head(5)
    assert len(part) == 5
    arrays = part.arrays()
    assert set(arrays) == {"digits", "positions"} and len(arrays["digits"]) == len(arrays["positions"]) == 5


def test_bad_arguments_are_rejected(mnist_train):
    with pytest.raises(ValueError, match="num_sequences"):
        moving_mnist.generate(mnist_train, 0)
    with pytest.raises(ValueError, match="canvas"):
        moving_mnist.generate(mnist_train, 2, canvas=20)


def test_ssim_identity_symmetry_and_noise():
    rng = np.random.default_rng(0)
    a = rng.random((6, 64, 64)).astype(np.float32)
    noisy = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0, atol=1e-5)
    np.testing.assert_allclose(metrics.ssim(a, noisy), metrics.ssim(noisy, a), atol=1e-6)
    assert (metrics.ssim(a, noisy) < 0.9).all()
    with pytest.raises(ValueError, match="one shape"):
        metrics.ssim(a, a[:3])
