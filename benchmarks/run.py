"""Training throughput of the project's jitted steps against the same models in PyTorch and Keras.

    .venv/bin/python benchmarks/run.py [--models seed_cnn,resnet,lstm,dcgan,convlstm] [--repeats 5] [--quick]

For each model family the project's step is built exactly as the notebooks build it
(``imgmine_jax.train.Trainer`` with the notebook's task and optimiser, batches gathered
on the device from real MNIST / Moving MNIST) and timed through ``Trainer.run_epoch``,
the loop ``train.fit`` runs. The peers (``benchmarks/peers/``: PyTorch eager and Keras 3
on TensorFlow, same layers, same batch size, Adam) train on the same images. Each
framework runs in its own worker process (so that three thread pools never spin against
each other), started one after another; after a warm-up the parent interleaves the timed
repeats -- project, PyTorch, Keras, project, ... -- so that a change in the machine's load
hits all three alike. Each repeat times enough steps to take about ``--seconds`` seconds;
the reported throughput is the median over repeats, and ratios are project / peer of
those medians (the median of the per-repeat ratios is stored too).

Also reported, per model:

* ``compile_seconds``: the project's ``train_step.lower(...).compile()`` (trace, lower,
  XLA compile), done ahead of the first call, which then reuses the executable (and
  ``eval_compile_seconds``, the same for its evaluation step);
  ``first_call_seconds``: every framework's first step (Keras: tracing its
  ``tf.function``; PyTorch: allocation);
* GFLOP/s: XLA's cost analysis of the compiled project step (floating-point operations
  per step; for the LSTM, whose loop XLA counts once, of the same step with the loop
  unrolled) divided by each framework's median step time, against the GFLOP/s of a
  2048x2048 float32 matmul in JAX measured in the same run;
* peak memory: the high-water resident set (``VmHWM``) of each worker process,
  with its baseline after importing the framework and loading the data;
* recompilation: the project's count of compiled step programs after the timed repeats
  must still be one; otherwise the command fails.

Writes ``results/benchmarks.json`` (``--quick``: ``artifacts/benchmarks/benchmarks-quick.json``;
other keys of an existing file, e.g. ``time_to_accuracy``, are kept) and regenerates
``results/README.md``. A peer whose framework is not installed is skipped with a message.
See ``benchmarks/README.md`` for what the numbers mean and their caveats.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers.common import SPECS, merge_into_json, normalize  # noqa: E402  (numpy only)

PEERS = {"pytorch": "benchmarks.peers.torch_models", "keras": "benchmarks.peers.keras_models"}
# Notebook 01 splits a CPU into one JAX device per core (imgmine_jax.parallel.use_cpu_devices),
# which makes its CNNs' steps faster; the LSTM's and the DCGAN's were slower that way.
NOTEBOOK_CPU_DEVICES = {"seed_cnn": 2, "resnet": 2}
DEFAULT_OUT = ROOT / "results" / "benchmarks.json"
QUICK_OUT = ROOT / "artifacts" / "benchmarks" / "benchmarks-quick.json"
NUM_IMAGES = 16384          # MNIST training images the classifiers and the GAN cycle through
NUM_SEQUENCES = 256         # Moving MNIST sequences the ConvLSTM cycles through
MATMUL_N = 2048


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- data

def load_data(names: list[str], quick: bool) -> dict:
    """Real MNIST training images (and Moving MNIST sequences made from them), as numpy."""
    from imgmine_jax import data, moving_mnist

    mnist = data.load("mnist", "train[:4096]" if quick else f"train[:{NUM_IMAGES}]")
    out = {"image": mnist.images, "label": mnist.labels.astype("int32")}
    if "convlstm" in names:
        seqs = moving_mnist.generate(mnist, 64 if quick else NUM_SEQUENCES, seed=0)
        out.update(digits=seqs.digits, positions=seqs.positions, frames_u8=seqs.frames())
    return out


def peer_data(name: str, raw: dict) -> dict:
    """What a PyTorch/Keras script would feed: normalised float images, or rendered frames in [0, 1]."""
    if name == "convlstm":
        return {"frames": (raw["frames_u8"].astype("float32") / 255.0)[..., None]}
    return {"image": normalize(raw["image"]), "label": raw["label"]}


# --------------------------------------------------------------------------- the project's step

class ProjectStep:
    """The notebook's Trainer for one benchmark model; ``run(steps)`` = ``Trainer.run_epoch``."""

    framework = "project"

    def __init__(self, name: str, spec: dict, raw: dict, unrolled: bool = False):
        import dataclasses

        import numpy as np
        from flax import nnx

        from imgmine_jax import data, gan, models, recipes, sequence, train
        from imgmine_jax.models import rnn

        # The notebooks' recipes (imgmine_jax.recipes) at the benchmark's batch size.
        cfg_spec, b = spec["config"], spec["batch_size"]
        self.name, self.batch_size = name, b
        if name == "convlstm":   # the encoder-forecaster ConvLSTM, as the peers define it
            model = rnn.EncoderForecaster(frame_size=cfg_spec["frame_size"], patch=cfg_spec["patch"],
                                          embed=cfg_spec["embed"], hidden=(cfg_spec["hidden"],),
                                          future=cfg_spec["future"], rngs=nnx.Rngs(0))
            task = sequence.NextFrames(cfg_spec["observed"])
            arrays = {"digits": raw["digits"], "positions": raw["positions"]}
            cfg = recipes.VIDEO
        else:
            arrays = {"image": raw["image"], "label": raw["label"]}
            shape = raw["image"].shape[1:]
            if name == "seed_cnn":   # notebook 01's baseline: Adam 1e-3, constant
                model = models.build("seed_cnn", models.classifier_config("seed_cnn", 10, shape))
                cfg = recipes.BASELINE
                task = train.Classification.from_config(10, cfg)
            elif name == "resnet":   # notebook 01's recipe: AdamW one-cycle, label smoothing, shifts
                recipe = recipes.CLASSIFIER
                model = models.build("resnet", models.classifier_config(
                    "resnet", 10, shape, blocks=cfg_spec["blocks"], **recipe.arch_kwargs()))
                cfg = recipe.train_config("mnist")
                task = train.Classification.from_config(10, cfg)
            elif name == "lstm":     # notebook 02's row classifier
                hidden = recipes.ROW_ARCH["hidden"]
                model = rnn.RowClassifier(cell="lstm", hidden=hidden, rngs=nnx.Rngs(0))
                if unrolled:         # same computation, loop unrolled: only for counting FLOPs
                    model.rnn = rnn.RecurrentStack("lstm", shape[1] * shape[2], hidden, unroll=True,
                                                   rngs=nnx.Rngs(0))
                cfg = recipes.ROW_CLASSIFIER
                task = train.Classification.from_config(10, cfg)
            elif name == "dcgan":    # notebook 03's DCGAN
                arch = {k: v for k, v in recipes.GAN_ARCH.items() if k != "embed_dim"}   # unconditional
                model = gan.GAN(**arch, rngs=nnx.Rngs(0))
                task = gan.GANTask(latent_dim=arch["latent_dim"], **recipes.GAN_TASK)
                cfg = recipes.GAN
            else:
                raise ValueError(f"unknown benchmark model {name!r}; expected one of {sorted(SPECS)}")
        cfg = dataclasses.replace(cfg, batch_size=b, seed=0)
        n = len(next(iter(arrays.values())))
        self.trainer = train.build_trainer(model, task, cfg, n // b)   # as train.fit builds it
        self.arrays = self.trainer.dp.replicate(arrays)
        self.batches = data.epoch_batches(train.jax.random.key(0), n, b)
        self.offset = 0
        self.config = {"train_config": {k: v for k, v in vars(cfg).items()}, "task": repr(task),
                       "parameters": models.count_params(model)}
        self._np = np

    def _next(self, steps: int):
        if steps > len(self.batches):
            raise ValueError(f"{self.name}: {steps} steps need {steps * self.batch_size} examples")
        if self.offset + steps > len(self.batches):
            self.offset = 0
        idx = self.batches[self.offset:self.offset + steps]
        self.offset += steps
        return idx

    def lower(self):
        t = self.trainer
        return t.train_step.lower(t.state, self.arrays, t.dp.shard_batch(self._next(1)[0]), t._base_key)

    def run(self, steps: int) -> None:
        self.trainer.run_epoch(self.arrays, self._next(steps))

    def compile_eval(self) -> float:
        """Seconds to trace, lower and compile the evaluation step (one batch of the same size)."""
        t = self.trainer
        idx = self.batches[0]
        t0 = time.perf_counter()
        t.eval_step.lower(t.model_state, self.arrays, t.dp.shard_batch(idx),
                          t.dp.shard_batch(self._np.ones(idx.shape, bool))).compile()
        return time.perf_counter() - t0


def matmul_peak(n: int = MATMUL_N, repeats: int = 10) -> dict:
    """GFLOP/s of an ``n x n`` float32 matmul in JAX (median of ``repeats``, after compiling)."""
    import jax
    import jax.numpy as jnp

    from imgmine_jax.timing import median_seconds

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    s = median_seconds(f, a, b, repeats=repeats, warmup=2)
    return {"n": n, "dtype": "float32", "seconds": s, "gflops": 2 * n ** 3 / s / 1e9}


def flops_per_step(name: str, spec: dict, raw: dict, project: ProjectStep, compiled) -> tuple[float, str]:
    """Floating-point operations of one training step, from XLA's cost analysis."""
    if name == "lstm":
        # XLA counts a while loop's body once, not once per iteration: count the unrolled step.
        unrolled = ProjectStep(name, spec, raw, unrolled=True)
        return (float(_cost(unrolled.lower().cost_analysis())["flops"]),
                "XLA cost analysis of the same step with the recurrence unrolled (lowered HLO)")
    return float(_cost(compiled.cost_analysis())["flops"]), "XLA cost analysis of the compiled step"


def _cost(ca):
    return ca[0] if isinstance(ca, (list, tuple)) else ca


# --------------------------------------------------------------------------- peers

REQUIRES = {"pytorch": ("torch",), "keras": ("keras", "tensorflow")}


def available_peers(wanted: list[str]) -> list[str]:
    """The peers whose framework is installed; a missing one is skipped with a message."""
    import importlib.util

    out = []
    for fw in wanted:
        missing = [m for m in REQUIRES[fw] if importlib.util.find_spec(m) is None]
        if missing:
            log(f"[bench] peer {fw} skipped: {', '.join(missing)} not installed "
                f"(pip install -e \".[bench]\", see benchmarks/README.md)")
        else:
            out.append(fw)
    return out


# --------------------------------------------------------------------------- workers

def _maxrss_mib() -> float:
    """Peak resident set of this process, MiB: ``VmHWM`` of ``/proc/self/status`` on Linux.

    Not ``getrusage(...).ru_maxrss``: on Linux that survives ``execve`` and so starts at the
    resident set the parent had when it forked the worker.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024   # bytes on macOS, KiB elsewhere


def _timed(runner, steps: int) -> float:
    t0 = time.perf_counter()
    inner = runner.run(steps)
    wall = time.perf_counter() - t0
    # Keras returns the seconds of its batches (excluding fit's per-call set-up)
    return inner if getattr(runner, "framework", "") == "keras" else wall


def _reply(doc: dict) -> None:
    sys.stdout.write("@@" + json.dumps(doc) + "\n")
    sys.stdout.flush()


def watch_compilations(fun_name: str = "jit(train_step)") -> list[str]:
    """A list that collects, from now on, every XLA compilation of the program ``fun_name``
    (``Trainer``'s jitted train step), whether compiled or loaded from the persistent cache."""
    import jax

    seen: list[str] = []

    def on_compile(event: str, seconds: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration" and kwargs.get("fun_name") == fun_name:
            seen.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(on_compile)
    return seen


def worker(name: str, framework: str, data_file: str) -> int:
    """One framework training one model in its own process, driven over stdin by :func:`main`.

    A process per framework keeps their thread pools (XLA's, PyTorch's OpenMP, TensorFlow's)
    from competing or spinning against each other, and gives each its own peak memory.
    Replies ``ready`` (first-call timings), then the seconds of each ``run N``, then at
    ``end`` the peak memory (and the project's compilation count).
    """
    import numpy as np

    with np.load(data_file) as f:
        raw = {k: f[k] for k in f.files}
    spec = SPECS[name]
    info = {}
    if framework == "project":
        import jax  # noqa: F401

        import imgmine_jax.train  # noqa: F401
        from imgmine_jax import parallel

        parallel.use_cpu_devices(int(os.environ.get("_BENCH_CPU_DEVICES", "1")))
        info["devices"] = [str(d) for d in jax.devices()]
        info["baseline_mib"] = _maxrss_mib()
        runner = ProjectStep(name, spec, raw)
        info["project_config"] = json.loads(json.dumps(runner.config, default=str))
        t0 = time.perf_counter()
        compiled = runner.lower().compile()
        info["compile_seconds"] = time.perf_counter() - t0
        info["flops_per_step"], info["flops_source"] = flops_per_step(name, spec, raw, runner, compiled)
        del compiled
        repeats = int(os.environ.get("_BENCH_MATMUL_REPEATS", "0"))
        info["matmul_peak"] = matmul_peak(repeats=repeats) if repeats else None
        t0 = time.perf_counter()
        runner.run(1)
        info["first_call_seconds"] = time.perf_counter() - t0
        info["eval_compile_seconds"] = runner.compile_eval()
        traces_after_first = runner.trainer.compilations()
        compiled_while_timed = watch_compilations()
    else:
        import importlib

        mod = importlib.import_module(PEERS[framework])
        pdata = peer_data(name, raw)
        info["version"] = mod.version()
        info["baseline_mib"] = _maxrss_mib()
        runner = mod.build(name, spec, pdata)
        t0 = time.perf_counter()
        runner.run(1)
        info["first_call_seconds"] = time.perf_counter() - t0
    _reply({"ready": True, **info})
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "run":
            _reply({"seconds": _timed(runner, int(cmd[1]))})
        elif cmd[0] == "end":
            out = {"peak_mib": _maxrss_mib()}
            if framework == "project":
                t = runner.trainer
                # What counts is tracing and XLA compilation (or a persistent-cache load) during
                # the timed steps (jit's dispatch cache may hold a second entry for the same
                # executable over several devices, with nothing traced or compiled).
                out["compilations"] = {
                    "train_step_traces": t.compilations("train"),
                    "all_step_programs": t.compilations(), "compiled_while_timed": len(compiled_while_timed),
                    "recompiled": (t.compilations("train") != 1 or t.compilations() != traces_after_first
                                   or len(compiled_while_timed) > 0)}
            if framework == "keras":
                out["last_fit_call_seconds"] = runner.last_call_seconds
            _reply(out)
            return 0
    return 1


class Worker:
    """The parent's handle on a :func:`worker` subprocess."""

    def __init__(self, name: str, framework: str, data_file: Path, env: dict | None = None):
        self.framework = framework
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", name, framework, str(data_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, cwd=ROOT,
            env={**os.environ, **(env or {})})

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        self.proc.wait()
        self.stderr.seek(0)
        tail = [ln for ln in self.stderr.read().splitlines() if ln.strip()][-3:]
        raise RuntimeError(f"{self.framework} worker exited ({self.proc.returncode}): " + " | ".join(tail))

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


# --------------------------------------------------------------------------- one model

def bench_model(name: str, raw: dict, peers: list[str], args, tmp: Path) -> dict:
    import numpy as np

    spec = SPECS[name]
    b = spec["batch_size"]
    cpu_devices = args.cpu_devices or NOTEBOOK_CPU_DEVICES.get(name, 1)
    log(f"[bench] {name}: {spec['title']}, batch {b}, project on {cpu_devices} CPU device(s)")
    result = {"title": spec["title"], "unit": spec["unit"], "batch_size": b, "cpu_devices": cpu_devices,
              "config": json.loads(json.dumps(spec["config"])), "frameworks": {}}
    data_file = tmp / f"{name}.npz"
    np.savez(data_file, **raw_for(name, raw))
    n_items = len(raw["digits"] if name == "convlstm" else raw["image"])
    workers, ready = {}, {}
    try:
        # started one at a time, so that no compile or first call competes with another
        for fw in ["project"] + peers:
            env = None
            if fw == "project":
                # compile cold: the package's persistent compilation cache would turn the
                # measured compile time into a cache load after the first run
                env = {"_BENCH_CPU_DEVICES": str(cpu_devices), "IMGMINE_COMPILATION_CACHE": "0"}
                if args.peak is None:
                    env["_BENCH_MATMUL_REPEATS"] = "3" if args.quick else "10"
            w = Worker(name, fw, data_file, env)
            try:
                ready[fw] = w.read()
                workers[fw] = w
            except RuntimeError as err:
                w.close()
                if fw == "project":
                    raise
                log(f"[bench]   {fw} failed: {err}")
                result["frameworks"][fw] = {"skipped": str(err)}
        if args.peak is None:
            args.peak = ready["project"]["matmul_peak"]
            log(f"[bench] {MATMUL_N}^2 float32 matmul in JAX: {args.peak['gflops']:.0f} GFLOP/s")
        # warm-up: a few steps each, which also sizes the repeats
        steps = {}
        for fw, w in workers.items():
            k = 1 if args.quick else 3
            s = w.ask(f"run {k}")["seconds"] / k
            steps[fw] = max(1 if args.quick else 3, min(n_items // b, math.ceil(args.seconds / max(s, 1e-6))))
        log("[bench]   first call (s): " + ", ".join(f"{k} {v['first_call_seconds']:.2f}" for k, v in ready.items())
            + f"; project compile {ready['project']['compile_seconds']:.2f} s; steps per repeat {steps}")
        per = {fw: [] for fw in workers}
        for r in range(args.repeats):
            for fw, w in workers.items():     # interleaved: project, pytorch, keras, project, ...
                per[fw].append(steps[fw] * b / w.ask(f"run {steps[fw]}")["seconds"])
            log(f"[bench]   repeat {r + 1}/{args.repeats}: "
                + ", ".join(f"{fw} {v[-1]:,.1f}" for fw, v in per.items()))
        final = {fw: w.ask("end") for fw, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()

    proj = ready["project"]
    flops = proj["flops_per_step"]
    peak = args.peak["gflops"]
    for fw, vals in per.items():
        med = statistics.median(vals)
        step_s = b / med
        entry = {"items_per_sec": med, "repeats_items_per_sec": vals, "steps_per_repeat": steps[fw],
                 "step_ms": step_s * 1e3, "first_call_seconds": ready[fw]["first_call_seconds"],
                 "gflops": flops / step_s / 1e9, "fraction_of_matmul_peak": flops / step_s / 1e9 / peak,
                 "memory": {"baseline_mib": round(ready[fw]["baseline_mib"], 1),
                            "peak_mib": round(final[fw]["peak_mib"], 1)}}
        if fw == "project":
            entry.update(compile_seconds=proj["compile_seconds"], eval_compile_seconds=proj["eval_compile_seconds"],
                         compilations=final[fw]["compilations"], devices=proj["devices"])
            result["project_config"] = proj["project_config"]
        else:
            entry["version"] = ready[fw]["version"]
            entry["ratio_project_over_peer"] = statistics.median(per["project"]) / med
            entry["paired_ratio_median"] = statistics.median(p / q for p, q in zip(per["project"], vals))
            if "last_fit_call_seconds" in final[fw]:
                entry["last_fit_call_seconds"] = final[fw]["last_fit_call_seconds"]
        result["frameworks"][fw] = entry
    result["flops_per_step"] = flops
    result["flops_per_item"] = flops / b
    result["flops_source"] = proj["flops_source"]
    peers_run = [fw for fw in per if fw != "project"]
    if peers_run:
        fastest = max(peers_run, key=lambda fw: statistics.median(per[fw]))
        result["fastest_peer"] = fastest
        result["ratio_vs_fastest_peer"] = statistics.median(per["project"]) / statistics.median(per[fastest])
    return result


def raw_for(name: str, raw: dict) -> dict:
    keys = ("digits", "positions", "frames_u8") if name == "convlstm" else ("image", "label")
    return {k: raw[k] for k in keys}


# --------------------------------------------------------------------------- report

def machine_info() -> dict:
    import jax

    from imgmine_jax.runs import processor

    cpu = processor()
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
        isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    except OSError:
        isa = []
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "isa": isa, "system": platform.system(),
            "machine": platform.machine(), "device": str(jax.devices()[0].device_kind),
            "load_average_at_start": load}


def versions() -> dict:
    import flax
    import jax
    import numpy
    import optax

    return {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "numpy": numpy.__version__}


def write_json(out: Path, suite: dict) -> None:
    merge_into_json(out, "suite", suite)


def summary(suite: dict) -> str:
    rows = ["| model | batch | project | PyTorch | Keras | project/PyTorch | project/Keras | GFLOP/s (project) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, m in suite["models"].items():
        if "error" in m:
            rows.append(f"| {name} | {m['batch_size']} | failed: {m['error'][:80]} | | | | | |")
            continue
        fws = m["frameworks"]
        cell = lambda fw: f"{fws[fw]['items_per_sec']:,.0f}" if "items_per_sec" in fws.get(fw, {}) else "—"
        ratio = lambda fw: (f"{fws[fw]['ratio_project_over_peer']:.2f}x"
                            if "ratio_project_over_peer" in fws.get(fw, {}) else "—")
        rows.append(f"| {name} | {m['batch_size']} | {cell('project')} | {cell('pytorch')} | {cell('keras')} | "
                    f"{ratio('pytorch')} | {ratio('keras')} | {fws['project']['gflops']:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(SPECS), help=f"comma-separated, from {','.join(SPECS)}")
    p.add_argument("--repeats", type=int, default=None, help="interleaved timed repeats (default 5; quick 2)")
    p.add_argument("--seconds", type=float, default=None,
                   help="target seconds per timed repeat (default 2; quick 0.3)")
    p.add_argument("--quick", action="store_true", help="small data, two short repeats")
    p.add_argument("--peers", default="pytorch,keras", help="comma-separated peers, or 'none'")
    p.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT.relative_to(ROOT)} "
                   f"(quick: {QUICK_OUT.relative_to(ROOT)})")
    p.add_argument("--no-index", action="store_true", help="do not regenerate results/README.md")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="JAX devices the project splits the CPU into, batches data-parallel over them "
                        "(imgmine_jax.parallel.use_cpu_devices); default: as each model's notebook does "
                        f"({', '.join(f'{k} {v}' for k, v in NOTEBOOK_CPU_DEVICES.items())}, others 1)"),
    p.add_argument("--worker", nargs=3, metavar=("MODEL", "FRAMEWORK", "DATA"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return worker(*args.worker)

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    bad = [n for n in names if n not in SPECS]
    if bad or not names:
        p.error(f"unknown model(s) {bad}; expected a comma-separated subset of {','.join(SPECS)}")
    peers = [] if args.peers.strip() == "none" else [s.strip() for s in args.peers.split(",") if s.strip()]
    if any(fw not in PEERS for fw in peers):
        p.error(f"--peers: expected a subset of {','.join(PEERS)} or 'none'; got {args.peers!r}")
    args.repeats = args.repeats or (2 if args.quick else 5)
    if args.cpu_devices is not None and args.cpu_devices < 1:
        p.error(f"--cpu-devices must be >= 1; got {args.cpu_devices}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1; got {args.repeats}")
    args.seconds = args.seconds or (0.3 if args.quick else 2.0)
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)

    started = dt.datetime.now(dt.timezone.utc)
    found = available_peers(peers)
    log(f"[bench] loading data; peers: {', '.join(found) or 'none'}")
    raw = load_data(names, args.quick)
    args.peak = None   # measured by the first project worker, before any timing
    suite = {"date": started.isoformat(timespec="seconds"),
             "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
             "quick": args.quick, "repeats": args.repeats, "cpu_devices": args.cpu_devices,
             "seconds_per_repeat": args.seconds,
             "machine": machine_info(), "versions": versions(),
             "peers_skipped": [fw for fw in peers if fw not in found],
             "process_model": ("one subprocess per model and framework (the parent only orchestrates); "
                               "repeats interleaved project, pytorch, keras, ..."),
             "memory_method": ("VmHWM (high-water resident set, /proc/self/status) of each worker process: "
                               "baseline after "
                               "importing its framework and loading the benchmark data; peak after "
                               "building, compiling and all timed steps"),
             "models": {}}
    failed, errors = [], []
    with tempfile.TemporaryDirectory(prefix="imgmine-bench-") as tmp:
        for name in names:
            try:
                res = bench_model(name, raw, found, args, Path(tmp))
            except RuntimeError as err:   # the project's worker failed: record it, go on
                log(f"[bench]   {name} FAILED: {err}")
                res = {"title": SPECS[name]["title"], "unit": SPECS[name]["unit"],
                       "batch_size": SPECS[name]["batch_size"], "error": str(err)}
                errors.append(name)
            suite["matmul_peak"] = args.peak
            suite["models"][name] = res
            if "error" not in res and res["frameworks"]["project"]["compilations"]["recompiled"]:
                failed.append(name)
            suite["wall_seconds"] = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
            write_json(out, suite)   # after every model: an interrupted run keeps what it measured
    log("\n" + summary(suite))
    log(f"[bench] wrote {out}")
    if not args.no_index and out.resolve().parent == (ROOT / "results").resolve():
        from imgmine_jax.run import write_index

        log(f"[bench] index: {write_index(out.resolve().parent)}")
    if failed:
        log(f"[bench] FAILED: the project's step recompiled after its first call for {failed}")
    if errors:
        log(f"[bench] FAILED: the project's step did not run for {errors}")
    return 1 if failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
