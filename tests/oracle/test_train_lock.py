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

BASE = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1", "--method", "none"]


def hold(folder):
    """Byte 1 of folder/.lock, exclusive: what a running train (or ingest) holds."""
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 1, os.SEEK_SET)
    return fd


def files(folder):
    """sha256 of every file under folder (RUN/eval/ included), by relative path."""
    out = {}
    for dirpath, dirnames, names in os.walk(folder):
        dirnames.sort()
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
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


def holds_lock(pid, path):
    """True when process pid holds a POSIX lock on the file at path (from /proc/locks: no timing)."""
    try:
        ino = os.stat(path).st_ino
    except FileNotFoundError:
        return False
    with open("/proc/locks") as f:
        for line in f:
            p = line.split()
            k = p.index("POSIX") if "POSIX" in p else -1
            if k >= 0 and p[k + 3] == str(pid) and p[k + 4].split(":")[-1] == str(ino):
                return True
    return False


def test_two_real_trains_on_one_folder(data, tmp_path):
    """A second real train started while the first holds the folder: the first is stopped
    (SIGSTOP) once /proc/locks shows its lock, so the second always meets it."""
    import signal
    import subprocess
    import time
    out = str(tmp_path / "run")
    a = subprocess.Popen([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "50"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not holds_lock(a.pid, os.path.join(out, ".lock")):
            assert a.poll() is None, a.stderr.read()
            assert time.time() - t0 < 120  # a safety net, not the synchronisation
            time.sleep(0.01)
        os.kill(a.pid, signal.SIGSTOP)
        # --force: only the lock stops it
        r = run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "1", "--force"])
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert r.returncode == 1 and len(lines) == 1 and f"pid {a.pid}" in lines[0], r.stderr
        # without --force: the lock, or (once the first wrote options.json) "already holds a run"
        r = run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "1"])
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert r.returncode in (1, 2) and len(lines) == 1, r.stderr
        assert f"pid {a.pid}" in lines[0] or "already holds a run" in lines[0], r.stderr
        # --resume: the lock, or (before the first wrote options.json) "not a run folder"
        r = run([binary("train"), "--resume", out])
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert f"pid {a.pid}" in lines[0] or "not a run folder" in lines[0], r.stderr
    finally:
        os.kill(a.pid, signal.SIGCONT)
        a.kill()
        a.wait()
