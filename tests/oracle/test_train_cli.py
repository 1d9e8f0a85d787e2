"""The `train` command end to end on tiny shards (CPU): options, metrics.jsonl,
checkpoints readable by h5py with PyTorch names, the plot, result.json,
teacher pretraining + --teacher-ckpt, and every bad input (a clear one-line
error, exit 1, an earlier run's files untouched)."""
import hashlib
import json
import os
import shutil
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest

import train_util as u
from conftest import binary, run

W = 4
BASE0 = ["--width", str(W), "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1"]
BASE = [*BASE0, "--teacher-init", "random"]  # c2kd (the default method) from an untrained teacher; BASE0 with --teacher-ckpt
CLASSES = ("dog", "cat", "car")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli") / "data")
    u.make_dataset(root, counts={"train": 14, "val": 5, "test": 6}, classes=CLASSES)
    return root


@pytest.fixture(scope="module")
def c2kd_run(data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cli") / "run")
    r = run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "3", "--method", "c2kd"])
    assert r.returncode == 0, r.stderr
    return out, r


def read_metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f]


def digest(folder):
    out = {}
    for d, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(d, name), "rb") as f:
                out[os.path.relpath(os.path.join(d, name), folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_help_lists_every_option():
    r = run([binary("train"), "--help"])
    assert r.returncode == 0
    for opt in ("--data", "--out", "--method", "--pretrain", "--teacher-ckpt", "--teacher-update", "--student",
                "--teacher", "--lambda1", "--lambda2", "--lambda3", "--omega", "--kd-temp", "--nkd-gamma",
                "--nkd-temp", "--proxy", "--depth", "--student-depth", "--teacher-depth", "--width", "--visual-mode", "--epochs", "--batch-size", "--lr",
                "--schedule", "--momentum", "--seed", "--eval-from", "--steps", "--resume", "--init", "--device",
                "--threads", "--no-augment", "--no-shuffle", "--image-size", "--help"):
        assert opt in r.stdout, opt


@pytest.mark.parametrize("args,needle", [
    (["--bogus"], "unknown option"),
    (["--out", "x"], "--data"),
    (["--data", "x"], "--out"),
    (["--data", "x", "--out", "y", "--method", "fancy"], "fancy"),
    (["--data", "x", "--out", "y", "--epochs", "zero"], "--epochs"),
    (["--data", "x", "--out", "y", "--depth", "34"], "--depth"),
    (["--data", "x", "--out", "y", "--student-depth", "34"], "--student-depth"),
    (["--data", "x", "--out", "y", "--teacher-depth", "101"], "--teacher-depth"),
])
def test_usage_errors(args, needle):
    r = run([binary("train"), *args])
    assert r.returncode == 2 and needle in r.stderr, r.stderr


@pytest.mark.parametrize("sd,td", [(50, 18), (18, 50)])
def test_student_and_teacher_depths(data, tmp_path, sd, td):
    """--student-depth / --teacher-depth build each network (and c2kd's proxy on
    its layer3 width) at its own depth; --depth stays the default of both."""
    out = str(tmp_path / "run")
    r = run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "1", "--steps", "1",
             "--method", "c2kd", "--depth", "50", "--student-depth", str(sd), "--teacher-depth", str(td)])
    assert r.returncode == 0, r.stderr
    l3 = {18: 4 * W, 50: 16 * W}  # layer3 output channels
    with h5py.File(os.path.join(out, "last.h5"), "r") as f:
        for g, d in (("student", sd), ("teacher", td)):
            assert ("layer1.0.conv3.weight" in f[g]) == (d == 50), g
            assert f[g + "_proxy/conv.weight"].shape == (l3[d], l3[d], 1, 1), g
        cfg = json.loads(f.attrs["config"])
        assert cfg["student_depth"] == sd and cfg["teacher_depth"] == td


