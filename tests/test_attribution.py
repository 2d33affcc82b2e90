"""Attribution maps: the properties that make them trustworthy, on a SeedCNN trained on real MNIST."""
from __future__ import annotations

import numpy as np
import pytest

from imgmine_jax import attribution, data, models

N = 16


@pytest.fixture(scope="module")
def digits(mnist_test):
    return mnist_test.images[:N], mnist_test.labels[:N]


def _random_seed_cnn():
    return models.build("seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1)), seed=3)


def test_saliency_is_zero_exactly_where_the_output_ignores_the_pixels(digits):
    """SeedCNN's valid convolutions and 2x2 pools never use the last two rows and columns of a 28x28
    image (28 -> 26 -> 13 -> 11 -> 5 drops the 11th row and column): the premise is checked first,
    then the gradient there must be exactly zero, for any weights."""
    images, labels = digits
    model = _random_seed_cnn()
    changed = images.copy()
    changed[:, 26:, :] = 255
    changed[:, :, 26:] = 255
    logits = lambda x: np.asarray(model(data.normalize(x)))
    np.testing.assert_array_equal(logits(images), logits(changed))
    maps = attribution.saliency(model, images, labels)
    assert maps.shape == (N, 28, 28) and maps.dtype == np.float32
    assert np.all(maps >= 0)
    assert np.all(maps[:, 26:, :] == 0) and np.all(maps[:, :, 26:] == 0)
    assert np.all(maps[:, :26, :26].max(axis=(1, 2)) > 0), "the pixels the model does use get no gradient"


def test_uint8_and_float_pixels_give_the_same_maps(trained_seed_cnn, digits):
    images, labels = digits
    a = attribution.saliency(trained_seed_cnn, images, labels)
    b = attribution.saliency(trained_seed_cnn, images / 255.0, labels)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_integrated_gradients_complete_and_converge(trained_seed_cnn, digits):
    """Completeness: attributions sum to f(x) - f(baseline) up to the midpoint rule's error, which
    shrinks as the number of steps grows; at 64 steps the gap is within 2% of f(x) - f(baseline)
    for every image."""
    images, labels = digits
    gaps = {}
    for steps in (4, 16, 64):
        ig = attribution.integrated_gradients(trained_seed_cnn, images, labels, steps=steps)
        assert ig.shape == images.shape and ig.dtype == np.float32
        check = attribution.completeness_gap(trained_seed_cnn, images, labels, ig)
        np.testing.assert_allclose(check["gap"], check["sum"] - check["difference"])
        gaps[steps] = np.abs(check["gap"])
    assert gaps[16].mean() < gaps[4].mean() and gaps[64].mean() < gaps[16].mean()
    assert np.all(gaps[64] <= 0.02 * np.abs(check["difference"]))


def test_integrated_gradients_vanish_where_the_image_equals_the_baseline(trained_seed_cnn, digits):
    """Each attribution is (x - x') times an average gradient: zero on background pixels for the
    default black baseline, zero everywhere when the baseline is the image itself."""
    images, labels = digits
    ig = attribution.integrated_gradients(trained_seed_cnn, images, labels, steps=8)
    assert np.all(ig[images == 0] == 0) and np.any(ig[images > 0] != 0)
    same = attribution.integrated_gradients(trained_seed_cnn, images, labels, steps=8, baseline=images)
    assert np.all(same == 0)
    grey = attribution.integrated_gradients(trained_seed_cnn, images, labels, steps=8, baseline=0.5)
    gap = attribution.completeness_gap(trained_seed_cnn, images, labels, grey, baseline=0.5)
    assert np.all(np.abs(gap["gap"]) <= 0.1 * np.abs(gap["difference"]) + 0.05)


def test_occluding_a_blank_region_changes_nothing(trained_seed_cnn, digits):
    """With an all-background 8x8 top-left corner, every 4x4 patch (stride 2) that covers a pixel
    of the 6x6 corner lies inside the blank region: hiding it with background changes no pixel,
    so those pixels get exactly zero."""
    images, labels = digits
    blank = images.copy()
    blank[:, :8, :8] = 0
    heat = attribution.occlusion(trained_seed_cnn, blank, labels, patch=4, stride=2)
    assert heat.shape == (N, 28, 28) and heat.dtype == np.float32
    assert np.all(heat[:, :6, :6] == 0)
    assert np.all(np.abs(heat).max(axis=(1, 2)) > 1e-4), "hiding the digit changed nothing"


def test_occlusion_patches_cover_every_pixel():
    for size, patch, stride in ((28, 4, 2), (28, 5, 3), (28, 28, 1), (7, 3, 3)):
        masks = attribution.occlusion_masks(size, size, patch, stride)
        assert masks.sum(axis=(1, 2)).tolist() == [patch * patch] * len(masks)
        assert np.all(masks.any(axis=0)), (size, patch, stride)


def test_occlusion_with_a_fill_that_differs_from_the_image(trained_seed_cnn, digits):
    """A white patch on a black corner is a change: the corner is no longer exactly zero."""
    images, labels = digits
    blank = images.copy()
    blank[:, :8, :8] = 0
    heat = attribution.occlusion(trained_seed_cnn, blank, labels, patch=4, stride=2, fill=1.0)
    assert np.any(heat[:, :6, :6] != 0)


def test_deleting_the_most_attributed_pixels_hurts_more_than_deleting_random_ones(trained_seed_cnn, mnist_test):
    images, labels = mnist_test.images[:300], mnist_test.labels[:300]
    maps = attribution.saliency(trained_seed_cnn, images, labels)
    curve = attribution.deletion_curve(trained_seed_cnn, images, labels, maps, key=0)
    assert curve["fractions"] == [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]
    assert curve["attributed"][0] == curve["random"][0]
    for f, by_map, by_chance in zip(curve["fractions"], curve["attributed"], curve["random"]):
        if f >= 0.1:
            assert by_map <= by_chance - 0.1, (f, by_map, by_chance)


def test_deletion_curve_does_not_depend_on_the_batch_size(trained_seed_cnn, digits):
    images, labels = digits
    maps = np.random.default_rng(0).random((N, 28, 28, 1))
    a = attribution.deletion_curve(trained_seed_cnn, images, labels, maps, key=5, fractions=(0.0, 0.3), batch_size=16)
    b = attribution.deletion_curve(trained_seed_cnn, images, labels, maps, key=5, fractions=(0.0, 0.3), batch_size=5)
    assert a == b
