"""The benchmark suite: its quick mode writes a well-formed report, and the results index renders it.

Fast by design (one small model, no peers, one short repeat); the full suite is
``benchmarks/run.py`` and is not run by the tests.
"""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_suite_writes_a_well_formed_report(tmp_path):
    out = tmp_path / "benchmarks.json"
    out.write_text(json.dumps({"time_to_accuracy": {"kept": True}}))   # other keys survive
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--models", "seed_cnn",
                           "--peers", "none", "--repeats", "1", "--seconds", "0.05", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["time_to_accuracy"] == {"kept": True}
    suite = doc["suite"]
    assert suite["quick"] is True and suite["repeats"] == 1
    assert suite["matmul_peak"]["gflops"] > 0
    model = suite["models"]["seed_cnn"]
    project = model["frameworks"]["project"]
    assert math.isfinite(project["items_per_sec"]) and project["items_per_sec"] > 0
    assert len(project["repeats_items_per_sec"]) == 1
    assert project["compile_seconds"] > 0 and project["first_call_seconds"] > 0
    assert project["eval_compile_seconds"] > 0
    assert project["compilations"]["recompiled"] is False
    assert project["compilations"]["train_step_traces"] == 1
    assert project["compilations"]["compiled_while_timed"] == 0
    assert model["cpu_devices"] == 2 and len(project["devices"]) == 2   # as notebook 01 runs SeedCNN
    assert model["flops_per_item"] > 1e6            # SeedCNN: ~16 MFLOP per image and step
    assert 0 < project["gflops"] and 0 < project["fraction_of_matmul_peak"]
    assert 0 < project["memory"]["baseline_mib"] <= project["memory"]["peak_mib"]
    assert "pytorch" not in model["frameworks"] and "keras" not in model["frameworks"]


def test_missing_peer_is_skipped_with_a_message(capsys, monkeypatch):
    bench = _load("bench_run", ROOT / "benchmarks" / "run.py")
    monkeypatch.setitem(bench.REQUIRES, "pytorch", ("no_such_framework_xyz",))
    assert bench.available_peers(["pytorch"]) == []
    assert "peer pytorch skipped: no_such_framework_xyz not installed" in capsys.readouterr().out


def test_write_index_renders_the_benchmark_table(tmp_path):
    from imgmine_jax.run import write_index

    fw = lambda ips, **kw: {"items_per_sec": ips, "memory": {"peak_mib": 500.0}, **kw}
    doc = {
        "suite": {
            "date": "2026-01-01T00:00:00+00:00", "quick": False, "repeats": 5,
            "machine": {"cpu": "Test CPU", "logical_cpus": 2}, "matmul_peak": {"gflops": 100.0},
            "models": {
                "seed_cnn": {"title": "SeedCNN", "unit": "images", "batch_size": 128, "frameworks": {
                    "project": fw(4000.0, compile_seconds=2.5, eval_compile_seconds=1.0, gflops=64.0,
                                  fraction_of_matmul_peak=0.64),
                    "pytorch": fw(2000.0, ratio_project_over_peer=2.0),
                    "keras": fw(8000.0, ratio_project_over_peer=0.5)}},
                "dcgan": {"title": "DCGAN", "unit": "images", "batch_size": 256, "error": "worker exited"},
            }},
        "time_to_accuracy": {
            "date": "2026-01-01T00:00:00+00:00", "target_test_accuracy": 0.99,
            "project": {"epoch_budget": 1, "epochs": [{}], "seconds_to_target": 60.0,
                        "final_test_accuracy": 0.9912, "train_seconds": 60.0},
            "keras": {"epochs": [{}] * 10, "seconds_to_target": 45.0, "final_test_accuracy": 0.9905,
                      "train_seconds": 150.0}},
    }
    (tmp_path / "benchmarks.json").write_text(json.dumps(doc))
    text = write_index(tmp_path).read_text()
    assert "## Benchmarks" in text
    assert ("| SeedCNN (images/s) | 128 | 4,000 | 2,000 | 8,000 | 2.00x | 0.50x | 2.5 / 1.0 | 64.0 (64%) "
            "| 500 / 500 / 500 |") in text
    assert "| dcgan | 256 | failed |" in text
    assert "| project ResNet, 1-epoch one-cycle budget | 1 | 60 s | 99.12% | 60 |" in text
    assert "| seed Keras script (SeedCNN, Adam, batch 32) | 10 | 45 s | 99.05% | 150 |" in text


def test_write_index_without_benchmarks_has_no_section(tmp_path):
    from imgmine_jax.run import write_index

    assert "## Benchmarks" not in write_index(tmp_path).read_text()
