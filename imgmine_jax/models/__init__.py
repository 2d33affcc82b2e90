"""Model families: one module each.

``REGISTRY`` maps the names used in notebook parameters and checkpoints to
constructors; it is also the only set of classes a checkpoint may name.
"""
from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from imgmine_jax import validate
from imgmine_jax.models.cnn import ArticleCNN, ResNet, SeedCNN
from imgmine_jax.models.gan import GAN

REGISTRY = {"seed_cnn": SeedCNN, "resnet": ResNet, "dcgan": GAN, "article_cnn": ArticleCNN}
CLASSIFIERS = ("resnet", "seed_cnn")   # the image classifiers among them


def classifier_config(name: str, num_classes: int, image_shape: tuple[int, int, int],
                      **kwargs: Any) -> dict[str, Any]:
    """The constructor arguments of classifier ``name`` for a dataset (what checkpoints store)."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(CLASSIFIERS)}")
    validate.classifier_config_call(num_classes, image_shape)
    h, w, c = image_shape
    if h != w:
        raise ValueError(f"{name} expects square images; got image shape {image_shape}")
    return {"num_classes": int(num_classes), "in_channels": int(c), "image_size": int(h), **kwargs}


def build(name: str, config: dict[str, Any], seed: int = 0) -> nnx.Module:
    """``REGISTRY[name](**config)`` with parameters initialised from ``seed``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(REGISTRY)}")
    validate.build_call(REGISTRY[name], name, config, seed)
    return REGISTRY[name](**config, rngs=nnx.Rngs(seed))


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


__all__ = ["ArticleCNN", "GAN", "REGISTRY", "ResNet", "SeedCNN", "build", "classifier_config", "count_params"]
