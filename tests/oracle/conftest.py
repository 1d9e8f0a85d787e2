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
