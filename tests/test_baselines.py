"""Notebook 05's package side: traditional baselines, the learning curve, ablations and the
articles' double-softmax CNN, on small real MNIST subsets.

Input errors are in test_bad_input.py."""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imgmine_jax import baselines, data, models, recipes, train


@pytest.fixture(scope="module")
def small(mnist_train, mnist_test):
    return baselines.subset(mnist_train, 1500, seed=0), mnist_test.head(600)


def test_pixel_and_hog_features_have_the_documented_shape_and_are_deterministic(mnist_test):
    images = mnist_test.images[:20]
    pixels = baselines.features(images, "pixels")
    assert pixels.shape == (20, 784) and pixels.dtype == np.float32
    assert pixels.min() >= 0 and pixels.max() <= 1
    hog = baselines.features(images, "hog")
    assert hog.shape == (20, 3 * 3 * 2 * 2 * baselines.HOG_PARAMS["orientations"]) and hog.dtype == np.float32
    np.testing.assert_array_equal(hog, baselines.features(images, "hog"))
    assert not np.allclose(hog[0], hog[1])   # two different digits, two different descriptors


def test_subsets_are_seeded_and_nested(mnist_test):
    small_set, large_set = baselines.subset(mnist_test, 50, seed=3), baselines.subset(mnist_test, 200, seed=3)
    assert len(small_set) == 50 and len(large_set) == 200
    rows = {img.tobytes() for img in large_set.images}
    assert all(img.tobytes() in rows for img in small_set.images)
    assert not np.array_equal(baselines.subset(mnist_test, 50, seed=4).labels, small_set.labels)


def test_every_traditional_model_beats_chance_by_far_on_pixels_and_hog(small):
    train_set, test_set = small
    rows = baselines.compare(train_set, test_set, seed=0, log=None)
    assert [(r["model"], r["features"]) for r in rows] == [
        (m, k) for k in baselines.FEATURE_KINDS for m in baselines.TRADITIONAL]
    for row in rows:
        assert row["test_accuracy"] > 0.7, row      # chance is 0.1
        assert row["train_size"] == len(train_set) and row["fit_seconds"] >= 0 and row["predict_seconds"] >= 0
    hog_logistic = next(r for r in rows if r["model"] == "logistic" and r["features"] == "hog")
    assert hog_logistic["test_accuracy"] > 0.85


def test_compare_trains_each_model_on_its_own_subset(small):
    train_set, test_set = small
    rows = baselines.compare(train_set, test_set, models=["knn", "logistic"], feature_kinds=["pixels"],
                             train_size={"knn": 300}, log=None)
    assert {r["model"]: r["train_size"] for r in rows} == {"knn": 300, "logistic": len(train_set)}
    assert set(recipes.TRADITIONAL_TRAIN_SIZES) == set(baselines.TRADITIONAL)


# --------------------------------------------------------------------------- the ResNet's ablation switches

def _param_paths(model) -> list[tuple[str, tuple]]:
    return sorted((jax.tree_util.keystr(p), tuple(x.shape))
                  for p, x in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param)))


def _resnet(**kw):
    return models.build("resnet", models.classifier_config("resnet", 10, (28, 28, 1), **kw))


# notebook 01's ResNet as saved in its checkpoints: the parameter tree its defaults must keep
RESNET_PARAMS = sorted([
    ("['head']['bias'].value", (10,)), ("['head']['kernel'].value", (64, 10)),
    ("['stem']['bn']['bias'].value", (16,)), ("['stem']['bn']['scale'].value", (16,)),
    ("['stem']['conv']['kernel'].value", (3, 3, 1, 16)),
    ("['transitions'][0]['bn']['bias'].value", (32,)), ("['transitions'][0]['bn']['scale'].value", (32,)),
    ("['transitions'][0]['conv']['kernel'].value", (3, 3, 16, 32)),
    ("['transitions'][1]['bn']['bias'].value", (64,)), ("['transitions'][1]['bn']['scale'].value", (64,)),
    ("['transitions'][1]['conv']['kernel'].value", (3, 3, 32, 64)),
    *[(f"['stages'][{i}][0]['{layer}']['{p}'].value", (w,)) for i, w in ((0, 32), (1, 64))
      for layer in ("bn1", "bn2") for p in ("bias", "scale")],
    *[(f"['stages'][{i}][0]['{conv}']['kernel'].value", (3, 3, w, w)) for i, w in ((0, 32), (1, 64))
      for conv in ("conv1", "conv2")],
])


