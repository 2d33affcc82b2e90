"""The benchmark models in PyTorch, eager mode (no ``torch.compile``), CPU.

Layer by layer the same as the project's Flax models (``imgmine_jax.models``): same
widths, kernels, strides, padding, normalisation, dropout and losses, NCHW layout (the
PyTorch default), ``torch.optim.Adam``. Parameter initialisation is PyTorch's default
except where it changes what is computed (zero-initialised last BN scale of a residual
block). Each :class:`Peer` has ``train_step(x, y)`` (one optimiser step on one batch) and
``run(steps)`` (that many steps on consecutive batches, waiting for the last).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.peers.common import Batches

FRAMEWORK = "pytorch"


def version() -> str:
    return f"torch {torch.__version__} ({torch.get_num_threads()} threads)"


# --------------------------------------------------------------------------- models

class SeedCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.dense1 = nn.Linear(5 * 5 * 64, 128)
        self.dense2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.dense2(F.relu(self.dense1(x.flatten(1))))


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout, momentum=0.1)   # = Flax momentum 0.9

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class ResidualBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c, momentum=0.1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c, momentum=0.1)
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class ResNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths=(16, 32, 64), blocks: int = 1, dropout: float = 0.2):
        super().__init__()
        self.stem = ConvBN(1, widths[0])
        self.transitions = nn.ModuleList([ConvBN(a, b) for a, b in zip(widths, widths[1:])])
        self.stages = nn.ModuleList([nn.Sequential(*[ResidualBlock(w) for _ in range(blocks)])
                                     for w in widths[1:]])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.stem(x)
        for transition, stage in zip(self.transitions, self.stages):
            x = stage(transition(F.max_pool2d(x, 2)))
        return self.head(self.dropout(x.mean(dim=(2, 3))))


class RowLSTM(nn.Module):
    """Rows of the image as time steps; ``nn.LSTM`` (PyTorch's fused CPU kernel); head on the last state."""

    def __init__(self, num_classes: int = 10, width: int = 28, hidden: int = 128):
        super().__init__()
        self.lstm = nn.LSTM(width, hidden, batch_first=True)
        with torch.no_grad():   # forget-gate bias 1, as the project (gate order i, f, g, o)
            self.lstm.bias_ih_l0[hidden:2 * hidden].fill_(1.0)
            self.lstm.bias_hh_l0[hidden:2 * hidden].fill_(0.0)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):               # x: (N, 1, H, W)
        out, _ = self.lstm(x[:, 0])
        return self.head(out[:, -1])


LEAK = 0.2


class Upsample(nn.Module):
    """2x upsampling as the project's ``Upsample``: ``depth_to_space`` (3x3 conv to 4x channels +
    pixel shuffle), ``transpose`` (4x4 stride-2 transposed conv) or ``resize`` (nearest + 3x3 conv)."""

    def __init__(self, cin: int, cout: int, mode: str, bias: bool = True):
        super().__init__()
        self.mode = mode
        if mode == "depth_to_space":
            self.conv = nn.Conv2d(cin, 4 * cout, 3, padding=1, bias=bias)
        elif mode == "transpose":
            self.conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias)
        else:
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)

    def forward(self, x):
        if self.mode == "depth_to_space":
            return F.pixel_shuffle(self.conv(x), 2)
        if self.mode == "resize":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x)


class Generator(nn.Module):
    def __init__(self, latent_dim: int = 64, width: int = 64, upsample: str = "depth_to_space"):
        super().__init__()
        self.width = width
        self.dense = nn.Linear(latent_dim, 7 * 7 * 2 * width, bias=False)
        self.bn0 = nn.BatchNorm2d(2 * width, momentum=0.1)
        self.up1 = Upsample(2 * width, width, upsample, bias=False)
        self.bn1 = nn.BatchNorm2d(width, momentum=0.1)
        self.up2 = Upsample(width, 1, upsample)

    def forward(self, z):
        # the project reshapes to NHWC (7, 7, 2w); here NCHW: the same numbers, another order
        x = self.dense(z).view(-1, 2 * self.width, 7, 7)
        x = F.leaky_relu(self.bn0(x), LEAK)
        x = F.leaky_relu(self.bn1(self.up1(x)), LEAK)
        return torch.tanh(self.up2(x))


class Discriminator(nn.Module):
    def __init__(self, width: int = 64, dropout: float = 0.3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 4, stride=2, padding=1)          # 28 -> 14 (= SAME)
        self.conv2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)  # 14 -> 7
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(7 * 7 * 2 * width, 1)

    def forward(self, x):
        h = self.dropout(F.leaky_relu(self.conv1(x), LEAK))
        h = self.dropout(F.leaky_relu(self.conv2(h), LEAK))
        return self.head(h.flatten(1))[:, 0]


