"""`train --resume`: a run stopped after k steps (mid-epoch and at an epoch
boundary) and resumed equals the uninterrupted run exactly on the CPU (same
thread count): same metrics lines, same checkpoint tensors, same best epoch.
The loader's thread count does not matter (its draws are made up front)."""
import json
import os
import random
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

import train_util as u
from conftest import binary, run

BASE = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1",
        "--epochs", "3", "--seed", "7", "--teacher-init", "random"]  # c2kd from an untrained teacher


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("rs") / "data")
    u.make_dataset(root, counts={"train": 14, "val": 5, "test": 6})
    return root


def files(folder):
    """Every file under folder (RUN/eval/ included): relative path -> bytes."""
    out = {}
    for d, _, names in os.walk(folder):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.relpath(os.path.join(d, n), folder)] = f.read()
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
    mf, mp = u.metrics(full), u.metrics(part)
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
    assert u.metrics(full) == u.metrics(part)


def test_resume_refuses_changed_options(data, tmp_path):
    part = str(tmp_path / "part")
    r = run([binary("train"), *BASE, "--data", data, "--out", part, "--steps", "1"])
    assert r.returncode == 0, r.stderr
    r = run([binary("train"), "--resume", part, "--lr", "0.5"])
    assert r.returncode == 2 and "--lr" in r.stderr
    r = run([binary("train"), "--resume", str(tmp_path / "nothing")])
    assert r.returncode == 1 and "not a run folder" in r.stderr


# ---------------------------------------------------------------- checkpoints inside an epoch, kill -9

def step_records(run_dir):
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return sum(1 for line in f if line.startswith('{"type":"step"') and line.endswith("\n"))
    except FileNotFoundError:
        return 0


