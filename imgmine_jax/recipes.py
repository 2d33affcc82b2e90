"""The training recipes the notebooks use, defined once.

A notebook's cell tagged ``parameters`` shows its values as literals (so a reader sees
them and the runner can override them); the package, the benchmarks and the other
notebooks read the same values from here. ``tests/test_recipes.py`` fails when a
notebook's parameters cell and this module disagree (:data:`NOTEBOOK_PARAMETERS` names
which parameter is which recipe value).

* :class:`ClassifierRecipe` / :data:`CLASSIFIER` -- notebook 01's ResNet, which
  notebooks 03 (classifier FID / IS) and 04 (embeddings) load, or train here through
  :mod:`imgmine_jax.classifier` when notebook 01 has not saved one.
* :data:`BASELINE` -- notebook 01's SeedCNN baseline (Adam 1e-3, as in the literature).
* :data:`ROW_CLASSIFIER`, :data:`ARTICLE_LSTM`, :data:`VIDEO` (and their arch/task/baseline) --
  notebook 02's row-by-row LSTM/GRU, the source articles' stacked LSTM, and video predictors.
* :data:`GAN` -- notebook 03's DCGAN networks, task and schedule; :data:`ARTICLE_GAN` the
  source articles' dense GAN beside them.
* :data:`LABEL_NOISE_FOLDS` -- notebook 04's out-of-fold SeedCNNs.
* :data:`TRADITIONAL_TRAIN_SIZES`, :data:`LEARNING_CURVE`, :data:`ABLATIONS` /
  :data:`ABLATION_BUDGET`, :data:`ARTICLE_CNN` -- notebook 05's traditional baselines,
  learning curve, ablations and the source articles' CNN (:data:`ARTICLE_CNNS`: the two more
  that notebook 01 trains).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from imgmine_jax.train import TrainConfig

PROFILES = ("quick", "full")


def _fashion_overrides() -> dict[str, dict[str, Any]]:
    # clothes fill the frame and are mirror-symmetric as classes; they need more epochs
    return {"fashion_mnist": {"augment_shift": 1, "augment_flip": True, "label_smoothing": 0.0, "epochs": 18}}


@dataclasses.dataclass(frozen=True)
class ClassifierRecipe:
    """Notebook 01's classifier: architecture, training configuration, data sizes.

    The field names are the names of notebook 01's parameters.
    """

    model: str = "resnet"
    widths: tuple[int, ...] = (16, 32, 64)
    dropout: float = 0.2
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 3e-3
    schedule: str = "onecycle"
    warmup_epochs: float = 2.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    augment_shift: int = 2
    augment_flip: bool = False
    dataset_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=_fashion_overrides)
    val_size: int = 5000
    train_size: int | None = None
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "dataset_overrides",
                           {k: dict(v) for k, v in dict(self.dataset_overrides).items()})

    @classmethod
    def from_parameters(cls, namespace: Mapping[str, Any]) -> "ClassifierRecipe":
        """The recipe from a notebook's parameters (e.g. ``globals()`` after its parameters cell)."""
        return cls(**{f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace})

    def for_profile(self, profile: str) -> "ClassifierRecipe":
        """This recipe in ``profile``: ``"full"`` as it is; ``"quick"`` one epoch on 2,000 images
        (notebook 01's quick profile, and the smoke runs of notebooks 03 and 04)."""
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}; got {profile!r}")
        if profile == "full":
            return self
        return dataclasses.replace(self, epochs=1, warmup_epochs=0.3, train_size=2000, val_size=500,
                                   dataset_overrides={k: {**v, "epochs": 1} for k, v in self.dataset_overrides.items()})

    def train_config(self, dataset: str) -> TrainConfig:
        """The :class:`~imgmine_jax.train.TrainConfig` for ``dataset`` (its overrides applied)."""
        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                          schedule=self.schedule, warmup_epochs=self.warmup_epochs, weight_decay=self.weight_decay,
                          label_smoothing=self.label_smoothing, augment_shift=self.augment_shift,
                          augment_flip=self.augment_flip, seed=self.seed)
        return dataclasses.replace(cfg, **self.dataset_overrides.get(dataset, {}))

    def arch_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the network beyond the dataset's shape."""
        return {"widths": list(self.widths), "dropout": self.dropout} if self.model == "resnet" else {}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (what a saved classifier records)."""
        doc = dataclasses.asdict(self)
        doc["widths"] = list(self.widths)
        return doc


CLASSIFIER = ClassifierRecipe()

BASELINE = TrainConfig(epochs=10, batch_size=32, learning_rate=1e-3, schedule="constant", warmup_epochs=0.0,
                       weight_decay=0.0)

ROW_CLASSIFIER = TrainConfig(epochs=6, batch_size=128, learning_rate=3e-3, schedule="onecycle", warmup_epochs=1.0,
                             weight_decay=1e-4)
ROW_ARCH = {"hidden": 128, "num_layers": 1}

#: Article C's stacked LSTM (LSTM(50, return_sequences) -> LSTM(50) -> Dense(25) -> Dense(1);
#: Adam, mean squared error, 100 epochs at batch 1), reading MNIST rows in notebook 02 as
#: :class:`~imgmine_jax.models.rnn.RowClassifier` arguments. Its one output regresses the digit's
#: value (``train.LabelRegression``); ``num_classes=10`` with cross-entropy is the smallest fix
#: that makes it a classifier. Two changes to fit the notebook's budget: batch 32 (Keras's
#: default; batch 1 is 55,000 steps an epoch) and a few epochs instead of 100.
ARTICLE_LSTM = TrainConfig(epochs=8, batch_size=32, learning_rate=1e-3, schedule="constant", warmup_epochs=0.0,
                           weight_decay=0.0)
ARTICLE_LSTM_ARCH = {"cell": "lstm", "hidden": 50, "num_layers": 2, "head_hidden": 25}

# Notebook 02's video predictors share one training set and a ~12-minute budget on a 2-core
# CPU: the recurrent model (two seeds) 3 epochs, the convolutional baseline, ~3.5x cheaper
# per sequence, 10 (equal time).
VIDEO = TrainConfig(epochs=3, batch_size=16, learning_rate=3e-3, schedule="onecycle", warmup_epochs=0.3,
                    weight_decay=1e-4, eval_batch_size=50)
VIDEO_ARCH = {"hidden": (32, 32), "cell": "convlstm", "output": "pixels"}
VIDEO_TASK = {"loss_kind": "bce", "sampling_fraction": 0.5}
VIDEO_BASELINE = dataclasses.replace(VIDEO, epochs=10, warmup_epochs=1.0)
VIDEO_BASELINE_ARCH = {"width": 128, "depth": 4}

# The DCGAN's epochs, batch and schedule; its learning rates are the task's lr_g / lr_d.
GAN = TrainConfig(epochs=3, batch_size=32, learning_rate=2e-4, schedule="constant", warmup_epochs=0.0,
                  weight_decay=0.0)
GAN_ARCH = {"latent_dim": 64, "width": 32, "d_width": 64, "upsample": "depth_to_space", "dropout": 0.0,
            "embed_dim": 32}
GAN_TASK = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "real_label": 1.0, "ema_decay": 0.995}

#: Article C's dense GAN (:class:`~imgmine_jax.models.gan.DenseGenerator` /
#: :class:`~imgmine_jax.models.gan.DenseDiscriminator`), trained in notebook 03 as a GAN: the
#: article compiles nothing and never trains its generator through the discriminator, so the
#: repair trains it with :data:`GAN_TASK`'s task and optimiser (one D step, then one G step
#: through D, non-saturating loss) at :data:`GAN`'s batch, without weight averaging (the
#: article samples its generator as trained). Its held-out FID moves little after ten of these
#: 30 epochs (a few seconds each; ``benchmarks/gan_step.md``).
ARTICLE_GAN = dataclasses.replace(GAN, epochs=30)
ARTICLE_GAN_ARCH = {"architecture": "dense", "latent_dim": 100, "hidden": 128}

LABEL_NOISE_FOLDS = TrainConfig(epochs=2, batch_size=32, learning_rate=3e-3, schedule="onecycle", warmup_epochs=0.5,
                                weight_decay=1e-4)


# --------------------------------------------------------------------------- notebook 05
# Notebook 05's budgets are short on purpose: the whole notebook must fit 30 minutes on a
# 2-core CPU. Its parameters cell shows these values; the measured times behind them are in
# the notebook's results (they are re-measured with every run).

#: Training images per traditional model in notebook 05's comparison (None: the whole training
#: part). The lbfgs logistic regression's fit and kNN's prediction grow fastest with the training
#: set; these sizes keep the comparison of both datasets within a few minutes on a 2-core CPU.
TRADITIONAL_TRAIN_SIZES: dict[str, int | None] = {"logistic": 10_000, "linear_svm": 20_000, "knn": 10_000,
                                                  "random_forest": 20_000}

#: The learning curve: training-set sizes (log scale, up to the full 55,000-image training part),
#: the traditional model on the other side, and the ResNet's budget -- ``epochs`` passes over the
#: data but at least ``min_steps`` steps, so that 500 images are not trained for 16 steps.
LEARNING_CURVE: dict[str, Any] = {"sizes": [500, 2000, 10_000, 55_000], "traditional": "logistic",
                                  "features": "hog", "epochs": 1, "min_steps": 300}

#: Notebook 05's ablations of the ResNet recipe: each arm is :data:`CLASSIFIER` with these
#: overrides -- keys of :class:`~imgmine_jax.train.TrainConfig` change the training, the others
#: are arguments of :class:`~imgmine_jax.models.cnn.ResNet`. Every arm trains at the same short
#: budget (:data:`ABLATION_BUDGET`), not the full recipe's ten epochs.
ABLATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_batch_norm": {"batch_norm": False},
    "no_residual": {"residual": False},
    "no_augmentation": {"augment_shift": 0, "augment_flip": False},
    "no_label_smoothing": {"label_smoothing": 0.0},
}
ABLATION_BUDGET: dict[str, Any] = {"epochs": 2, "train_size": 10_000, "seeds": [0, 1], "val_size": 1000}

#: The articles' CNN training (article C): Adam at 1e-3, batch 32, as Keras's defaults; the
#: articles give 5 (C) or 10 (A, E) epochs, notebook 05 trains 1 on the cost of the error.
ARTICLE_CNN = TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, schedule="constant", warmup_epochs=0.0,
                          weight_decay=0.0)

#: The articles' two other CNNs, in notebook 01 on MNIST with :data:`ARTICLE_CNN`'s optimiser: the
#: convolution widths (Dense 64 after them) and the epochs their article gives (A: 10; C: 5, E: 10).
ARTICLE_CNNS: dict[str, dict[str, Any]] = {"a": {"convs": (32, 64), "epochs": 10},
                                           "c": {"convs": (32, 64, 64), "epochs": 5}}


def _fields(prefix: str, cfg: TrainConfig, names: tuple[str, ...]) -> dict[str, tuple[Any, str]]:
    return {prefix + n: (cfg, n) for n in names}


# notebook -> {parameter name: (recipe object, field or key)}: each parameter's value in the
# notebook's parameters cell must equal the recipe's (tests/test_recipes.py).
NOTEBOOK_PARAMETERS: dict[str, dict[str, tuple[Any, str]]] = {
    "01_cnn_classification": {
        **{f.name: (CLASSIFIER, f.name) for f in dataclasses.fields(ClassifierRecipe)},
        "baseline_epochs": (BASELINE, "epochs"), "baseline_learning_rate": (BASELINE, "learning_rate"),
        **{f"article_{k}_epochs": (spec, "epochs") for k, spec in ARTICLE_CNNS.items()},
    },
    "02_rnn_sequence_prediction": {
        **_fields("row_", ROW_CLASSIFIER, ("epochs", "batch_size", "learning_rate", "warmup_epochs", "weight_decay")),
        "row_hidden": (ROW_ARCH, "hidden"), "row_layers": (ROW_ARCH, "num_layers"),
        "article_epochs": (ARTICLE_LSTM, "epochs"), "article_batch_size": (ARTICLE_LSTM, "batch_size"),
        **_fields("video_", VIDEO, ("epochs", "batch_size", "learning_rate", "warmup_epochs")),
        **{f"video_{k}": (VIDEO_ARCH, k) for k in VIDEO_ARCH},
        "video_loss": (VIDEO_TASK, "loss_kind"), "video_sampling": (VIDEO_TASK, "sampling_fraction"),
        "baseline_epochs": (VIDEO_BASELINE, "epochs"),
        **{f"baseline_{k}": (VIDEO_BASELINE_ARCH, k) for k in VIDEO_BASELINE_ARCH},
    },
    "03_gan_generation": {
        "epochs": (GAN, "epochs"), "batch_size": (GAN, "batch_size"), "schedule": (GAN, "schedule"),
        **{k: (GAN_ARCH, k) for k in GAN_ARCH}, **{k: (GAN_TASK, k) for k in GAN_TASK},
        "article_epochs": (ARTICLE_GAN, "epochs"),
    },
    "04_image_mining": {
        "classifier_model": (CLASSIFIER, "model"),
        **_fields("noise_", LABEL_NOISE_FOLDS, ("epochs", "batch_size", "learning_rate")),
    },
    "05_understanding_classifiers": {
        "classifier_model": (CLASSIFIER, "model"),
        "traditional_train_sizes": ({"sizes": TRADITIONAL_TRAIN_SIZES}, "sizes"),
        **{f"curve_{k}": (LEARNING_CURVE, k) for k in ("sizes", "traditional", "features", "epochs", "min_steps")},
        "ablation_arms": ({"arms": list(ABLATIONS)}, "arms"),
        **{f"ablation_{k}": (ABLATION_BUDGET, k) for k in ABLATION_BUDGET},
        "article_epochs": (ARTICLE_CNN, "epochs"),
    },
}


def recipe_value(source: Any, name: str) -> Any:
    """``source[name]`` of a dict, else the attribute; tuples as lists (as a notebook writes them)."""
    value = source[name] if isinstance(source, Mapping) else getattr(source, name)
    return list(value) if isinstance(value, tuple) else value


def ablation(name: str, dataset: str = "mnist", base: ClassifierRecipe = CLASSIFIER,
             epochs: int | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """``(training configuration, ResNet arguments)`` of ablation arm ``name`` on ``dataset``:
    ``base``'s recipe for the dataset with the arm's overrides applied after the dataset's own
    (so "no_augmentation" has no shift on Fashion-MNIST either), at ``epochs`` if given (the
    warm-up scaled with it)."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; expected one of {list(ABLATIONS)}")
    cfg = base.train_config(dataset)
    if epochs is not None:
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"ablation(epochs) must be an integer >= 1 or None; got {epochs!r}")
        cfg = dataclasses.replace(cfg, epochs=epochs, warmup_epochs=cfg.warmup_epochs * epochs / cfg.epochs)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = ABLATIONS[name]
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if k in fields})
    arch = {**base.arch_kwargs(), **{k: v for k, v in overrides.items() if k not in fields}}
    return cfg, arch
