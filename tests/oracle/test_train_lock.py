"""One train at a time on a run folder: `train` locks RUN/.lock as ingest locks its output
(store/st_index.h: a POSIX record lock on byte 1, released by the kernel when the process
ends). The test holds that lock itself, as a running train does, so nothing depends on
timing: a second `train --out`, `--force` or `--resume` is refused at once with one line
naming the folder and the holder's pid, and leaves the run's files untouched."""
import fcntl
import hashlib
import os

import pytest

import train_util as u
from conftest import binary, run

BASE = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1"]


def hold(folder):
    """Byte 1 of folder/.lock, exclusive: what a running train (or ingest) holds."""
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 1, os.SEEK_SET)
    return fd


def files(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lock") / "data")
    u.make_dataset(root, counts={"train": 8, "test": 4})
    return root


def refused(r, folder):
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert folder in lines[0] and "in use by another" in lines[0] and f"pid {os.getpid()}" in lines[0], lines[0]


def test_a_second_train_on_a_running_run_folder_is_refused(data, tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    fd = hold(out)  # a train running there
    try:
        refused(run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "1"]), out)
        assert sorted(os.listdir(out)) == [".lock"]  # nothing written
    finally:
        os.close(fd)
    r = run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "2", "--steps", "2"])
    assert r.returncode == 0, r.stderr  # the lock released: it runs (and stops at step 2 of 4)
    before = files(out)
    fd = hold(out)
    try:
        refused(run([binary("train"), "--resume", out]), out)
        refused(run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "1", "--force"]), out)
        assert files(out) == before
    finally:
        os.close(fd)
    r = run([binary("train"), "--resume", out])
    assert r.returncode == 0, r.stderr
    assert files(out) != before
