"""The benchmark harness builds the child commands its scripts run.

`--all-backends` runs each backend in a child `python -m benchmarks.<name>`;
a wrong module name there breaks every multi-backend benchmark while the
single-backend runs still work (it happened: 'benchmarks.benchmarks').
"""

import pathlib
import subprocess
import sys

import pytest

from benchmarks import harness

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = sorted(
    p.stem
    for p in (ROOT / "benchmarks").glob("*.py")
    if not p.stem.startswith("_") and p.stem != "harness"
)


def test_module_name_from_spec_file_or_name():
    assert harness.module_name("benchmarks.shrink") == "benchmarks.shrink"
    assert harness.module_name("/x/benchmarks/shrink.py") == "benchmarks.shrink"
    spec = type("Spec", (), {"name": "benchmarks.scale"})()
    assert harness.module_name(spec) == "benchmarks.scale"


def test_child_argv_names_the_module_once():
    argv = harness.child_argv("benchmarks.train_overhead", {"max_wait": 5})
    assert argv == ["benchmarks.train_overhead", "--child", "--max-wait", "5"]


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_module_imports(name):
    # `--help` imports the module and parses nothing else: no backend work.
    out = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage" in out.stdout.lower()