class ConvLSTMCell(nn.Module):
    """All four gates from one convolution over ``[x, h]`` (no input: over ``h`` only)."""

    def __init__(self, cin: int, hidden: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin + hidden, 4 * hidden, k, padding=k // 2)
        with torch.no_grad():
            self.conv.bias[hidden:2 * hidden].fill_(1.0)

    def forward(self, carry, x=None):
        c, h = carry
        xh = h if x is None else torch.cat([x, h], dim=1)
        i, f, g, o = torch.chunk(self.conv(xh), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return (c, h), h


class EncoderForecaster(nn.Module):
    """The project's encoder-forecaster with one ConvLSTM layer per stack (``hidden=(h,)``)."""

    def __init__(self, patch: int = 4, embed: int = 32, hidden: int = 32, future: int = 10):
        super().__init__()
        self.patch, self.hidden, self.future = patch, hidden, future
        self.embed = nn.Conv2d(patch * patch, embed, 3, padding=1)
        self.encoder = ConvLSTMCell(embed, hidden)
        self.forecaster = ConvLSTMCell(0, hidden)
        self.decode = nn.Conv2d(hidden, patch * patch, 3, padding=1)
        nn.init.constant_(self.decode.bias, -3.0)

    def forward(self, frames):            # (N, T, 1, S, S) in [0, 1]
        n, t = frames.shape[:2]
        x = F.pixel_unshuffle(frames.reshape(n * t, *frames.shape[2:]), self.patch)
        x = F.relu(self.embed(x))
        x = x.view(n, t, *x.shape[1:])
        g = x.shape[-1]
        carry = (x.new_zeros(n, self.hidden, g, g), x.new_zeros(n, self.hidden, g, g))
        for step in range(t):
            carry, _ = self.encoder(carry, x[:, step])
        states = []
        for _ in range(self.future):
            carry, h = self.forecaster(carry)
            states.append(h)
        s = torch.stack(states, dim=1).reshape(n * self.future, self.hidden, g, g)
        out = F.pixel_shuffle(self.decode(s), self.patch)
        return out.view(n, self.future, *out.shape[1:])


# --------------------------------------------------------------------------- training steps

class Peer:
    """One model, its optimiser, its batches; ``train_step(x, y)`` and ``run(steps)``."""

    framework = FRAMEWORK

    def __init__(self, name: str, model: nn.Module, step_fn, batches: Batches):
        self.name, self.model, self._step, self.batches = name, model, step_fn, batches
        self.model.train()

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self._step(x, y)

    def run(self, steps: int) -> float:
        loss = None
        for _ in range(steps):
            loss = self._step(*self.batches.next())
        return float(loss)    # .item() waits for the last step


def _classifier_step(model: nn.Module, label_smoothing: float = 0.0):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def _gan_step(g: Generator, d: Discriminator, g_ema: Generator, latent_dim: int, ema_decay: float = 0.995):
    """As ``GANTask.update``: one D step on real + detached fakes, then one G step (non-saturating)
    through the updated D, with G run again on the same noise; Adam(2e-4, 0.5, 0.999) for both;
    then the averaged generator: an EMA of G's weights, G's batch-norm statistics copied."""
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    params, ema_params = list(g.parameters()), list(g_ema.parameters())
    buffers, ema_buffers = list(g.buffers()), list(g_ema.buffers())

    def step(real, _):
        z = torch.randn(real.shape[0], latent_dim)
        with torch.no_grad():
            fake = g(z)
        opt_d.zero_grad(set_to_none=True)
        real_logits, fake_logits = d(real), d(fake)
        d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.softplus(fake_logits).mean())
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        g_loss = F.softplus(-d(g(z))).mean()
        g_loss.backward()      # also fills D's .grad, which the next D step clears
        opt_g.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - ema_decay)
            torch._foreach_copy_(ema_buffers, buffers)
        return (d_loss + g_loss).detach()

    return step


def _video_step(model: EncoderForecaster):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(inputs, targets):
        opt.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(inputs), targets)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def build(name: str, spec: dict, data: dict[str, np.ndarray], seed: int = 0) -> Peer:
    """The peer of benchmark model ``name``.

    ``data``: ``{"image": float32 NHWC in [-1, 1], "label": int}`` for the classifiers and the
    GAN, ``{"frames": float32 (N, T, S, S, 1) in [0, 1]}`` for the ConvLSTM.
    """
    torch.manual_seed(seed)
    cfg, b = spec["config"], spec["batch_size"]
    if name == "convlstm":
        frames = torch.from_numpy(np.ascontiguousarray(data["frames"].transpose(0, 1, 4, 2, 3)))
        obs = cfg["observed"]
        model = EncoderForecaster(cfg["patch"], cfg["embed"], cfg["hidden"], cfg["future"])
        batches = Batches(frames[:, :obs], frames[:, obs:obs + cfg["future"]], b)
        return Peer(name, model, _video_step(model), batches)
    images = torch.from_numpy(np.ascontiguousarray(data["image"].transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(data["label"].astype(np.int64))
    batches = Batches(images, labels, b)
    if name == "seed_cnn":
        model = SeedCNN()
        return Peer(name, model, _classifier_step(model), batches)
    if name == "resnet":
        model = ResNet(10, cfg["widths"], cfg["blocks"], cfg["dropout"])
        return Peer(name, model, _classifier_step(model, cfg["label_smoothing"]), batches)
    if name == "lstm":
        model = RowLSTM(10, images.shape[-1], cfg["hidden"])
        return Peer(name, model, _classifier_step(model), batches)
    if name == "dcgan":
        g = Generator(cfg["latent_dim"], cfg["width"], cfg["upsample"])
        d = Discriminator(cfg["d_width"], cfg["dropout"])
        g_ema = Generator(cfg["latent_dim"], cfg["width"], cfg["upsample"])
        g_ema.load_state_dict(g.state_dict())
        g_ema.requires_grad_(False)
        model = nn.ModuleDict({"generator": g, "discriminator": d, "generator_ema": g_ema})
        return Peer(name, model, _gan_step(g, d, g_ema, cfg["latent_dim"], cfg["ema_decay"]), batches)
    raise ValueError(f"no PyTorch peer for {name!r}")
