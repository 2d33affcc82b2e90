"""Attacks and corruptions: what they promise about the images they make, and what they do to a
SeedCNN trained on real MNIST."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from imgmine_jax import data, robustness, train

N = 100


@pytest.fixture(scope="module")
def digits(mnist_test):
    return mnist_test.images[:N], mnist_test.labels[:N]


def _accuracy(model, pixels, labels) -> float:
    """Accuracy on pixel images, uint8 or float on [0, 1] (unrounded)."""
    logits = np.asarray(model(data.normalize_unit(jnp.asarray(data.to_unit(pixels)))))
    return float((logits.argmax(-1) == labels).mean())


@pytest.mark.parametrize("attack", robustness.ATTACKS)
def test_epsilon_zero_changes_nothing(trained_seed_cnn, digits, attack):
    images, labels = digits
    make = getattr(robustness, attack)
    np.testing.assert_array_equal(make(trained_seed_cnn, images, labels, 0.0), images)
    floats = data.to_unit(images)
    np.testing.assert_array_equal(make(trained_seed_cnn, floats, labels, 0.0), floats)
    clean = float((train.predict(trained_seed_cnn, images).argmax(-1) == labels).mean())
    accuracy = robustness.accuracy_under_attack(trained_seed_cnn, images, labels, attack=attack, epsilons=[0.0])
    assert accuracy == {0.0: clean}


@pytest.mark.parametrize("as_float", [False, True], ids=["uint8", "float"])
def test_adversarial_images_stay_in_the_ball_and_the_pixel_range(trained_seed_cnn, digits, as_float):
    images, labels = digits
    given = data.to_unit(images) if as_float else images
    eps = 0.3
    for attack in robustness.ATTACKS:
        adv = getattr(robustness, attack)(trained_seed_cnn, given, labels, eps)
        assert adv.shape == given.shape and adv.dtype == given.dtype
        if as_float:
            assert adv.min() >= 0.0 and adv.max() <= 1.0
            assert np.abs(adv - given).max() <= eps + 1e-6
        else:
            assert np.abs(adv.astype(int) - images).max() <= eps * 255
        assert np.any(adv != given)


def test_pgd_is_at_least_as_strong_as_fgsm(trained_seed_cnn, digits):
    images, labels = digits
    clean = _accuracy(trained_seed_cnn, images, labels)
    acc = {a: robustness.accuracy_under_attack(trained_seed_cnn, images, labels, attack=a, epsilons=[0.1, 0.3])
           for a in robustness.ATTACKS}
    assert acc["fgsm"][0.3] < clean
    for eps in (0.1, 0.3):
        assert acc["pgd"][eps] <= acc["fgsm"][eps] + 2 / N, (eps, acc)
    # the images the attack functions return are as adversarial as the accuracy says (up to the
    # few images whose uint8 rounding lets them back across the boundary)
    adv = robustness.pgd(trained_seed_cnn, images, labels, 0.3)
    assert _accuracy(trained_seed_cnn, adv, labels) <= acc["pgd"][0.3] + 3 / N


def test_accuracy_under_attack_matches_the_returned_images_at_any_batch_size(trained_seed_cnn, digits):
    """The same key gives the same random start per image whatever the batching."""
    images, labels = digits
    floats = data.to_unit(images)
    adv = robustness.pgd(trained_seed_cnn, floats, labels, 0.1, steps=5, key=3, batch_size=32)
    again = robustness.pgd(trained_seed_cnn, floats, labels, 0.1, steps=5, key=3, batch_size=N)
    np.testing.assert_array_equal(adv, again)
    acc = robustness.accuracy_under_attack(trained_seed_cnn, floats, labels, attack="pgd", epsilons=[0.1],
                                           steps=5, key=3, batch_size=40)
    assert acc[0.1] == _accuracy(trained_seed_cnn, adv, labels)
    fgsm = robustness.fgsm(trained_seed_cnn, floats, labels, 0.2)
    acc = robustness.accuracy_under_attack(trained_seed_cnn, floats, labels, attack="fgsm", epsilons=[0.2])
    assert acc[0.2] == _accuracy(trained_seed_cnn, fgsm, labels)


@pytest.mark.parametrize("kind", robustness.CORRUPTIONS)
@pytest.mark.parametrize("as_float", [False, True], ids=["uint8", "float"])
def test_corruptions_keep_the_form_and_grow_with_severity(digits, kind, as_float):
    images, _ = digits
    given = data.to_unit(images) if as_float else images
    change = {}
    for severity in robustness.SEVERITIES:
        out = robustness.corrupt(given, kind, severity, key=0)
        assert out.shape == given.shape and out.dtype == given.dtype
        if as_float:
            assert out.min() >= 0.0 and out.max() <= 1.0
        change[severity] = np.abs(data.to_unit(out) - data.to_unit(given)).mean()
    assert change[1] > 0
    assert change[5] > change[1], change
    np.testing.assert_array_equal(robustness.corrupt(given, kind, 3, key=7), robustness.corrupt(given, kind, 3, key=7))


def test_noise_depends_on_the_key(digits):
    images, _ = digits
    assert np.any(robustness.corrupt(images, "gaussian_noise", 2, key=0)
                  != robustness.corrupt(images, "gaussian_noise", 2, key=1))


def test_rotation_by_zero_is_the_identity_and_by_90_degrees_a_quarter_turn(digits):
    images, _ = digits
    np.testing.assert_array_equal(robustness.rotate(images, 0.0), images)
    floats = data.to_unit(images)
    np.testing.assert_array_equal(robustness.rotate(floats, 0), floats)
    # anticlockwise, as np.rot90 turns an array shown with row 0 at the top
    quarter = robustness.rotate(floats, 90.0)
    np.testing.assert_allclose(quarter, np.rot90(floats, k=1, axes=(1, 2)), atol=1e-4)
    per_image = robustness.rotate(images[:2], np.array([0.0, 180.0]))
    np.testing.assert_array_equal(per_image[0], images[0])
    np.testing.assert_allclose(per_image[1].astype(int), np.rot90(images[1], k=2).astype(int), atol=1)


def test_accuracy_under_corruptions(trained_seed_cnn, digits):
    images, labels = digits
    table = robustness.accuracy_under_corruptions(trained_seed_cnn, images, labels, severities=(1, 5), key=0,
                                                  batch_size=30)
    assert list(table) == ["clean", *robustness.CORRUPTIONS]
    assert table["clean"] == {0: _accuracy(trained_seed_cnn, images, labels)}
    for kind in robustness.CORRUPTIONS:
        assert list(table[kind]) == [1, 5]
        assert all(0.0 <= a <= 1.0 for a in table[kind].values())
        assert table[kind][5] <= table[kind][1] + 2 / N, (kind, table[kind])
    # the same corruption outside the accuracy function (float, unrounded) scores the same
    blurred = robustness.corrupt(data.to_unit(images), "blur", 5, key=0)
    assert table["blur"][5] == _accuracy(trained_seed_cnn, blurred, labels)
