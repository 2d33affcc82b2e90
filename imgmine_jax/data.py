"""Image datasets from TensorFlow Datasets as in-memory uint8 arrays, and batching helpers.

Data flows one way: TFDS -> numpy uint8 (cached per process) -> device arrays ->
jitted step. Images stay uint8 until a jitted step gathers a batch and calls
:func:`normalize`, so a whole dataset lives on the device at a quarter of its
float32 size and no host->device copy happens inside the training loop.

Where the data comes from: TFDS's own ``TFDS_DATA_DIR`` environment variable or a
``data_dir`` argument; with neither, TFDS's default (``~/tensorflow_datasets``).
A dataset that is not prepared there is downloaded when the network is reachable;
offline, :func:`load` fails at once with a message saying how to provide it.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import socket
import threading

import jax
import jax.numpy as jnp
import numpy as np

from imgmine_jax import validate

#: Images are mapped from [0, 255] to [-1, 1]: zero-centred for the classifiers,
#: and the range of a tanh generator for the GAN.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 127.5


class DatasetError(ValueError):
    """A dataset or split that cannot be loaded, with the reason and the remedy."""


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """A split of an image classification dataset, held in memory.

    ``images`` is uint8 ``(N, H, W, C)``; ``labels`` is int32 ``(N,)``.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self):
        where = f"ImageDataset {self.name}/{self.split}"
        if not isinstance(self.images, np.ndarray) or self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DatasetError(f"{where}: images must be uint8 (N, H, W, C); got "
                               f"{getattr(self.images, 'dtype', type(self.images).__name__)} "
                               f"{getattr(self.images, 'shape', '')}")
        if not isinstance(self.labels, np.ndarray) or self.labels.shape != (len(self.images),):
            raise DatasetError(f"{where}: expected {len(self.images)} labels; "
                               f"got shape {getattr(self.labels, 'shape', type(self.labels).__name__)}")
        if not isinstance(self.class_names, tuple) or not self.class_names:
            raise DatasetError(f"{where}: class_names must be a non-empty tuple of names; got {self.class_names!r}")
        try:
            validate.labels(self.labels, f"{where}: labels", num_classes=len(self.class_names))
        except (TypeError, ValueError) as err:
            raise DatasetError(str(err)) from None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def take(self, indices) -> "ImageDataset":
        """A new dataset with the examples at ``indices`` (an int array or a slice)."""
        return dataclasses.replace(self, images=self.images[indices], labels=self.labels[indices])

    def head(self, n: int | None) -> "ImageDataset":
        """The first ``n`` examples (all when ``n`` is None); used by the quick profile."""
        if n is None:
            return self
        if not validate.is_int(n) or n <= 0:
            raise DatasetError(f"head(n) expects a positive integer or None; got {n!r}")
        return self.take(slice(0, min(int(n), len(self))))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``{"image", "label"}`` dict that the training loop consumes."""
        return {"image": self.images, "label": self.labels}


def _network_reachable(host: str = "storage.googleapis.com", port: int = 443,
                       timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` succeeds within ``timeout`` seconds.

    Name resolution ignores socket timeouts, so the probe runs in a daemon thread
    and is abandoned when it takes too long.
    """
    result: list[bool] = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result and result[0])


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> str | None:
    """``data_dir`` if given, else ``$TFDS_DATA_DIR`` if set, else None (TFDS's default)."""
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.environ.get("TFDS_DATA_DIR") or None


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, split: str, data_dir: str | None, download: bool | None) -> ImageDataset:
    from imgmine_jax.logs import quiet_native_startup

    with quiet_native_startup():   # TensorFlow's import-time C++ notices stay out of notebooks
        import tensorflow  # noqa: F401  (TFDS imports it lazily; its notices come from this import)
        import tensorflow_datasets as tfds  # heavy: imported only when data is first needed

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # DatasetNotFoundError and friends
        raise DatasetError(f"unknown TFDS dataset {name!r}: {err.__class__.__name__}. Expected an image "
                           f"classification dataset name such as 'mnist' or 'fashion_mnist'.") from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise DatasetError(f"dataset {name!r} has features {sorted(features.keys())}; expected an image "
                           f"classification dataset with 'image' and 'label' features")
    image_shape = features["image"].shape
    if None in image_shape:
        raise DatasetError(f"dataset {name!r} has images of variable shape {image_shape}; "
                           f"expected fixed-size images")
    splits = sorted(builder.info.splits.keys())
    base_split = split.split("[")[0]
    if splits and base_split not in splits:
        raise DatasetError(f"dataset {name!r} has no split {split!r}; available splits: {splits}")
    if not builder.is_prepared():
        where = builder.data_dir
        if download is None:
            download = _network_reachable()
        if not download:
            raise DatasetError(
                f"dataset {name!r} is not prepared in {where} and cannot be downloaded (offline). "
                f"Either run once with internet access (TFDS downloads it by itself), or point the "
                f"TFDS_DATA_DIR environment variable (or data_dir=) at a directory that holds a "
                f"prepared copy of {name!r}.")
        builder.download_and_prepare()
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
    images = np.ascontiguousarray(data["image"], dtype=np.uint8)
    labels = np.asarray(data["label"], dtype=np.int32)
    names = tuple(features["label"].names)
    return ImageDataset(name=name, split=split, images=images, labels=labels, class_names=names)


