"""The XLA:CPU flags the package sets on import take effect, and the documented ways out work."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import imgmine_jax, jax, jax.numpy as jnp, json, os
a, b = jnp.ones((128, 128)), jnp.ones((128, 512))
hlo = jax.jit(lambda a, b: a @ b).lower(a, b).compile().as_text()
print(json.dumps([os.environ.get("XLA_FLAGS", ""), "__ynn_fusion" in hlo]))
"""


def _probe(**env) -> tuple[str, bool]:
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "IMGMINE_XLA_CPU_FLAGS")}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**base, **env, "JAX_PLATFORMS": "cpu"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    flags, ynn = json.loads(out.stdout.strip().splitlines()[-1])
    return flags, ynn


@pytest.mark.parametrize("env, flags, ynn", [
    ({}, "--xla_cpu_experimental_ynn_fusion_type=", False),                      # the package's default
    ({"IMGMINE_XLA_CPU_FLAGS": "0"}, "", True),                                  # XLA's own default
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"}, "--xla_cpu_experimental_ynn_fusion_type=dot", True),
    ({"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"},
     "--xla_cpu_enable_fast_math=false --xla_cpu_experimental_ynn_fusion_type=", False),
])
def test_import_routes_cpu_dots_away_from_ynnpack_unless_told_otherwise(env, flags, ynn):
    assert _probe(**env) == (flags, ynn)


_CHOICE = """
import imgmine_jax, jax, jax.numpy as jnp, json, os
imgmine_jax.use_ynnpack_fusions({choice})
a, b = jnp.ones((128, 128)), jnp.ones((128, 512))
hlo = jax.jit(lambda a, b: a @ b).lower(a, b).compile().as_text()
imgmine_jax.use_ynnpack_fusions({choice})          # the same choice again: nothing to change
try:
    imgmine_jax.use_ynnpack_fusions(not {choice})  # the other one, once the backend runs: refused
    refused = ""
except RuntimeError as err:
    refused = str(err)
print(json.dumps([os.environ.get("XLA_FLAGS", ""), "__ynn_fusion" in hlo, refused]))
"""


@pytest.mark.parametrize("choice, env, flags", [
    (True, {}, ""),
    (True, {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false --xla_cpu_experimental_ynn_fusion_type=dot"},
     "--xla_cpu_enable_fast_math=false"),
    (False, {"IMGMINE_XLA_CPU_FLAGS": "0"}, "--xla_cpu_experimental_ynn_fusion_type="),
])
def test_a_notebook_can_choose_ynnpack_fusions_before_jax_starts(choice, env, flags):
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "IMGMINE_XLA_CPU_FLAGS")}
    out = subprocess.run([sys.executable, "-c", _CHOICE.format(choice=choice)],
                         env={**base, **env, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got_flags, ynn, refused = json.loads(out.stdout.strip().splitlines()[-1])
    assert (got_flags, ynn) == (flags, choice)
    assert f"use_ynnpack_fusions({not choice}) came after JAX started" in refused
    assert "restart the kernel" in refused


def test_use_ynnpack_fusions_rejects_a_non_boolean():
    import imgmine_jax

    with pytest.raises(ValueError, match="True or False; got 'yes'"):
        imgmine_jax.use_ynnpack_fusions("yes")