def run_and_kill(args, run_dir, at_step):
    """Starts train and kills it (SIGKILL) once the log holds at_step step records
    (at_step 0: once options.json exists); where exactly it dies is up to the scheduler."""
    p = subprocess.Popen([binary("train"), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    opts = os.path.join(run_dir, "options.json")
    while p.poll() is None:
        if (at_step == 0 and os.path.exists(opts)) or (at_step > 0 and step_records(run_dir) >= at_step):
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    p.wait()


def assert_same_run(full, part):
    assert u.metrics(full) == u.metrics(part)
    assert_same_ckpt(os.path.join(full, "last.h5"), os.path.join(part, "last.h5"))
    assert_same_ckpt(os.path.join(full, "best.h5"), os.path.join(part, "best.h5"))
    rf = json.load(open(os.path.join(full, "result.json")))
    rp = json.load(open(os.path.join(part, "result.json")))
    rf.pop("plot"), rp.pop("plot")
    assert rf == rp and rf["complete"]


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    full = str(tmp_path_factory.mktemp("full") / "run")
    r = run([binary("train"), *BASE, "--data", data, "--out", full])
    assert r.returncode == 0, r.stderr
    return full


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_anywhere_then_resume_equals_uninterrupted(data, full_run, tmp_path, seed):
    """kill -9 at random points (first epoch included, before the first checkpoint
    included), each followed by --resume, ends with the uninterrupted run's weights."""
    part = str(tmp_path / "part")
    rng = random.Random(seed)
    kills = sorted(rng.sample(range(1, 9), 3))
    if seed == 1:
        kills = [0] + kills
    args = [*BASE, "--data", data, "--out", part, "--checkpoint-every", "1"]
    for k, at in enumerate(kills):
        run_and_kill(args if k == 0 else ["--resume", part, "--checkpoint-every", str(rng.choice([1, 2]))], part, at)
    r = run([binary("train"), "--resume", part])
    assert r.returncode == 0, r.stderr
    assert_same_run(full_run, part)


def test_checkpoint_inside_epoch_is_resumable(data, full_run, tmp_path):
    """--checkpoint-every 2: last.h5 after step 2 (inside epoch 1); resuming from a copy
    of it (as a kill right after it would leave) equals the uninterrupted run."""
    part, copy = str(tmp_path / "part"), str(tmp_path / "copy")
    r = run([binary("train"), *BASE, "--data", data, "--out", part, "--checkpoint-every", "2", "--steps", "3"])
    assert r.returncode == 0, r.stderr
    # the stop at step 3 saved last.h5 too; recreate the step-2 state by stopping at 2
    r = run([binary("train"), *BASE, "--data", data, "--out", copy, "--checkpoint-every", "2", "--steps", "2",
             "--force"])
    assert r.returncode == 0, r.stderr
    with h5py.File(os.path.join(copy, "last.h5"), "r") as f:
        assert f.attrs["step"] == 2 and f.attrs["epoch"] == 0
    r = run([binary("train"), "--resume", copy])
    assert r.returncode == 0, r.stderr
    assert_same_run(full_run, copy)
    r = run([binary("train"), "--resume", part])
    assert r.returncode == 0, r.stderr
    assert_same_run(full_run, part)


def test_resume_before_first_checkpoint_starts_over(data, full_run, tmp_path):
    """A run killed before its first checkpoint (options.json, no last.h5) resumes from step 0."""
    part = str(tmp_path / "part")
    r = run([binary("train"), *BASE, "--data", data, "--out", part, "--steps", "4"])
    assert r.returncode == 0, r.stderr
    os.remove(os.path.join(part, "last.h5"))
    os.remove(os.path.join(part, "best.h5"))
    r = run([binary("train"), "--resume", part])
    assert r.returncode == 0, r.stderr
    assert "from the start" in r.stderr
    assert_same_run(full_run, part)


OLD_OPTIONS = {  # RUN/options.json as written before the option table held the defaults
    "method": "c2kd", "pretrain": 0, "teacher-ckpt": None, "teacher-update": "full", "student": "visual",
    "teacher": "audio", "lambda1": 1, "lambda2": 1, "lambda3": 1, "omega": 0, "kd-temp": 4, "nkd-gamma": 1.5,
    "nkd-temp": 1, "proxy": "fa", "depth": 18, "width": 4, "visual-mode": "auto", "image-size": 16, "epochs": 3,
    "batch-size": 4, "lr": 0.01, "schedule": "poly", "momentum": 0.9, "seed": 7, "eval-from": 1, "no-augment": 0,
    "no-shuffle": 0, "init": None, "device": "cpu", "threads": 1}


def test_resume_reads_an_older_options_json(data, full_run, tmp_path):
    part = str(tmp_path / "part")
    r = run([binary("train"), *BASE, "--data", data, "--out", part, "--steps", "2"])
    assert r.returncode == 0, r.stderr
    with open(os.path.join(part, "options.json"), "w") as f:
        f.write(json.dumps({"data": data, "out": part, **OLD_OPTIONS}, indent="\t"))
    r = run([binary("train"), "--resume", part])
    assert r.returncode == 0, r.stderr
    assert_same_run(full_run, part)


# ---------------------------------------------------------------- crafted files

@pytest.fixture(scope="module")
def stopped_run(data, tmp_path_factory):
    part = str(tmp_path_factory.mktemp("stopped") / "run")
    r = run([binary("train"), *BASE, "--data", data, "--out", part, "--steps", "4"])
    assert r.returncode == 0, r.stderr
    return part


def crafted_copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def expect_resume_failure(part, needles):
    before = files(part)
    r = run([binary("train"), "--resume", part])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert files(part) == before


def set_attr(path, name, value):
    with h5py.File(path, "r+") as f:
        del f.attrs[name]
        f.attrs[name] = value


@pytest.mark.parametrize("name,value,needle", [
    ("epoch", np.int32(2**31 - 1), "epoch"),
    ("epoch", np.int32(-2), "epoch -2"),
    ("epoch", np.int32(5), "epoch"),                   # more than the run's 3 epochs
    ("step", np.int64(-2**63 + 1), "step"),
    ("step", np.int64(2**62), "step"),
    ("step", np.int64(7), "step 7"),                   # not inside epoch 1 (3 steps per epoch)
    ("epoch", np.float64(1.0), "epoch"),               # another type
    ("rng_state", np.zeros(4, np.uint64), "rng_state"),
    ("rng_state", np.arange(1, 6, dtype=np.uint64), "rng_state"),
    ("seed", np.uint64(8), "seed"),
    ("best_epoch", np.int32(9), "best_epoch"),
    ("best_val", np.float64(np.nan), "best_val"),
    ("best_test", np.float64(7.0), "best_test"),
    ("format_version", np.int32(3), "format_version"),
])
def test_crafted_position_is_refused(stopped_run, tmp_path, name, value, needle):
    part = crafted_copy(stopped_run, str(tmp_path / "part"))
    last = os.path.join(part, "last.h5")
    set_attr(last, name, value)
    expect_resume_failure(part, ["last.h5", needle])


def test_crafted_tensors_are_refused(stopped_run, tmp_path):
    part = crafted_copy(stopped_run, str(tmp_path / "nan"))
    with h5py.File(os.path.join(part, "last.h5"), "r+") as f:
        w = f["student/conv1.weight"]
        v = w[()]
        v.flat[3] = np.inf
        w[...] = v
    expect_resume_failure(part, ["last.h5", "student/conv1.weight", "non-finite"])
    part = crafted_copy(stopped_run, str(tmp_path / "shape"))
    with h5py.File(os.path.join(part, "last.h5"), "r+") as f:
        shape = f["student/fc.weight"].shape
        del f["student/fc.weight"]
        f["student/fc.weight"] = np.zeros((shape[0] + 1, shape[1]), np.float32)
    expect_resume_failure(part, ["last.h5", "student/fc.weight", "shape"])
    part = crafted_copy(stopped_run, str(tmp_path / "nbt"))
    with h5py.File(os.path.join(part, "last.h5"), "r+") as f:
        del f["student/bn1.num_batches_tracked"]
        f["student/bn1.num_batches_tracked"] = np.int64(-5)
    expect_resume_failure(part, ["last.h5", "num_batches_tracked"])


@pytest.mark.parametrize("key,value,needle", [
    ("epochs", 1e300, "epochs"),
    ("epochs", -5, "--epochs"),
    ("epochs", 2.5, "epochs"),
    ("width", "abc", "width"),
    ("method", "fancy", "method"),
    ("depth", 34, "depth"),
    ("lr", -1, "--lr"),
    ("momentum", 1.5, "--momentum"),
    ("seed", 1e30, "seed"),
    ("pretrain", 2, "pretrain"),
])
def test_crafted_options_are_refused(stopped_run, tmp_path, key, value, needle):
    part = crafted_copy(stopped_run, str(tmp_path / "part"))
    path = os.path.join(part, "options.json")
    o = json.load(open(path))
    o[key] = value
    with open(path, "w") as f:
        json.dump(o, f)
    expect_resume_failure(part, ["options.json", needle])


def test_checkpoint_strings_are_fixed_length_and_old_variable_length_checkpoints_still_resume(stopped_run, tmp_path):
    part = crafted_copy(stopped_run, str(tmp_path / "old"))
    last = os.path.join(part, "last.h5")
    with h5py.File(last, "r+") as f:
        assert f.attrs["format_version"] == 2
        for k in ["config", "recipe"]:
            info = h5py.check_string_dtype(f.attrs.get_id(k).dtype)
            assert info.encoding == "utf-8" and info.length is not None, (k, info)
        config = json.loads(f.attrs["config"].decode())
        assert config["width"] == 4
        recipe = f.attrs["recipe"].decode()
        json.loads(recipe)
        # as the writer before format_version 2 did: variable-length strings, format_version 1
        for k, v in [("config", json.dumps(config)), ("recipe", recipe)]:
            del f.attrs[k]
            f.attrs[k] = v
        del f.attrs["format_version"]
        f.attrs["format_version"] = np.int32(1)
    r = run([binary("train"), "--resume", part])
    assert r.returncode == 0, r.stderr
    with h5py.File(last, "r") as f:
        assert f.attrs["format_version"] == 2 and f.attrs["step"] > 4


def test_resume_removes_stale_temporaries_of_its_outputs(data, full_run, stopped_run, tmp_path):
    """A kill while writing a checkpoint or the log leaves .NAME.tmp.XXXXXX
    beside it: --resume removes those of its own outputs, nothing else."""
    part = crafted_copy(stopped_run, str(tmp_path / "part"))
    stale = [".last.h5.tmp.a1B2c3", ".best.h5.tmp.ZZZZZZ", ".metrics.jsonl.tmp.000000"]
    other = [".last.h5.tmp.short", "notes.last.h5.tmp.a1B2c3", ".data.h5.tmp.a1B2c3", "last.h5.tmp.a1B2c3"]
    for name in stale + other:
        with open(os.path.join(part, name), "wb") as f:
            f.write(b"partial")
    r = run([binary("train"), "--resume", part])
    assert r.returncode == 0, r.stderr
    left = set(os.listdir(part))
    assert not left & set(stale), left
    assert set(other) <= left, left
    assert_same_ckpt(os.path.join(part, "last.h5"), os.path.join(full_run, "last.h5"))


def test_a_variable_length_string_in_a_new_checkpoint_is_refused_not_skipped(stopped_run, tmp_path):
    """format_version 2 promises fixed-length strings: a variable-length one (a
    damaged or forged file) is refused with its name before it is read; the data
    identity check is not quietly skipped."""
    part = crafted_copy(stopped_run, str(tmp_path / "vlen"))
    last = os.path.join(part, "last.h5")
    with h5py.File(last, "r+") as f:
        recipe = f.attrs["recipe"].decode()
        del f.attrs["recipe"]
        f.attrs["recipe"] = recipe  # h5py writes a str as a variable-length string
    expect_resume_failure(part, ["last.h5", "recipe", "variable-length string not accepted"])
