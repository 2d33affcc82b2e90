"""DCGAN models, the GAN training task on the shared loop, and classifier FID / Inception Score."""
from __future__ import annotations

import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imgmine_jax import checkpoint, data, gan, metrics, mining, models, recipes, train
from imgmine_jax.models import common


def _gan(conditional=False, upsample="depth_to_space", seed=0, width=8):
    return gan.GAN(latent_dim=16, width=width, num_classes=10 if conditional else 0, upsample=upsample,
                   rngs=nnx.Rngs(seed))


# --------------------------------------------------------------------------- models

@pytest.mark.parametrize("upsample", gan.UPSAMPLE)
@pytest.mark.parametrize("conditional", [False, True])
def test_generator_shape_and_tanh_range(upsample, conditional):
    model = _gan(conditional, upsample)
    z = jax.random.normal(jax.random.key(0), (5, 16)) * 50.0   # large inputs saturate tanh
    labels = jnp.arange(5) if conditional else None
    for mode in ("train", "eval"):
        getattr(model, mode)()
        out = model.generator(z, labels)
        assert out.shape == (5, 28, 28, 1) and out.dtype == jnp.float32
        assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    logits = model.discriminator(out, labels)
    assert logits.shape == (5,)


def test_discriminator_logits_and_input_errors():
    model = _gan(conditional=True)
    model.eval()
    x = jnp.zeros((3, 28, 28, 1))
    assert model.discriminator(x, jnp.array([0, 1, 2])).shape == (3,)
    with pytest.raises(ValueError, match="conditional on 10 classes"):
        model.discriminator(x)
    with pytest.raises(ValueError, match="images of shape"):
        model.discriminator(jnp.zeros((3, 32, 32, 1)), jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="latents of shape"):
        model.generator(jnp.zeros((3, 7)), jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="upsample must be one of"):
        gan.GAN(upsample="bilinear", rngs=nnx.Rngs(0))


def test_depth_to_space_moves_channel_groups_to_pixel_blocks():
    x = jnp.arange(2 * 3 * 3 * 8, dtype=jnp.float32).reshape(2, 3, 3, 8)
    y = common.depth_to_space(x)
    assert y.shape == (2, 6, 6, 2)
    for a in range(2):
        for b in range(2):
            np.testing.assert_array_equal(y[:, a::2, b::2, :], x[..., (2 * a + b) * 2:(2 * a + b + 1) * 2])


def test_discriminator_dropout_uses_the_given_key():
    model = _gan()
    model.train()
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1), minval=-1.0, maxval=1.0)
    a = model.discriminator(x, rngs=jax.random.key(0))
    b = model.discriminator(x, rngs=jax.random.key(0))
    c = model.discriminator(x, rngs=jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# --------------------------------------------------------------------------- training

def _params(state):
    return {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(state, nnx.Param))}


@pytest.mark.parametrize("conditional", [False, True])
def test_one_gan_step_changes_both_networks_and_returns_finite_losses(mnist_train, conditional):
    model = _gan(conditional)
    task = gan.GANTask(latent_dim=16, conditional=conditional)
    trainer = train.Trainer(model, task, task.make_optimizer(model))
    before = _params(trainer.model_state)
    arrays = data.to_device(mnist_train.head(32).arrays())
    metrics_ = trainer.run_epoch(arrays, np.arange(32)[None])
    after = _params(trainer.model_state)
    for net in ("generator", "discriminator"):
        changed = [k for k in before if k.startswith(net) and not np.array_equal(before[k], after[k])]
        assert changed, f"{net} parameters did not change"
    assert {"loss", "d_loss", "g_loss", "d_real", "d_fake"} <= set(metrics_)
    assert all(np.isfinite(v) for v in metrics_.values())
    assert 0 < metrics_["d_real"] < 1 and 0 < metrics_["d_fake"] < 1
    # the generator's batch statistics moved too (train mode inside the step)
    stats = {"/".join(map(str, p)): np.asarray(v.get_value())
             for p, v in nnx.to_flat_state(nnx.state(trainer.model_state, nnx.BatchStat))}
    assert any(np.any(v != 0) and np.any(v != 1) for v in stats.values())


