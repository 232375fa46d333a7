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


# Every module's `python -m benchmarks.<name> --help`, run in ONE child
# process (a fresh Python and backend import per module cost seconds each):
# `runpy` runs each module as `__main__` with `--help` in `sys.argv`, as
# `-m` does, and the child reports each exit code, stdout and error.
_HELP_ALL = r"""
import contextlib, io, json, runpy, sys, traceback
report = {}
for name in json.loads(sys.argv[1]):
    out = io.StringIO()
    code, err = None, ""
    sys.argv = [name, "--help"]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module(f"benchmarks.{name}", run_name="__main__",
                             alter_sys=True)
    except SystemExit as e:
        code = e.code
    except BaseException:
        err = traceback.format_exc()
    else:
        code = 0
    report[name] = dict(code=code, stdout=out.getvalue(), stderr=err)
print("REPORT" + json.dumps(report))
"""


@pytest.fixture(scope="module")
def help_outputs():
    """name -> {code, stdout, stderr} of `--help` for every module."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", _HELP_ALL, json.dumps(MODULES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("REPORT")]
    assert out.returncode == 0 and lines, out.stderr[-4000:]
    return json.loads(lines[-1][len("REPORT") :])


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_module_imports(name, help_outputs):
    # `--help` imports the module and parses nothing else: no backend work.
    out = help_outputs[name]
    assert out["code"] in (0, None), out["stderr"][-2000:]
    assert not out["stderr"], out["stderr"][-2000:]
    assert "usage" in out["stdout"].lower()