def test_resnet_defaults_keep_the_parameter_tree_of_saved_checkpoints():
    assert _param_paths(_resnet()) == RESNET_PARAMS
    assert _param_paths(_resnet(batch_norm=True, residual=True)) == RESNET_PARAMS
    assert models.count_params(_resnet()) == sum(math.prod(s) for _, s in RESNET_PARAMS)


def test_without_batch_norm_the_convolutions_get_biases_and_no_norm_remains():
    paths = _param_paths(_resnet(batch_norm=False))
    assert not any("bn" in p for p, _ in paths)
    convs = [p for p, _ in RESNET_PARAMS if p.endswith("['kernel'].value") and "head" not in p]
    assert {p.replace("kernel", "bias") for p in convs} <= {p for p, _ in paths}
    assert len(jax.tree.leaves(nnx.state(_resnet(batch_norm=False), nnx.BatchStat))) == 0


def test_without_residual_the_tree_is_kept_and_the_block_is_plain():
    plain = _resnet(residual=False)
    assert _param_paths(plain) == RESNET_PARAMS
    # the last batch norm of a block starts at scale one: a plain block must not start silent
    np.testing.assert_array_equal(plain.stages[0][0].bn2.scale[...], 1.0)
    np.testing.assert_array_equal(_resnet().stages[0][0].bn2.scale[...], 0.0)
    x = data.normalize(jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 14, 14, 32), np.uint8)))
    block = plain.stages[0][0]
    block.eval()
    out = np.asarray(block(x))
    y = block.bn2(block.conv2(nnx.relu(block.bn1(block.conv1(x)))))
    np.testing.assert_allclose(out, np.asarray(nnx.relu(y)), rtol=1e-6)
    assert not np.allclose(out, np.asarray(nnx.relu(x + y)))


@pytest.mark.parametrize("arm", ["no_batch_norm", "no_residual"])
def test_ablated_resnets_still_train(arm, mnist_train):
    _, arch = recipes.ablation(arm, "mnist")
    cfg = train.TrainConfig(epochs=4, batch_size=32, learning_rate=1e-3, schedule="constant", warmup_epochs=0.0,
                            weight_decay=0.0)
    net = models.build("resnet", models.classifier_config("resnet", 10, (28, 28, 1), **arch), seed=0)
    result = train.fit(net, train.Classification(10), mnist_train.head(640).arrays(), None, cfg,
                       monitor=None, progress=False, log=None)
    losses, accuracy = result.column("train_loss"), result.column("train_accuracy")
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.1, losses
    assert accuracy[-1] > 0.3, accuracy     # chance is 0.1


def test_ablation_arms_are_overrides_of_the_classifier_recipe():
    full_cfg, full_arch = recipes.ablation("full", "mnist")
    assert full_cfg == recipes.CLASSIFIER.train_config("mnist") and full_arch == recipes.CLASSIFIER.arch_kwargs()
    for arm in recipes.ABLATIONS:
        cfg, arch = recipes.ablation(arm, "fashion_mnist", epochs=2)
        assert cfg.epochs == 2 and cfg.warmup_epochs < cfg.epochs
        models.build("resnet", models.classifier_config("resnet", 10, (28, 28, 1), **arch))   # the arguments exist
    shift_off, _ = recipes.ablation("no_augmentation", "fashion_mnist")
    assert shift_off.augment_shift == 0 and not shift_off.augment_flip   # after Fashion-MNIST's own overrides
    assert recipes.ablation("no_label_smoothing", "mnist")[0].label_smoothing == 0.0