def test_gan_fit_compiles_once_keeps_last_epoch_and_records_epoch_metrics(mnist_train):
    model = _gan()
    task = gan.GANTask(latent_dim=16)
    cfg = train.TrainConfig(epochs=2, batch_size=32, schedule="constant", warmup_epochs=0)
    calls = []

    def scores(trainer):
        calls.append(trainer.step)
        return {"fid": 1.0 / trainer.step}   # lower is better: would pick the last epoch anyway

    result = train.fit(model, task, mnist_train.head(96).arrays(), None, cfg, monitor=None,
                       epoch_metrics=scores, progress=False, log=None)
    assert result.trainer.compilations("train") == 1
    assert calls == [3, 6] and [r["fid"] for r in result.history] == [1 / 3, 1 / 6]
    assert result.best_epoch == 2
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= {k[len("train_"):] for k in result.history[0]}
    assert result.history[0]["lr"] == task.lr_g


def test_gan_optimisers_follow_the_configs_schedule(mnist_train):
    """``linear_decay`` holds both learning rates for the first half, then lowers them: the
    first epoch's weights equal a constant-rate run's, the second's differ, and the history
    shows the generator's rate at each epoch's first step (9 steps: 4 held, then 1, 0.8, ...)."""
    arrays = mnist_train.head(96).arrays()   # 3 steps per epoch at batch 32
    task = gan.GANTask(latent_dim=16, conditional=False)
    runs = {}
    for schedule in ("constant", "linear_decay"):
        cfg = train.TrainConfig(epochs=3, batch_size=32, schedule=schedule, warmup_epochs=0, seed=3)
        per_epoch = []
        result = train.fit(_gan(seed=3), task, arrays, None, cfg, monitor=None, progress=False, log=None,
                           epoch_metrics=lambda tr: per_epoch.append(_params(tr.state)) or {})
        runs[schedule] = (per_epoch, [r["lr"] for r in result.history])
    (const, const_lr), (decay, decay_lr) = runs["constant"], runs["linear_decay"]
    for k in const[0]:
        np.testing.assert_array_equal(const[0][k], decay[0][k], err_msg=k)
    assert any(not np.array_equal(const[1][k], decay[1][k]) for k in const[1])
    assert const_lr == [task.lr_g] * 3
    assert decay_lr == pytest.approx([task.lr_g, task.lr_g, 0.6 * task.lr_g])
    # the schedule itself: peak for half the steps, then linearly to zero
    shape = train.lr_schedule(train.TrainConfig(epochs=4, batch_size=32, schedule="linear_decay"), 10)
    assert [float(shape(s)) for s in (0, 19, 20, 30, 40)] == pytest.approx([1, 1, 1, 0.5, 0])


def test_gan_fit_resumes_bitwise_from_a_checkpoint(mnist_train, tmp_path):
    arrays = mnist_train.head(128).arrays()
    task = gan.GANTask(latent_dim=16, conditional=True, real_label=0.9)
    cfg = train.TrainConfig(epochs=3, batch_size=32, schedule="constant", warmup_epochs=0, seed=5)
    run = lambda d: train.fit(_gan(True, seed=5), task, arrays, None, cfg, monitor=None, progress=False,
                              log=None, checkpoint_dir=d)
    full = run(tmp_path)
    shutil.rmtree(tmp_path / "epoch-0003")   # as if killed during epoch 3
    resumed = run(tmp_path)
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_sec")} for r in h]
    assert strip(full.history) == strip(resumed.history)
    a, b = _params(full.trainer.state), _params(resumed.trainer.state)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_gan_task_checks_its_parameters():
    with pytest.raises(ValueError, match="lr_d"):
        gan.GANTask(lr_d=0.0)
    with pytest.raises(ValueError, match="real_label"):
        gan.GANTask(real_label=0.3)
    with pytest.raises(TypeError, match="GAN"):
        gan.GANTask().make_optimizer(models.build("seed_cnn", models.classifier_config("seed_cnn", 10, (28, 28, 1))))


def test_gan_saves_and_loads_through_the_model_registry(tmp_path):
    model = _gan(conditional=True)
    config = {"latent_dim": 16, "width": 8, "num_classes": 10, "upsample": "depth_to_space"}
    checkpoint.save_model(tmp_path / "g", model, "dcgan", config)
    loaded, _ = checkpoint.load_model(tmp_path / "g", expect_architecture="dcgan")
    z = gan.latents(0, 4, 16)
    np.testing.assert_array_equal(gan.sample(model, z, np.arange(4)), gan.sample(loaded, z, np.arange(4)))