def load(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None,
         download: bool | None = None) -> ImageDataset:
    """Load one split of a TFDS image classification dataset into memory.

    Args:
      name: TFDS name, e.g. ``"mnist"`` or ``"fashion_mnist"``.
      split: ``"train"``, ``"test"`` or any TFDS split expression (``"train[:10%]"``).
      data_dir: where prepared TFDS data lives; defaults to ``$TFDS_DATA_DIR``.
      download: prepare a missing dataset by downloading it. ``None`` (default)
        downloads only when the network is reachable, so offline runs fail fast.

    The result is cached per process: loading the same split twice costs nothing.
    """
    if not isinstance(name, str) or not name:
        raise DatasetError(f"dataset name must be a non-empty string; got {name!r}")
    try:
        validate.dataset_name(name, "dataset name")
    except (TypeError, ValueError) as err:
        raise DatasetError(str(err)) from None
    if not isinstance(split, str) or not split:
        raise DatasetError(f"split must be a non-empty string such as 'train' or 'test'; got {split!r}")
    if download is not None and not isinstance(download, bool):
        raise DatasetError(f"download must be True, False or None; got {download!r}")
    return _load_cached(name, split, resolve_data_dir(data_dir), download)


def train_val_split(dataset: ImageDataset, val_size: int, seed: int = 0
                    ) -> tuple[ImageDataset, ImageDataset]:
    """Split off ``val_size`` examples at random (deterministic in ``seed``).

    Returns ``(train, val)``: disjoint, together exactly ``dataset``.
    """
    if not isinstance(dataset, ImageDataset):
        raise DatasetError(f"train_val_split(dataset) must be an ImageDataset (from data.load); got "
                           f"{type(dataset).__name__}")
    validate.integer(seed, "train_val_split(seed)")
    n = len(dataset)
    if not validate.is_int(val_size) or not 0 < val_size < n:
        raise DatasetError(f"val_size must be an integer in [1, {n - 1}] for {dataset.name}/"
                           f"{dataset.split} ({n} examples); got {val_size!r}")
    order = np.asarray(jax.random.permutation(jax.random.key(seed), n))
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    return (dataclasses.replace(dataset.take(train_idx), split=f"{dataset.split}[train part]"),
            dataclasses.replace(dataset.take(val_idx), split=f"{dataset.split}[val part]"))


def normalize(images: jax.Array) -> jax.Array:
    """uint8 images in [0, 255] -> float32 in [-1, 1]."""
    return (images.astype(jnp.float32) - PIXEL_MEAN) / PIXEL_SCALE


def denormalize(images: jax.Array) -> jax.Array:
    """Inverse of :func:`normalize`, as float in [0, 1] for display."""
    return jnp.clip((images * PIXEL_SCALE + PIXEL_MEAN) / 255.0, 0.0, 1.0)


def normalize_unit(images: jax.Array) -> jax.Array:
    """Float pixels in [0, 1] -> the model's inputs: :func:`normalize` of ``255 * images``.

    Attacks and corruptions (:mod:`imgmine_jax.robustness`) perturb and clip images on this
    [0, 1] scale, where an epsilon is a fraction of the pixel range; this is the one map from
    there into the classifiers' input space.
    """
    return normalize(images * 255.0)


def to_unit(images: np.ndarray) -> np.ndarray:
    """Pixel images as float32 on [0, 1]: uint8 divided by 255, floats (already on [0, 1]) as they are."""
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)


def from_unit(images: np.ndarray, dtype) -> np.ndarray:
    """Float pixels on [0, 1] back to ``dtype``: uint8 rounded to the nearest level, floats as float32."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    return np.rint(images * 255.0).astype(np.uint8) if np.dtype(dtype) == np.uint8 else images


def epoch_batches(key: jax.Array, num_examples: int, batch_size: int
                  ) -> np.ndarray:
    """Shuffled batch indices for one training epoch: ``(num_examples // batch_size, batch_size)``.

    Every example appears at most once. The last ``num_examples % batch_size``
    examples of the permutation are dropped, so every step has the same shape and
    the step compiles once; they are different examples in every epoch.
    """
    validate.integer(num_examples, "epoch_batches(num_examples)", min=1)
    if not validate.is_int(batch_size) or batch_size <= 0 or batch_size > num_examples:
        raise DatasetError(f"batch_size must be in [1, {num_examples}] (the number of training "
                           f"examples); got {batch_size}")
    steps = num_examples // batch_size
    order = np.asarray(jax.random.permutation(key, num_examples))
    return order[: steps * batch_size].reshape(steps, batch_size)


def eval_batches(num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All examples in order, in batches of one shape: ``(indices, mask)``, each ``(steps, batch)``.

    The last batch is padded with index 0 and ``mask`` is False there, so evaluation
    sees every example exactly once and still compiles only one step.
    """
    validate.integer(num_examples, "eval_batches(num_examples)", min=0)
    if not validate.is_int(batch_size) or batch_size <= 0:
        raise DatasetError(f"batch_size must be a positive integer; got {batch_size!r}")
    steps = -(-num_examples // batch_size)
    flat = np.arange(steps * batch_size)
    mask = flat < num_examples
    return np.where(mask, flat, 0).reshape(steps, batch_size), mask.reshape(steps, batch_size)


def to_device(arrays: dict[str, np.ndarray], sharding=None) -> dict[str, jax.Array]:
    """Put a dict of arrays on the device once (replicated when ``sharding`` is given)."""
    return {k: jax.device_put(v, sharding) for k, v in arrays.items()}
