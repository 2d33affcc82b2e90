"""imgmine_jax: the thin helper package behind the notebooks.

``data`` (TFDS loading, batching), ``models`` (Flax NNX model families), ``train``
(jitted steps and the loop), ``metrics``, ``plots``, ``checkpoint`` (Orbax) and
``run`` (execute notebooks, render ``results/``).
"""
__version__ = "0.1.0"
