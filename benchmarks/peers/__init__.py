"""The project's benchmark models written in other frameworks (PyTorch eager, Keras 3 on TensorFlow).

Each module is imported only when its framework is installed; see ``benchmarks/run.py``.
"""