def test_shake_run_end_to_end(data, tmp_path):
    """--method shake trains the student and the shadow head (group shadow/ in
    the checkpoint) from a pretrained teacher, whose weights stay as loaded."""
    pre = str(tmp_path / "pre")
    r = run([binary("train"), *BASE, "--data", data, "--out", pre, "--epochs", "1", "--pretrain"])
    assert r.returncode == 0, r.stderr
    out = str(tmp_path / "shake")
    r = run([binary("train"), *BASE0, "--data", data, "--out", out, "--epochs", "2", "--method", "shake",
             "--teacher-ckpt", os.path.join(pre, "best.h5")])
    assert r.returncode == 0, r.stderr
    m = read_metrics(out)
    step = [x for x in m if x["type"] == "step"][0]
    assert {"ce_student", "kl_student_to_shadow", "kl_shadow_to_student", "ce_shadow",
            "mse_shadow_teacher"} <= set(step), step
    with h5py.File(os.path.join(out, "last.h5"), "r") as f, h5py.File(os.path.join(pre, "best.h5"), "r") as t:
        assert "fuse5.0.weight" in f["shadow"] and "fc.weight" not in f["shadow"]
        assert json.loads(f.attrs["config"])["method"] == "shake"
        np.testing.assert_array_equal(f["teacher/layer4.1.conv2.weight"][()], t["teacher/layer4.1.conv2.weight"][()])


def test_review_run_end_to_end(data, tmp_path):
    """--method review trains the student and the ABF modules (group review/ in
    the checkpoint, the authors' abfs.K names) from a pretrained teacher, whose
    weights stay as loaded; the step's total is CE + the five HCL terms."""
    pre = str(tmp_path / "pre")
    r = run([binary("train"), *BASE, "--data", data, "--out", pre, "--epochs", "1", "--pretrain"])
    assert r.returncode == 0, r.stderr
    out = str(tmp_path / "review")
    r = run([binary("train"), *BASE0, "--data", data, "--out", out, "--epochs", "2", "--method", "review",
             "--teacher-ckpt", os.path.join(pre, "best.h5")])
    assert r.returncode == 0, r.stderr
    m = read_metrics(out)
    terms = ("ce_student", "hcl_layer1", "hcl_layer2", "hcl_layer3", "hcl_layer4", "hcl_pool")
    for x in [x for x in m if x["type"] == "step"]:
        assert all(np.isfinite(x[t]) for t in terms), x
        assert x["loss"] == pytest.approx(sum(x[t] for t in terms), rel=1e-5)
    with h5py.File(os.path.join(out, "last.h5"), "r") as f, h5py.File(os.path.join(pre, "best.h5"), "r") as t:
        g = f["review"]
        assert "abfs.0.conv2.0.weight" in g and "abfs.4.att_conv.0.bias" in g and "abfs.0.att_conv.0.weight" not in g
        assert json.loads(f.attrs["config"])["method"] == "review"
        np.testing.assert_array_equal(f["teacher/layer4.1.conv2.weight"][()], t["teacher/layer4.1.conv2.weight"][()])


def test_metrics_content(c2kd_run):
    out, r = c2kd_run
    m = read_metrics(out)
    steps = [x for x in m if x["type"] == "step"]
    epochs = [x for x in m if x["type"] == "epoch"]
    nb = 14 // 4
    assert [x["step"] for x in steps] == list(range(1, 3 * nb + 1))
    assert [x["epoch"] for x in epochs] == [1, 2, 3]
    terms = ("ce_teacher", "kl_teacher_to_proxy", "kl_proxy_to_teacher", "nt_teacher_proxy", "ce_student",
             "kl_student_to_proxy", "kl_proxy_to_student", "nt_student_proxy")
    for x in steps:
        e = x["epoch"] - 1
        assert x["epoch"] == (x["step"] - 1) // nb + 1
        assert x["lr"] == pytest.approx(1e-4 + (0.01 - 1e-4) * (1 - e / 3) ** 0.9, rel=1e-12)
        for t in terms:
            assert t in x and np.isfinite(x[t])
        # c2kd with lambda = 1: the total is the sum of the terms
        assert x["loss"] == pytest.approx(sum(x[t] for t in terms), rel=1e-5)
        assert 0 <= x["kept"] <= 1 and x["kept"] * 4 == round(x["kept"] * 4)
        assert 0 <= x["acc_student"] <= 1 and 0 <= x["acc_teacher"] <= 1
    for ep in epochs:
        mine = [x for x in steps if x["epoch"] == ep["epoch"]]
        assert ep["train_loss"] == pytest.approx(np.mean([x["loss"] for x in mine]), rel=1e-12)
        assert ep["train_acc_student"] == pytest.approx(np.mean([x["acc_student"] for x in mine]))
        for k in ("val_acc_student", "test_acc_student", "val_acc_teacher", "test_acc_teacher"):
            v = ep[k]
            assert 0 <= v <= 1
        assert ep["val_acc_student"] * 5 == pytest.approx(round(ep["val_acc_student"] * 5))
        assert ep["test_acc_student"] * 6 == pytest.approx(round(ep["test_acc_student"] * 6))
    # the reported result: test accuracy at the (first) best validation epoch
    vals = [ep["val_acc_student"] for ep in epochs]
    best = int(np.argmax(vals))
    res = json.load(open(os.path.join(out, "result.json")))
    assert res["best_epoch"] == best + 1 and epochs[-1]["best_epoch"] == best + 1
    assert res["test_acc_at_best_val"] == epochs[best]["test_acc_student"]
    assert res["complete"] and res["network"] == "student" and not res["val_is_test"]
    assert f"best validation epoch {best + 1}" in r.stdout


