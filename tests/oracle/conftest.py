"""Shared fixtures of the oracle tests (independent implementations: ffmpeg, scipy, h5py, torch)."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("C2KD_BIN", os.path.join(ROOT, "build", "bin"))


def binary(name):
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not built (run make)")
    return path


def run(args, check=False, **kw):
    """Runs a command, capturing text output."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check, **kw)


def ffmpeg(*args):
    """Runs the ffmpeg program quietly; raises on failure."""
    r = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(map(str, args))}: {r.stderr}")
    return r


@pytest.fixture
def bin_path():
    return binary


@pytest.fixture(scope="session")
def have_ffmpeg():
    assert shutil.which("ffmpeg"), "the ffmpeg program is needed by the oracle tests"
    return True


# ---------------------------------------------------------------- other OpenBLAS kernel sets

# The representative subset that `make test` runs again under 2 OpenBLAS kernel sets other than
# the machine's own (Makefile: test-coretypes; docs/TESTING.md): every backend op (each GEMM
# shape of the convolutions and linear layers), a step proof of every method including the
# mixed ResNet-18/50 pairs (the longest reductions), data-parallel c2kd, and reproduce end to end.
# `make test-cpus` runs every numeric test under every kernel set.
CORETYPE_SUBSET = (
    "test_backend_ops.py::",
    "test_train_step.py::test_steps_match_torch[method=none-student=visual]",
    "test_train_step.py::test_steps_match_torch[method=nkd-student=audio]",
    "test_train_step.py::test_steps_match_torch[method=pretrain-student=visual-steps=3]",
    "test_train_step.py::test_steps_match_torch[method=kd-student=visual-student_depth=50-teacher_depth=18-width=4]",
    "test_train_step.py::test_steps_match_torch[method=c2kd-student=audio-student_depth=18-teacher_depth=50-width=4]",
    "test_train_step.py::test_steps_match_torch[method=shake-student=audio-student_depth=50-teacher_depth=18-width=4-steps=3]",
    "test_train_step.py::test_steps_match_torch[method=review-student=visual-student_depth=18-teacher_depth=50-width=4-steps=3]",
    "test_train_dist.py::test_ddp_steps_match_torch[c2kd]",
    "test_reproduce.py::",
)


def pytest_addoption(parser):
    parser.addoption("--coretype-subset", action="store_true",
                     help="only the representative subset of the numeric tests (conftest.CORETYPE_SUBSET)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--coretype-subset"):
        return
    keep, drop = [], []
    for it in items:
        (keep if it.nodeid.rsplit("/", 1)[-1].startswith(CORETYPE_SUBSET) else drop).append(it)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
