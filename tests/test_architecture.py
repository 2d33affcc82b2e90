"""The package's shape: no import cycles, networks apart from training, and every repository
path that a docstring or the README names exists."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "imgmine_jax"
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in PACKAGE.rglob("*.py"))


def _module_imports(path: Path) -> set[str]:
    """Package modules imported at module level (imports inside functions are deferred on purpose)."""
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else ".".join(name.split(".")[:-node.level] + [node.module])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m in MODULES and m != name}


def test_no_import_cycle_among_the_package_modules():
    graph = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): _module_imports(p)
             for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_each_module_imports_alone_in_a_fresh_interpreter():
    """``python -c "import imgmine_jax.<module>"`` for every module (what an import cycle breaks),
    as many at once as there are cores."""
    from concurrent.futures import ThreadPoolExecutor

    def imports(module):
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                              cwd=ROOT, timeout=600)
        return module, proc.returncode, proc.stderr[-1500:]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        failed = [(m, err) for m, rc, err in pool.map(imports, MODULES) if rc != 0]
    assert not failed, failed


def test_models_hold_networks_only():
    code = ("import sys, imgmine_jax.models; "
            "print(sorted(m for m in sys.modules if m.startswith('imgmine_jax.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = set(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))
    assert not loaded & {"imgmine_jax.train", "imgmine_jax.mining", "imgmine_jax.gan", "imgmine_jax.data"}, loaded


# --------------------------------------------------------------------------- paths named in the docs

_PATH = re.compile(r"(?<![\w/.<$-])((?:imgmine_jax|benchmarks|notebooks|tests|results|\.ci)/[\w./-]*[\w])")


def _named_paths() -> list[tuple[str, str]]:
    """``(where, path)`` for every repository path named in the README or a package docstring."""
    named = [("README.md", m) for m in _PATH.findall((ROOT / "README.md").read_text())]
    for path in sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node) or ""
                named += [(str(path.relative_to(ROOT)), m) for m in _PATH.findall(doc)]
        named += [(str(path.relative_to(ROOT)), m) for line in path.read_text().splitlines()
                  if line.lstrip().startswith("#") for m in _PATH.findall(line)]
    return named


def test_every_repository_path_named_in_docstrings_and_readme_exists():
    named = _named_paths()
    assert len(named) > 10, "the pattern found almost no paths; is it still right?"
    def exists(p: str) -> bool:   # a file or folder, or ``folder/module.attribute``
        return (ROOT / p).exists() or (ROOT / (p.rsplit(".", 1)[0] + ".py")).is_file()

    missing = sorted({(where, p) for where, p in named if not exists(p)})
    assert not missing, f"paths named but not in the repository: {missing}"
