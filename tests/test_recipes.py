"""One source of truth for the recipes: the notebooks' parameters cells, the package and the
benchmarks agree, and a saved classifier is used only by a notebook that expects its recipe."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

from imgmine_jax import checkpoint, classifier, models, recipes, run

ROOT = Path(__file__).resolve().parents[1]


def mismatches(notebook: Path, table: dict) -> list[str]:
    """``name: notebook value != recipe value`` for every parameter of ``table`` that disagrees."""
    defaults = run.notebook_parameters(notebook)
    out = []
    for name, (source, field) in table.items():
        if name not in defaults:
            out.append(f"{name}: not in {notebook.name}'s parameters cell")
        elif defaults[name] != recipes.recipe_value(source, field):
            out.append(f"{name}: notebook {defaults[name]!r} != recipes {recipes.recipe_value(source, field)!r}")
    return out


@pytest.mark.parametrize("stem", sorted(recipes.NOTEBOOK_PARAMETERS))
def test_parameters_cells_match_the_package_recipes(stem):
    assert not mismatches(ROOT / "notebooks" / f"{stem}.ipynb", recipes.NOTEBOOK_PARAMETERS[stem])


def test_a_changed_parameter_is_a_mismatch(tmp_path):
    nb = nbformat.read(ROOT / "notebooks" / "01_cnn_classification.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert re.search(r"^epochs = 10$", cell.source, re.M)
    cell.source = re.sub(r"^epochs = 10$", "epochs = 8", cell.source, flags=re.M)
    changed = tmp_path / "01_cnn_classification.ipynb"
    nbformat.write(nb, changed)
    assert mismatches(changed, recipes.NOTEBOOK_PARAMETERS["01_cnn_classification"]) == [
        "epochs: notebook 8 != recipes 10"]


def _notebook_01_namespace(profile: str) -> dict:
    """Notebook 01's parameters cell and the quick-profile cell after it, run as the notebook runs them."""
    nb = nbformat.read(ROOT / "notebooks" / "01_cnn_classification.ipynb", as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    quick = next(c for c in nb.cells[i + 1:] if c.cell_type == "code")
    assert 'if profile == "quick"' in quick.source
    namespace: dict = {}
    exec(nb.cells[i].source, namespace)
    namespace["profile"] = profile   # as the runner's injected cell does
    exec(quick.source, namespace)
    return namespace


@pytest.mark.parametrize("profile", ["full", "quick"])
def test_notebook_01_trains_the_recipe_classifier_py_trains(profile):
    namespace = _notebook_01_namespace(profile)
    from_notebook = recipes.ClassifierRecipe.from_parameters(namespace)
    assert from_notebook == classifier.expected_recipe("resnet", profile, seed=namespace["seed"])
    for dataset in namespace["datasets"]:
        assert from_notebook.train_config(dataset) == recipes.CLASSIFIER.for_profile(profile).train_config(dataset)
    assert recipes.CLASSIFIER.train_config("fashion_mnist").epochs == 18   # the dataset override applies


def test_benchmark_specs_are_the_notebook_recipes():
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "peers" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    specs = {k: v["config"] for k, v in common.SPECS.items()}
    c = recipes.CLASSIFIER
    assert specs["resnet"] == {"widths": c.widths, "blocks": 1, "dropout": c.dropout,
                               "label_smoothing": c.label_smoothing, "augment_shift": c.augment_shift}
    assert specs["lstm"] == {"hidden": recipes.ROW_ARCH["hidden"]}
    # "convlstm" is the encoder-forecaster every framework builds from the spec itself
    # (notebook 02 has since moved to an autoregressive predictor without a peer version)
    gan_arch = {k: v for k, v in recipes.GAN_ARCH.items() if k != "embed_dim"}
    assert specs["dcgan"] == {**gan_arch, "ema_decay": recipes.GAN_TASK["ema_decay"]}


# --------------------------------------------------------------------------- saved classifiers

def _meta(profile: str, recipe: recipes.ClassifierRecipe) -> dict:
    return json.loads(json.dumps({"info": {"profile": profile, "recipe": recipe.as_dict()}}))


def test_a_full_profile_notebook_refuses_a_quick_or_different_classifier():
    full, quick = recipes.CLASSIFIER, recipes.CLASSIFIER.for_profile("quick")
    assert classifier.why_not_usable(_meta("full", full), profile="full") is None
    assert "'quick' profile" in classifier.why_not_usable(_meta("quick", quick), profile="full")
    other = recipes.ClassifierRecipe(epochs=8)
    assert classifier.why_not_usable(_meta("full", other), profile="full") == \
        "its recipe differs from the full profile's in epochs"
    assert "records no recipe" in classifier.why_not_usable({"info": {"profile": "full"}}, profile="full")
    # a quick notebook takes the quick recipe or the full one
    assert classifier.why_not_usable(_meta("quick", quick), profile="quick") is None
    assert classifier.why_not_usable(_meta("full", full), profile="quick") is None
    assert classifier.why_not_usable(_meta("full", full), profile="full", seed=1) is not None


def test_load_or_train_retrains_a_quick_classifier_for_a_full_notebook(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGMINE_ARTIFACTS", str(tmp_path))
    quick = classifier.expected_recipe("resnet", "quick")
    config = models.classifier_config("resnet", 10, (28, 28, 1), **quick.arch_kwargs())
    classifier.save("mnist", models.build("resnet", config), config, quick, profile="quick", test_accuracy=0.5)
    assert classifier.checkpoint_path("mnist").parent == tmp_path / "models"
    calls, lines = [], []
    monkeypatch.setattr(classifier, "train_classifier", lambda *a, **k: calls.append((a, k)) or ("new", {}))
    assert classifier.load_or_train("mnist", profile="full", log=lines.append) == ("new", {})
    assert calls and calls[0][1]["profile"] == "full"
    assert "trained in the 'quick' profile" in lines[0] and "training notebook 01's recipe (full profile)" in lines[0]
    # the quick profile uses it as it is
    net, meta = classifier.load_or_train("mnist", profile="quick", log=lines.append)
    assert meta["info"]["recipe"] == quick.as_dict() and len(calls) == 1
    assert checkpoint.read_meta(classifier.checkpoint_path("mnist"))["info"]["profile"] == "quick"