# --------------------------------------------------------------------------- sampling helpers

def test_sampler_pads_the_last_batch_and_returns_uint8():
    model = _gan()
    z = gan.latents(3, 7, 16)
    images = gan.Sampler(model.generator, batch_size=4)(nnx.state(model.generator), z)
    assert images.shape == (7, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:4], gan.sample(model, z[:4]))


def test_slerp_keeps_the_ends_and_the_norm():
    a, b = gan.latents(0, 2, 64)
    path = gan.slerp(a, b, 9)
    np.testing.assert_allclose(path[0], a, atol=1e-5)
    np.testing.assert_allclose(path[-1], b, atol=1e-5)
    norms = np.linalg.norm(path, axis=1)
    assert norms.min() > 0.8 * min(np.linalg.norm(a), np.linalg.norm(b))


def test_nearest_training_image_in_pixel_l2_finds_an_exact_copy(mnist_train):
    pool = mining.pixels(mnist_train.images[:500])
    dist, idx = mining.nearest_neighbors(pool, pool[[7, 123, 499]], k=1, metric="euclidean")
    np.testing.assert_array_equal(idx[:, 0], [7, 123, 499])
    np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-2)   # float32 rounding of |q|^2 - 2qp + |p|^2
    moved = pool[[7]] + 0.1
    dist, idx = mining.nearest_neighbors(pool, moved, k=1, metric="euclidean")
    assert idx[0, 0] == 7 and dist[0, 0] == pytest.approx(0.1 * np.sqrt(pool.shape[1]), rel=1e-3)


# --------------------------------------------------------------------------- FID and IS

def test_frechet_distance_matches_the_sqrtm_formula():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    (m1, s1), (m2, s2) = metrics.feature_statistics(a), metrics.feature_statistics(b)
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
    assert metrics.frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-6)
    assert metrics.frechet_distance(m1, s1, m2, s2) == pytest.approx(metrics.frechet_distance(m2, s2, m1, s1),
                                                                        rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(mnist_test):
    # features: 7x7 average-pooled pixels of real digits (a stand-in for classifier features)
    images = mnist_test.images[:2000].astype(np.float32) / 255.0
    feats = lambda x: x.reshape(len(x), 7, 4, 7, 4).mean(axis=(2, 4)).reshape(len(x), -1)
    rng = np.random.default_rng(0)
    assert metrics.fid_from_features(feats(images), feats(images)) == pytest.approx(0.0, abs=1e-6)
    fids = [metrics.fid_from_features(feats(images), feats(images + s * rng.normal(size=images.shape)))
            for s in (0.05, 0.2, 0.5)]
    assert 0 < fids[0] < fids[1] < fids[2], fids


def test_classifier_scorer_fid_and_is_on_real_and_noised_images(mnist_test):
    net = models.build("resnet", models.classifier_config("resnet", 10, (28, 28, 1), widths=[8, 16]))
    scorer = gan.ClassifierScorer(net, batch_size=300)
    real = mnist_test.images[:1000]
    ref = scorer.statistics(real)
    same = scorer.score(real, ref)
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    noisy = np.clip(real + np.random.default_rng(0).normal(0, 80, real.shape), 0, 255).astype(np.uint8)
    assert scorer.score(noisy, ref)["fid"] > 10 * max(same["fid"], 1e-9)
    assert 1.0 <= same["is"] <= 10.0 and same["predictions"].shape == (1000,)
    with pytest.raises(ValueError, match="uint8"):
        scorer.outputs(real.astype(np.float32))
    # scoring precomputed outputs is the same as scoring the images
    feats, logits = scorer.outputs(noisy)
    again = scorer.score_outputs(feats, logits, ref)
    assert again["is"] == scorer.score(noisy, ref)["is"] and again["fid"] == scorer.score(noisy, ref)["fid"]
    assert scorer.calibrate(real, mnist_test.labels[:1000]) == scorer.calibrate(
        real, mnist_test.labels[:1000], logits=scorer.outputs(real)[1])


def test_inception_score_bounds():
    k = 10
    assert metrics.inception_score(np.full((500, k), 1.0 / k)) == pytest.approx(1.0)
    confident = np.full((1000, k), 1e-6)
    confident[np.arange(1000), np.arange(1000) % k] = 1 - 9e-6
    assert metrics.inception_score(confident) == pytest.approx(k, rel=1e-3)
    one_class = np.zeros((100, k))
    one_class[:, 3] = 1.0
    assert metrics.inception_score(one_class) == pytest.approx(1.0)
    assert metrics.inception_score(confident, splits=5) == pytest.approx(k, rel=1e-3)
    with pytest.raises(ValueError, match="probabilities"):
        metrics.inception_score(np.ones((4, k)))


def test_fit_temperature_recovers_the_temperature_of_the_data():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 10))
    true_t = 0.5
    p = metrics.softmax(logits / true_t)
    labels = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
    assert metrics.fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_averaged_generator_follows_the_trained_one(mnist_train):
    arrays = data.to_device(mnist_train.head(64).arrays())
    for decay in (0.0, 0.9):
        model = _gan()
        task = gan.GANTask(latent_dim=16, ema_decay=decay)
        trainer = train.Trainer(model, task, task.make_optimizer(model))
        start = _params(trainer.model_state)
        trainer.run_epoch(arrays, np.arange(64).reshape(2, 32))
        p = _params(trainer.model_state)
        for k in p:
            if k.startswith("generator_ema/"):
                live = p["generator/" + k[len("generator_ema/"):]]
                if decay == 0.0:
                    np.testing.assert_array_equal(p[k], live)
                elif not np.array_equal(start[k], live):
                    assert not np.array_equal(p[k], live) and not np.array_equal(p[k], start[k])


