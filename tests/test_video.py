"""Video predictors (notebook 02): shapes, causality, scheduled sampling, one compilation, bad input."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imgmine_jax import moving_mnist, sequence, train
from imgmine_jax.models import video


@pytest.fixture(scope="module")
def frames(mnist_test):
    """Four real Moving MNIST test sequences, float (4, 20, 64, 64, 1) in [0, 1]."""
    seqs = moving_mnist.generate(mnist_test.head(200), 4, seed=0)
    return jnp.asarray(seqs.frames()[..., None], jnp.float32) / 255.0


def _small(cell="convlstm", future=10):
    return video.ConvLSTMPredictor(hidden=(8, 8), cell=cell, future=future, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("cell", video.CELLS)
def test_recurrent_predictor_shapes(cell, frames):
    model = _small(cell)
    out = model(frames[:, :10])
    assert out.shape == (4, 10, 64, 64, 1) and bool(jnp.isfinite(out).all())
    assert model.rollout(frames).shape == (4, 19, 64, 64, 1)
    # a 12-frame context predicts the same 10-frame horizon
    assert model(frames[:, :12]).shape == (4, 10, 64, 64, 1)


def test_conv_predictor_shapes(frames):
    model = video.ConvPredictor(embed=4, width=16, depth=2, rngs=nnx.Rngs(0))
    assert model(frames[:, :10]).shape == (4, 10, 64, 64, 1)
    with pytest.raises(ValueError, match="built for 10 observed frames; got 12"):
        model(frames[:, :12])


@pytest.mark.parametrize("cell", video.CELLS)
def test_a_prediction_never_sees_a_future_frame(cell, frames):
    """Changing frame k (teacher forcing everywhere) leaves every prediction of frames <= k unchanged."""
    model = _small(cell)
    ones = jnp.ones((4, 9))
    base = model.rollout(frames, ones)
    for k in (3, 10, 15):   # an observed frame, the first future frame, a later one
        changed = frames.at[:, k].set(1.0 - frames[:, k])
        out = model.rollout(changed, ones)
        # output j predicts frame j + 1 from frames 0..j: outputs 0..k-1 cannot depend on frame k
        np.testing.assert_array_equal(np.asarray(out[:, :k]), np.asarray(base[:, :k]))
        assert float(jnp.abs(out[:, k] - base[:, k]).max()) > 0   # ... and output k does


def test_free_running_prediction_ignores_the_true_future(frames):
    model = _small()
    free = model.rollout(frames, jnp.zeros((4, 9)))
    scrambled = frames.at[:, 10:].set(frames[::-1, 10:])
    np.testing.assert_array_equal(np.asarray(model.rollout(scrambled, jnp.zeros((4, 9)))), np.asarray(free))
    np.testing.assert_array_equal(np.asarray(model.rollout(frames, None)), np.asarray(free))
    # __call__ on the observed frames is the same free-running prediction of the future
    np.testing.assert_allclose(np.asarray(model(frames[:, :10])), np.asarray(free[:, 9:]), atol=1e-5)


def test_scheduled_sampling_ratio_0_and_1(frames):
    """Ratio 1 feeds every true frame (teacher forcing), ratio 0 none (the test-time rollout)."""
    model = _small()
    task = sequence.ScheduledSampling(sampling_steps=100)
    assert float(task.ratio(jnp.uint32(0))) == 1.0 and float(task.ratio(jnp.uint32(100))) == 0.0
    assert float(task.ratio(jnp.uint32(50))) == pytest.approx(0.5)
    assert float(sequence.ScheduledSampling(sampling_steps=0).ratio(jnp.uint32(0))) == 0.0
    teacher = model.rollout(frames, jnp.ones((4, 9)))
    free = model.rollout(frames, jnp.zeros((4, 9)))
    np.testing.assert_array_equal(np.asarray(teacher[:, :10]), np.asarray(free[:, :10]))  # observed part
    assert float(jnp.abs(teacher[:, 10:] - free[:, 10:]).max()) > 0
    # teacher forcing = reading the true frames as if they had all been observed
    observed_all = video.ConvLSTMPredictor(hidden=(8, 8), future=1, rngs=nnx.Rngs(0)).rollout(frames)
    np.testing.assert_allclose(np.asarray(teacher), np.asarray(observed_all), atol=1e-5)


def test_scheduled_sampling_step_trains_and_compiles_once(mnist_train):
    seqs = moving_mnist.generate(mnist_train.head(1000), 12, seed=0)
    task = sequence.ScheduledSampling(loss_kind="mse", sampling_steps=3)
    cfg = train.TrainConfig(epochs=2, batch_size=4, eval_batch_size=4, learning_rate=1e-2, warmup_epochs=0.5)
    result = train.fit(_small(), task, seqs.arrays(), seqs.arrays(), cfg, monitor="val_mse", progress=False,
                       log=None)
    ratios = result.column("train_teacher_ratio")
    # 3 steps per epoch; the ratio falls 1, 2/3, 1/3 over the first epoch and is 0 in the second
    assert ratios[0] == pytest.approx(2 / 3) and ratios[1] == 0.0
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.trainer.compilations() == 2             # one train program, one eval program


@pytest.mark.parametrize("kind", sequence.LOSSES)
def test_frame_losses_are_zero_only_at_the_target(kind):
    target = jnp.asarray(np.random.default_rng(0).integers(0, 2, (2, 3, 8, 8, 1)), jnp.float32)
    exact = jnp.where(target > 0, 20.0, -20.0)
    assert float(sequence.frame_loss(kind, exact, target)) < 1e-6
    assert float(sequence.frame_loss(kind, -exact, target)) > 0.5


def test_video_bad_input(frames):
    with pytest.raises(ValueError, match="patch=5 does not divide frame_size=64"):
        video.ConvLSTMPredictor(patch=5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="patch=3 does not divide frame_size=64"):
        video.ConvPredictor(patch=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown video cell 'gru'"):
        video.ConvLSTMPredictor(cell="gru", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="st_lstm layers need one width"):
        video.ConvLSTMPredictor(hidden=(8, 16), cell="st_lstm", rngs=nnx.Rngs(0))
    model = _small()
    with pytest.raises(ValueError, match=r"expects frames of shape \(N, T, 64, 64, 1\); got \(4, 20, 64, 64\)"):
        model(frames[..., 0])
    with pytest.raises(ValueError, match="rollout needs more than future=10 frames"):
        model.rollout(frames[:, :10])
    with pytest.raises(ValueError, match=r"feed_truth must have shape \(N=4, future-1=9\); got \(4, 5\)"):
        model.rollout(frames, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="unknown frame loss 'l2'"):
        sequence.ScheduledSampling(loss_kind="l2")
    with pytest.raises(ValueError, match="sampling_steps must be an integer >= 0; got -1"):
        sequence.ScheduledSampling(sampling_steps=-1)
    with pytest.raises(ValueError, match="predictions .* and targets .* must have one shape"):
        sequence.horizon_errors(np.zeros((2, 10, 64, 64)), np.zeros((2, 9, 64, 64)))


def test_advection_moves_pixels_by_whole_offsets_and_starts_as_copy_last(frames):
    frame = np.zeros((1, 64, 64, 1), np.float32)
    frame[0, 10:20, 30:35] = 1.0
    logits = np.full((1, 16, 16, 18), -30.0, np.float32)
    logits[..., 4 + 3] = 30.0       # horizontal: take the pixel 3 to the right (content moves left by 3)
    logits[..., 9 + 4 - 2] = 30.0   # vertical: take the pixel 2 above (content moves down by 2)
    moved = np.asarray(video.advect(jnp.asarray(frame), jnp.asarray(logits), 4))
    np.testing.assert_allclose(moved[0, 12:22, 27:32], 1.0, atol=1e-6)
    assert float(moved.sum()) == pytest.approx(50.0, abs=1e-3)
    model = video.ConvLSTMPredictor(hidden=(8,), output="advection", rngs=nnx.Rngs(0))
    out = jax.nn.sigmoid(model(frames[:, :10]))
    assert out.shape == (4, 10, 64, 64, 1)
    # untrained, the weights sit on the centre offset: the prediction is close to the last frame
    assert float(jnp.abs(out[:, 0] - frames[:, 9]).mean()) < 0.05
