"""Project hygiene a user relies on: one set of pins, and no machine-specific paths."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_mirrors_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    conda = set(re.findall(r'^\s+- "([^"]+)"$', (ROOT / "environment.yml").read_text(), re.M)) - {"-e ."}
    assert '"-e ."' in (ROOT / "environment.yml").read_text(), "environment.yml must install the package"
    assert pins == conda, f"only in pyproject: {pins - conda}; only in environment.yml: {conda - pins}"
    assert all("<" in p and ">=" in p for p in pins), "every pin has a lower and an upper bound"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest'
    assert command in readme and command in ci


def test_package_has_no_machine_paths():
    for path in (ROOT / "imgmine_jax").rglob("*.py"):
        text = path.read_text()
        assert "shared/datasets" not in text, path
        assert not re.search(r"['\"]/(?:work|tmp|root|home)/", text), f"absolute machine path in {path}"


def test_notebooks_are_valid_nbformat_with_unique_cell_ids():
    """A cell added without an id is a validation warning today and an error in later nbformat."""
    import json

    import nbformat

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        raw = json.loads(path.read_text())     # as stored: nbformat.read fills missing ids in silently
        nbformat.validate(nbformat.from_dict(raw))
        ids = [cell.get("id") for cell in raw["cells"]]
        assert None not in ids, f"{path.name}: cell {ids.index(None)} has no id"
        assert len(set(ids)) == len(ids), f"{path.name}: repeated cell ids"