# --------------------------------------------------------------------------- self-conditioning

def test_pixel_clusters_group_digits_without_labels(mnist_train):
    images, labels = mnist_train.images[:3000], mnist_train.labels[:3000]
    ids = gan.pixel_clusters(images, 30, seed=0)
    assert ids.shape == (3000,) and ids.dtype == np.int32
    assert set(np.unique(ids)) == set(range(30))
    # far purer than chance (~0.11): pixel clusters are mostly one digit each
    assert metrics.purity(labels, ids) > 0.7
    np.testing.assert_array_equal(ids, gan.pixel_clusters(images, 30, seed=0))
    with pytest.raises(ValueError, match="k must be an integer"):
        gan.pixel_clusters(images[:10], 11)


def test_draw_labels_follows_the_label_frequencies():
    labels = np.repeat(np.arange(4), [100, 300, 600, 0]).astype(np.int32)
    drawn = gan.draw_labels(labels, 20000, seed=0, num_classes=4)
    assert drawn.shape == (20000,) and drawn.dtype == np.int32
    np.testing.assert_allclose(np.bincount(drawn, minlength=4) / 20000, [0.1, 0.3, 0.6, 0.0], atol=0.015)
    np.testing.assert_array_equal(drawn, gan.draw_labels(labels, 20000, seed=0, num_classes=4))
    with pytest.raises(ValueError, match="non-negative integers"):
        gan.draw_labels(np.array([0.5, 1.0]), 4, seed=0)


def test_epoch_scores_generate_with_given_labels(mnist_test):
    net = models.build("resnet", models.classifier_config("resnet", 10, (28, 28, 1), widths=[8, 16]))
    scorer = gan.ClassifierScorer(net, batch_size=200)
    ref = scorer.statistics(mnist_test.images[:200])
    model = gan.GAN(latent_dim=16, width=8, num_classes=30, rngs=nnx.Rngs(0))
    task = gan.GANTask(latent_dim=16, conditional=True)
    trainer = train.Trainer(model, task, task.make_optimizer(model))
    ids = np.arange(200, dtype=np.int32) % 30
    scores = gan.EpochScores(model.generator_ema, scorer, ref, num_samples=200, seed=0, labels=ids)
    out = scores(trainer)
    assert set(out) == {"fid", "is"}        # cluster ids are not classes: no class accuracy
    balanced = gan.EpochScores(model.generator_ema, scorer, ref, num_samples=200, seed=0)
    assert "class_accuracy" in balanced(trainer)
    with pytest.raises(ValueError, match="shape"):
        gan.EpochScores(model.generator_ema, scorer, ref, num_samples=200, seed=0, labels=ids[:10])
    with pytest.raises(ValueError, match="unconditional"):
        gan.EpochScores(_gan().generator_ema, scorer, ref, num_samples=200, seed=0, labels=ids)


