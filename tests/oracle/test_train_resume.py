"""`train --resume`: a run stopped after k steps (mid-epoch and at an epoch
boundary) and resumed equals the uninterrupted run exactly on the CPU (same
thread count): same metrics lines, same checkpoint tensors, same best epoch.
The loader's thread count does not matter (its draws are made up front)."""
import json
import os

import h5py
import numpy as np
import pytest

import train_util as u
from conftest import binary, run

BASE = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1",
        "--epochs", "3", "--seed", "7"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("rs") / "data")
    u.make_dataset(root, counts={"train": 14, "val": 5, "test": 6})
    return root


def metrics(run_dir):
    out = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            j.pop("seconds", None)
            out.append(j)
    return out


def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
    return out, attrs


def assert_same_ckpt(a, b):
    ta, aa = tensors(a)
    tb, ab = tensors(b)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    for k in ("epoch", "step", "rng_state", "best_epoch", "best_val", "best_test"):
        assert aa.get(k) == ab.get(k), k


@pytest.mark.parametrize("method,extra", [("c2kd", []), ("none", ["--schedule", "const"])])
def test_resume_equals_uninterrupted(data, tmp_path, method, extra):
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    args = ["--data", data, "--method", method, *extra]
    r = run([binary("train"), *BASE, *args, "--out", full])
    assert r.returncode == 0, r.stderr
    # 3 steps per epoch: stop mid-epoch 1 (step 2), then at the end of epoch 2 (step 6), then finish
    r = run([binary("train"), *BASE, *args, "--out", part, "--steps", "2"])
    assert r.returncode == 0, r.stderr
    assert "stopped at step 2" in r.stdout
    with h5py.File(os.path.join(part, "last.h5"), "r") as f:
        assert f.attrs["step"] == 2 and f.attrs["epoch"] == 0
    r = run([binary("train"), "--resume", part, "--steps", "6", "--loader-threads", "3"])
    assert r.returncode == 0, r.stderr
    r = run([binary("train"), "--resume", part, "--threads", "1"])
    assert r.returncode == 0, r.stderr
    mf, mp = metrics(full), metrics(part)
    assert len(mf) == 3 * 3 + 3
    assert mf == mp
    assert_same_ckpt(os.path.join(full, "last.h5"), os.path.join(part, "last.h5"))
    assert_same_ckpt(os.path.join(full, "best.h5"), os.path.join(part, "best.h5"))
    rf = json.load(open(os.path.join(full, "result.json")))
    rp = json.load(open(os.path.join(part, "result.json")))
    rf.pop("plot"), rp.pop("plot")
    assert rf == rp and rf["complete"]


def test_resume_of_killed_run_drops_later_log_lines(data, tmp_path):
    """A log with lines past the checkpoint (a crash after the last save) is cut back on resume."""
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    r = run([binary("train"), *BASE, "--data", data, "--out", full])
    assert r.returncode == 0, r.stderr
    r = run([binary("train"), *BASE, "--data", data, "--out", part, "--steps", "4"])
    assert r.returncode == 0, r.stderr
    with open(os.path.join(part, "metrics.jsonl"), "a") as f:
        f.write('{"type":"step","step":5,"epoch":2,"loss":123}\n{"type":"step","st')  # torn line
    r = run([binary("train"), "--resume", part])
    assert r.returncode == 0, r.stderr
    assert metrics(full) == metrics(part)


def test_resume_refuses_changed_options(data, tmp_path):
    part = str(tmp_path / "part")
    r = run([binary("train"), *BASE, "--data", data, "--out", part, "--steps", "1"])
    assert r.returncode == 0, r.stderr
    r = run([binary("train"), "--resume", part, "--lr", "0.5"])
    assert r.returncode == 2 and "--lr" in r.stderr
    r = run([binary("train"), "--resume", str(tmp_path / "nothing")])
    assert r.returncode == 1 and "not a run folder" in r.stderr
