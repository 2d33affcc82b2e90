"""Throwaway notebooks for the runner's tests: a ``parameters`` cell and code cells."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """Write a notebook whose first cell (tagged ``parameters``) is ``parameters``, then ``cells``."""
    params = new_code_cell(parameters, metadata={"tags": ["parameters"]})
    nb = new_notebook(cells=[params, *(new_code_cell(body) for body in cells)], metadata={"kernelspec": KERNELSPEC})
    nbformat.write(nb, path)
    return path
