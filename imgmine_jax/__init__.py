"""imgmine_jax: the thin helper package behind the notebooks.

``data`` (TFDS loading, batching), ``models`` (Flax NNX model families), ``train``
(jitted steps and the loop), ``metrics``, ``plots``, ``checkpoint`` (Orbax), ``run``
(execute notebooks, render ``results/``), and for notebook 05 ``baselines`` (traditional
models, learning curve, ablations), ``attribution`` (saliency, integrated gradients,
occlusion, deletion curves) and ``robustness`` (FGSM/PGD attacks, corruptions).

Importing the package turns on JAX's persistent compilation cache in
``artifacts/jax_cache`` (``$IMGMINE_ARTIFACTS/jax_cache``), so a re-run notebook, or a
notebook that builds the same model several times, does not compile the same program
twice (measured: the quick profile of notebook 01 runs ~23% faster). An explicit
``$JAX_COMPILATION_CACHE_DIR`` wins; ``IMGMINE_COMPILATION_CACHE=0`` turns it off.

It also adds :data:`XLA_CPU_FLAGS` to ``$XLA_FLAGS`` (read when JAX starts its backend, so
import the package before any JAX computation): they route XLA:CPU's matrix products and
convolutions to XLA's own kernels instead of its YNNPACK fusions, which made the
benchmarks' training steps faster on a 2-core Xeon (SeedCNN 1.21x, ResNet 1.02-1.14x, row
LSTM 1.05-1.07x, DCGAN at batch 256 1.26-1.29x, ConvLSTM 1.24x) but GAN steps at batch 32
slower (``benchmarks/cpu_probes.md``). A value of the same flag already in
``$XLA_FLAGS`` wins; ``IMGMINE_XLA_CPU_FLAGS=0`` keeps XLA's defaults, and
:func:`use_ynnpack_fusions` chooses per notebook (notebook 03 turns the fusions back on).
GPU and TPU backends ignore ``xla_cpu_*`` flags.
"""
import os as _os

# TensorFlow (behind TFDS) writes C++ log lines (oneDNN notices, absl's "All log messages
# before absl::InitializeLog()") to stderr when it is imported; in a notebook they land in the
# first cell's output of every rendered page. Quiet unless the user asked otherwise.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

# Flags of jaxlib 0.10 (pyproject pins jax < 0.11; XLA aborts on a flag it does not know).
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
XLA_CPU_FLAGS = (_YNN_FLAG + "=",)


def _add_xla_cpu_flags() -> None:
    if _os.environ.get("IMGMINE_XLA_CPU_FLAGS") == "0":
        return
    flags = _os.environ.get("XLA_FLAGS", "")
    missing = [f for f in XLA_CPU_FLAGS if f.split("=")[0] not in flags]
    if missing:
        _os.environ["XLA_FLAGS"] = " ".join([flags, *missing]).strip()


def use_ynnpack_fusions(enabled: bool) -> None:
    """Whether XLA:CPU runs matrix products and convolutions in its YNNPACK fusions; call
    before any JAX computation (the flag is read when JAX starts its backend).

    ``True`` is XLA's default; ``False`` is what importing the package sets (:data:`XLA_CPU_FLAGS`).
    Which is faster depends on the program: the benchmarks' training steps at batch 128-256
    ran 1.02-1.29x faster without the fusions, GAN steps at batch 32 1.0-1.19x faster with
    them (``benchmarks/cpu_probes.md``). Replaces any value of the flag in ``$XLA_FLAGS``.

    Raises ``RuntimeError`` when JAX's backend already runs with the other choice (restart
    the kernel and call this first).
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"use_ynnpack_fusions needs True or False; got {enabled!r}")
    kept = [f for f in _os.environ.get("XLA_FLAGS", "").split() if f.split("=")[0] != _YNN_FLAG]
    if _backend_started() and _ynnpack_in_use() != enabled:
        raise RuntimeError(f"use_ynnpack_fusions({enabled}) came after JAX started its backend "
                           f"{'without' if enabled else 'with'} them; call it before any JAX "
                           f"computation (restart the kernel)")
    _os.environ["XLA_FLAGS"] = " ".join(kept + ([] if enabled else [_YNN_FLAG + "="]))


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):   # a JAX without the probe: check the compiled code instead
        return True


def _ynnpack_in_use() -> bool:
    """Whether the running CPU backend fuses a small matrix product with YNNPACK."""
    import jax
    import jax.numpy as jnp

    a, b = jnp.ones((128, 128), device=jax.devices("cpu")[0]), jnp.ones((128, 512), device=jax.devices("cpu")[0])
    return "__ynn_fusion" in jax.jit(lambda a, b: a @ b).lower(a, b).compile().as_text()


def _enable_compilation_cache() -> None:
    if _os.environ.get("JAX_COMPILATION_CACHE_DIR") or _os.environ.get("IMGMINE_COMPILATION_CACHE") == "0":
        return
    import jax

    from imgmine_jax.checkpoint import artifacts_dir

    try:
        cache = artifacts_dir() / "jax_cache"
    except (OSError, ValueError):   # unusable $IMGMINE_ARTIFACTS: no cache; it fails, clearly, when first needed
        return
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


_add_xla_cpu_flags()
_enable_compilation_cache()