def test_checkpoints_have_pytorch_names(c2kd_run):
    out, _ = c2kd_run
    for name in ("last.h5", "best.h5"):
        with h5py.File(os.path.join(out, name), "r") as f:
            assert f["student/conv1.weight"].shape == (W, 3, 7, 7)
            assert f["teacher/conv1.weight"].shape == (W, 1, 7, 7)
            assert f["student/layer2.0.downsample.0.weight"].shape == (2 * W, W, 1, 1)
            assert f["student/fc.weight"].shape == (3, 8 * W)
            assert f["teacher/bn1.running_mean"].shape == (W,)
            assert f["student_proxy/conv.weight"].shape == (4 * W, 4 * W, 1, 1)
            assert f["teacher_proxy/fc.bias"].shape == (3,)
            assert np.isfinite(f["student/conv1.weight"][()]).all()
            rec = json.loads(f.attrs["recipe"])
            assert rec["classes"] == list(CLASSES)
    with h5py.File(os.path.join(out, "last.h5"), "r") as f:
        assert f.attrs["epoch"] == 3 and f.attrs["step"] == 9


def test_plot_is_svg_with_curves(c2kd_run):
    out, _ = c2kd_run
    root = ET.parse(os.path.join(out, "curves.svg")).getroot()
    assert root.tag.endswith("svg")
    lines = [e for e in root.iter() if e.tag.endswith("polyline")]
    assert len(lines) >= 4  # loss per step, loss per epoch, accuracies
    assert len(lines[0].get("points").split()) == 9


def test_pretrain_then_frozen_teacher(data, tmp_path):
    pre, kd = str(tmp_path / "pre"), str(tmp_path / "kd")
    r = run([binary("train"), *BASE, "--data", data, "--out", pre, "--epochs", "2", "--pretrain", "--teacher", "audio"])
    assert r.returncode == 0, r.stderr
    res = json.load(open(os.path.join(pre, "result.json")))
    assert res["network"] == "teacher" and res["method"] == "pretrain"
    steps = [x for x in read_metrics(pre) if x["type"] == "step"]
    assert all(x["loss"] == pytest.approx(x["ce_teacher"]) for x in steps)
    r = run([binary("train"), *BASE0, "--data", data, "--out", kd, "--epochs", "1", "--method", "kd",
             "--teacher-ckpt", os.path.join(pre, "best.h5"), "--teacher-update", "frozen"])
    assert r.returncode == 0, r.stderr
    with h5py.File(os.path.join(pre, "best.h5"), "r") as a, h5py.File(os.path.join(kd, "last.h5"), "r") as b:
        for k in ("conv1.weight", "layer3.1.conv2.weight", "fc.weight", "fc.bias"):
            np.testing.assert_array_equal(a["teacher/" + k][()], b["teacher/" + k][()])


def test_existing_run_needs_force(c2kd_run, data):
    out, _ = c2kd_run
    before = digest(out)
    r = run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "1"])
    assert r.returncode == 2 and "--resume" in r.stderr
    assert digest(out) == before


# ---- bad inputs: one clear line, exit 1, the earlier run untouched ----

def bad_copy(data, tmp_path, name):
    dst = str(tmp_path / name)
    shutil.copytree(data, dst)
    return dst


def expect_failure(args, needles, guard=None, one_line=True):
    """one_line: the error is found before training starts, so it is the only output
    (else it is the last line, after the run's start line)."""
    before = digest(guard) if guard else None
    r = run([binary("train"), *args])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert not one_line or len(err) == 1, r.stderr
    assert err[-1].startswith("train: "), r.stderr
    for n in needles:
        assert n in err[-1], err[-1]
    if guard:
        assert digest(guard) == before
    return err[-1]