def test_ablate_returns_one_row_per_arm_with_seed_spread_and_deltas():
    rows = baselines.ablate("mnist", ["full", "no_batch_norm"], seeds=[0, 1], epochs=1, train_size=256,
                           test_size=500, log=None)
    assert [r["arm"] for r in rows] == ["full", "no_batch_norm"]
    for row in rows:
        assert len(row["accuracies"]) == 2 and all(0 <= a <= 1 for a in row["accuracies"])
        assert row["test_accuracy"] == pytest.approx(np.mean(row["accuracies"]))
        assert row["spread"] == pytest.approx(max(row["accuracies"]) - min(row["accuracies"]))
    assert rows[0]["delta"] == 0.0
    assert rows[1]["delta"] == pytest.approx(rows[1]["test_accuracy"] - rows[0]["test_accuracy"])
    assert rows[0]["accuracies"][0] != rows[0]["accuracies"][1]   # the seeds give different networks


# --------------------------------------------------------------------------- the learning curve

def test_learning_curve_has_one_row_per_size_and_model():
    rows = baselines.learning_curve("mnist", [64, 256], traditional="logistic", features_kind="pixels",
                                    epochs=1, min_steps=6, test_size=500, log=None)
    assert [(r["size"], r["kind"]) for r in rows] == [(64, "traditional"), (64, "deep"),
                                                      (256, "traditional"), (256, "deep")]
    deep = [r for r in rows if r["kind"] == "deep"]
    assert deep[0]["epochs"] == 3 and deep[0]["steps"] == 6     # 2 steps per epoch, at least 6 steps
    assert deep[1]["epochs"] == 1 and deep[1]["steps"] == 8     # one epoch already gives 8
    assert rows[2]["test_accuracy"] > 0.5                        # logistic regression on 256 digits


def test_crossing_point_on_hand_made_rows():
    def rows(traditional, deep, sizes=(500, 2000, 8000)):
        return ([{"size": s, "kind": "traditional", "test_accuracy": a} for s, a in zip(sizes, traditional)] +
                [{"size": s, "kind": "deep", "test_accuracy": a} for s, a in zip(sizes, deep)])

    # behind by 0.02 at 500, ahead by 0.02 at 2000: the crossing is halfway on the log scale (1000)
    assert baselines.crossing_point(rows([0.90, 0.92, 0.95], [0.88, 0.94, 0.98])) == pytest.approx(1000.0)
    assert baselines.crossing_point(rows([0.90, 0.92, 0.95], [0.91, 0.94, 0.98])) is None   # ahead everywhere
    assert baselines.crossing_point(rows([0.90, 0.92, 0.95], [0.80, 0.90, 0.94])) is None   # never ahead
    # ahead, behind again, then ahead for good: the crossing that lasts
    assert 2000 < baselines.crossing_point(rows([0.90, 0.92, 0.95], [0.91, 0.91, 0.98])) < 8000


# --------------------------------------------------------------------------- the articles' CNN

@pytest.mark.parametrize("convs,flat", [((32, 64), 5 * 5 * 64), ((32, 64, 64), 3 * 3 * 64)])
def test_article_cnn_has_the_articles_shapes(convs, flat):
    net = models.ArticleCNN(convs=convs, rngs=nnx.Rngs(0))
    assert net.dense1.in_features == flat and net.dense1.out_features == 64
    x = jnp.zeros((3, 28, 28, 1))
    assert net(x).shape == (3, 10)
    probs = models.ArticleCNN(convs=convs, softmax_output=True, rngs=nnx.Rngs(0))(x)
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, jax.nn.softmax(net(x)), rtol=1e-5)   # same weights, softmax added


def test_softmax_twice_floor_is_the_loss_of_a_perfect_probability_output():
    perfect = jnp.eye(10)[:1]   # probability one on the true class
    loss = float(-jax.nn.log_softmax(perfect)[0, 0])
    assert baselines.softmax_twice_floor(10) == pytest.approx(loss) == pytest.approx(1.4612, abs=1e-4)


def test_double_softmax_loss_stays_above_its_floor_while_the_corrected_network_goes_below():
    cfg = dataclasses.replace(recipes.ARTICLE_CNN, epochs=3)   # the last epoch's mean loss is compared
    wrong, right = baselines.double_softmax_cost("mnist", cfg=cfg, train_size=2000, test_size=1000,
                                                  log=None)
    assert wrong["softmax_output"] and not right["softmax_output"]
    assert wrong["final_train_loss"] > wrong["loss_floor"]
    assert right["final_train_loss"] < right["loss_floor"]
    assert right["test_accuracy"] > 0.8