# --------------------------------------------------------------------------- article C's dense GAN

def _dense_gan(seed=0):
    return gan.GAN(**recipes.ARTICLE_GAN_ARCH, rngs=nnx.Rngs(seed))


def test_dense_gan_has_the_articles_layers():
    """z(100) -> Dense(128, relu) -> Dense(784, sigmoid) and 784 -> Dense(128, relu) -> Dense(1):
    the parameter counts Keras reports for article C's two models, and the generator's image is
    the article's sigmoid pixels mapped onto [-1, 1]."""
    model = _dense_gan()
    assert models.count_params(model.generator) == (100 * 128 + 128) + (128 * 784 + 784)
    assert models.count_params(model.discriminator) == (784 * 128 + 128) + (128 + 1)
    g = model.generator
    z = gan.latents(1, 6, 100)
    hidden = np.maximum(z @ np.asarray(g.hidden.kernel.get_value()) + np.asarray(g.hidden.bias.get_value()), 0)
    pixels = 1 / (1 + np.exp(-(hidden @ np.asarray(g.out.kernel.get_value()) + np.asarray(g.out.bias.get_value()))))
    out = np.asarray(g(jnp.asarray(z)))
    assert out.shape == (6, 28, 28, 1)
    np.testing.assert_allclose(out, (2 * pixels - 1).reshape(6, 28, 28, 1), atol=1e-5)
    d = model.discriminator
    flat = out.reshape(6, -1)
    logit = (np.maximum(flat @ np.asarray(d.hidden.kernel.get_value()) + np.asarray(d.hidden.bias.get_value()), 0)
             @ np.asarray(d.out.kernel.get_value()) + np.asarray(d.out.bias.get_value()))[:, 0]
    np.testing.assert_allclose(np.asarray(d(jnp.asarray(out))), logit, rtol=1e-4, atol=1e-4)


def test_dense_gan_refuses_labels_and_unknown_architectures():
    with pytest.raises(ValueError, match="architecture must be one of"):
        gan.GAN(architecture="mlp", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dense GAN is unconditional"):
        gan.GAN(architecture="dense", num_classes=10, rngs=nnx.Rngs(0))
    model = _dense_gan()
    with pytest.raises(ValueError, match="unconditional"):
        model.generator(jnp.zeros((2, 100)), jnp.array([0, 1]))
    with pytest.raises(ValueError, match="latents of shape"):
        model.generator(jnp.zeros((2, 64)))
    with pytest.raises(ValueError, match="images of shape"):
        model.discriminator(jnp.zeros((2, 784)))


def test_dense_gan_generator_learns_through_the_discriminator(mnist_train):
    """The article's loop fits the generator to a vector of ones and never through D; the
    repaired one does, so the generator moves from its untrained uniform grey (every pixel near
    the sigmoid's 0.5) to MNIST's mostly black backgrounds with bright strokes."""
    arrays = mnist_train.head(4096).arrays()
    real_dark = np.mean(mnist_train.images[:4096] < 26)   # MNIST: ~80% of pixels are (near) black
    cfg = dataclasses.replace(recipes.ARTICLE_GAN, epochs=20)   # 2,560 steps: it starts slowly at 2e-4
    model = _dense_gan()
    z = gan.latents(3, 500, 100)
    before = gan.sample(model, z, averaged=False)
    result = train.fit(model, gan.GANTask(latent_dim=100, ema_decay=0.0), arrays, None, cfg, monitor=None,
                       progress=False, log=None)
    after = gan.sample(result.model, z, averaged=False)
    assert np.mean(before < 26) < 0.05 and np.mean(before > 229) < 0.05   # grey
    assert np.mean(after < 26) > 0.5 * real_dark                          # dark backgrounds (0.57 measured)
    assert np.mean(after > 229) > 0.001                                  # and the first bright strokes