def test_missing_shard(c2kd_run, data, tmp_path):
    out, _ = c2kd_run
    bad = bad_copy(data, tmp_path, "d")
    os.remove(os.path.join(bad, "train-00001.h5"))
    expect_failure(["--resume", out, "--data", bad], ["train-00001.h5", "missing (listed in index.json)"], guard=out)
    expect_failure(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), "--method", "none"], ["nowhere"])


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_shard(c2kd_run, data, tmp_path, damage):
    out, _ = c2kd_run
    bad = bad_copy(data, tmp_path, "d")
    p = os.path.join(bad, "val-00000.h5")
    if damage == "garbage":
        open(p, "wb").write(b"not an hdf5 file at all" * 100)
    else:
        blob = open(p, "rb").read()
        open(p, "wb").write(blob[:len(blob) // 2])
    expect_failure(["--resume", out, "--data", bad], ["val-00000.h5"], guard=out)


def test_corrupt_jpeg_names_sample(data, tmp_path):
    root = str(tmp_path / "d")
    samples = u.make_dataset(root, counts={"train": 8, "test": 4})
    # rewrite train-00000.h5 with the JPEG of sample 2 cut short
    s = samples["train"][:7]
    jp = [list(x[3]) for x in s]
    jp[2][0] = jp[2][0][:40]
    u.write_shard(os.path.join(root, "train-00000.h5"), "train", [x[0] for x in s], [x[1] for x in s],
                  np.stack([x[2] for x in s]), jp, ["dog", "cat", "car"], 1, u.DEFAULT_RECIPE)
    line = expect_failure([*BASE, "--data", root, "--out", str(tmp_path / "r"), "--epochs", "1", "--no-shuffle"],
                          ["train0002", "train-00000.h5", "JPEG"], one_line=False)
    assert "split train" in line


@pytest.mark.parametrize("kind", ["classes", "recipe"])
def test_checkpoint_of_other_data(c2kd_run, tmp_path, kind):
    out, _ = c2kd_run
    other = str(tmp_path / "other")
    if kind == "classes":
        u.make_dataset(other, counts={"train": 8, "test": 4}, classes=("dog", "cat", "cow"))
        needle = "class"
    else:
        rec = json.loads(json.dumps(u.DEFAULT_RECIPE))
        rec["spectro"]["window"] = 1024
        u.make_dataset(other, counts={"train": 8, "test": 4}, classes=CLASSES, recipe=rec)
        needle = "recipe"
    last = os.path.join(out, "last.h5")
    expect_failure(["--resume", out, "--data", other], [needle, "last.h5"], guard=out)
    expect_failure([*BASE0, "--data", other, "--out", str(tmp_path / "r1"), "--init", last], [needle], guard=out)
    expect_failure([*BASE0, "--data", other, "--out", str(tmp_path / "r2"), "--teacher-ckpt", last], [needle], guard=out)
    assert not os.path.exists(str(tmp_path / "r1" / "options.json"))


def test_mismatched_splits(tmp_path):
    root = str(tmp_path / "d")
    u.make_dataset(root, counts={"train": 8, "test": 4})
    u.make_dataset(str(tmp_path / "o"), counts={"test": 4}, classes=("a", "b", "c"))
    shutil.copy(str(tmp_path / "o" / "test-00000.h5"), os.path.join(root, "test-00000.h5"))
    expect_failure([*BASE, "--data", root, "--out", str(tmp_path / "r")], ["test-00000.h5", "content digest"])
    r = run([binary("store"), "index", root])  # an index made from the shards present refuses it too
    assert r.returncode == 1 and "test-00000.h5: class 0" in r.stderr, r.stderr


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_split(tmp_path, split):
    root = str(tmp_path / "d")
    counts = {"train": 8, "test": 4}
    counts[split] = 0
    u.make_dataset(root, counts=counts)
    expect_failure([*BASE, "--data", root, "--out", str(tmp_path / "r")], [f"split {split}", "empty"])
    assert not os.path.exists(str(tmp_path / "r"))


def test_fewer_samples_than_a_batch(tmp_path):
    root = str(tmp_path / "d")
    u.make_dataset(root, counts={"train": 3, "test": 4})
    expect_failure([*BASE, "--data", root, "--out", str(tmp_path / "r")], ["fewer than one batch"])


def test_nan_loss_names_the_step(data, tmp_path):
    out = str(tmp_path / "r")
    r = run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "2", "--lr", "1e30",
             "--schedule", "const"])
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("train: ") and "step 2" in last and "non-finite" in last, r.stderr
    assert not os.path.exists(os.path.join(out, "last.h5"))  # died inside epoch 1: no checkpoint written
