"""The user's side, tested as a user would: a fresh virtual environment (system site
packages: numpy, h5py, torch, torchvision, onnx from Debian), `pip install ./python`
(offline: --no-build-isolation --no-deps --no-index), then load a checkpoint of `train`,
export it, evaluate it with PyTorch and compare with `train`'s own evaluation
(RUN/eval/, `train --eval`, result.json); the metrics log, its TensorBoard and CSV
conversions, the console lines, the plots, the refusals, --version and --resume --epochs.

Tolerances are derived, not guessed: train computes in float32, so its logits differ from
PyTorch's float32 logits by about as much as PyTorch's own float32 logits differ from its
float64 ones (δ, measured per run); tol_z = 10 δ + 1e-6 max|z|. A softmax probability
moves by at most half the largest logit change (Σ_j |∂p_i/∂z_j| = 2 p_i (1 - p_i) <= 1/2),
so tol_p = tol_z / 2 + 1e-8 (predictions.tsv prints 9 digits). Predictions must be equal
except for a sample whose two largest float64 logits are closer than 2 tol_z (a near-tie,
reported; none is expected).
"""
import csv
import glob
import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import train_util as u
from conftest import BIN, ROOT, binary, run

BASE = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1",
        "--loader-threads", "1"]
CLASSES = ("dog", "cat", "car")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with the package installed from a copy of python/ (a user's checkout)."""
    d = tmp_path_factory.mktemp("venv")
    src = d / "src"
    shutil.copytree(os.path.join(ROOT, "python"), src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = d / "env"
    r = run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", env])
    assert r.returncode == 0, r.stderr
    py = str(env / "bin" / "python")
    r = run([py, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", "--quiet", src])
    assert r.returncode == 0, r.stdout + r.stderr
    return py


def vrun(venv, code, cwd, *args):
    """Python code in the venv, from a folder outside the checkout (no python/ on sys.path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([venv, "-c", code, *map(str, args)], cwd=str(cwd), capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An ingested-layout folder (F = 1), an audio teacher, a c2kd visual student from it,
    a no-KD student; and a folder of 2 frames per sample with a folded visual student."""
    d = tmp_path_factory.mktemp("user")
    data = str(d / "data")
    u.make_dataset(data, counts={"train": 24, "val": 8, "test": 12}, classes=CLASSES, version=2)
    out = {"data": data}
    for name, args in (("teacher", ["--pretrain", "--teacher", "audio", "--epochs", "5"]),
                       ("c2kd", ["--method", "c2kd", "--epochs", "3", "--teacher-ckpt", str(d / "teacher" / "best.h5")]),
                       ("none", ["--method", "none", "--epochs", "3"])):
        r = run([binary("train"), *BASE, "--data", data, "--out", d / name, *args])
        assert r.returncode == 0, r.stderr
        out[name] = str(d / name)
        out[name + "_stderr"] = r.stderr
    fold = str(d / "fold-data")
    u.make_dataset(fold, counts={"train": 16, "test": 8}, classes=CLASSES, F=2, version=2)
    r = run([binary("train"), *BASE, "--data", fold, "--out", d / "fold", "--method", "none", "--epochs", "2",
             "--visual-mode", "fold"])
    assert r.returncode == 0, r.stderr
    out["fold_data"], out["fold"] = fold, str(d / "fold")
    return out


PREDICT = r"""
import json, sys, numpy as np, torch, c2kd
ckpt, data, split, network, out = sys.argv[1:6]
torch.set_num_threads(1)
m = c2kd.load_model(ckpt, network)
assert isinstance(m, __import__("torchvision").models.ResNet)
p = c2kd.predict(m, data, split)
ds = c2kd.ShardDataset(data, split, image_size=m.config["image_size"], visual_mode=m.config["visual_mode"],
                       audio=m.modality == "audio", visual=m.modality == "visual")
x = torch.stack([ds[i][m.modality] for i in range(len(ds))])
with torch.no_grad():
    z32 = m(x)
    z64 = m.double()(x.double())
c2kd.export(ckpt, out + ".pt", network)
c2kd.export(ckpt, out + ".onnx", network)
with torch.no_grad():
    zs = torch.jit.load(out + ".pt")(x)
np.save(out + "-input.npy", x.numpy())
json.dump({"file": c2kd.__file__, "ids": p["ids"], "labels": p["labels"].tolist(), "pred": p["pred"].tolist(),
           "probs": p["probs"].tolist(), "z32": z32.tolist(), "z64": z64.tolist(), "zscript": zs.tolist(),
           "classes": m.classes, "modality": m.modality}, open(out + ".json", "w"))
"""


def predict(venv, tmp_path, ckpt, data, split="test", network="student"):
    out = tmp_path / f"pred-{network}-{split}"
    r = vrun(venv, PREDICT, tmp_path, ckpt, data, split, network, out)
    assert r.returncode == 0, r.stderr
    with open(str(out) + ".json") as f:
        p = json.load(f)
    p["out"] = str(out)
    return p


def read_tsv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return rows[0], rows[1:]


def tolerances(p):
    z32, z64 = np.array(p["z32"]), np.array(p["z64"])
    tol_z = 10 * np.abs(z32 - z64).max() + 1e-6 * np.abs(z64).max()
    return tol_z, tol_z / 2 + 1e-8


def near_ties(z64, tol_z):
    top2 = np.sort(z64, axis=1)[:, -2:]
    return set(np.nonzero(top2[:, 1] - top2[:, 0] < 2 * tol_z)[0].tolist())


def compare_with_train(p, eval_dir, classes=CLASSES):
    """PyTorch's predictions and probabilities against train's predictions.tsv."""
    head, rows = read_tsv(os.path.join(eval_dir, "predictions.tsv"))
    assert head == ["id", "label", "predicted"] + [f"p_{c}" for c in classes]
    assert [r[0] for r in rows] == p["ids"]
    assert [r[1] for r in rows] == [classes[y] for y in p["labels"]]
    tol_z, tol_p = tolerances(p)
    z64 = np.array(p["z64"])
    ties = near_ties(z64, tol_z)
    assert not ties, f"near-ties (tolerance {tol_z}): {ties}"
    assert [r[2] for r in rows] == [classes[k] for k in p["pred"]]
    probs = np.array([[float(x) for x in r[3:]] for r in rows])
    np.testing.assert_allclose(probs, np.array(p["probs"]), rtol=0, atol=tol_p)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-7)
    return probs


# ---------------------------------------------------------------- the package


def test_package_installs_and_imports_from_the_venv(venv, tmp_path):
    r = vrun(venv, "import c2kd, c2kd_shards, sys; print(c2kd.__file__); print(c2kd.__version__); "
                   "print(c2kd.ShardDataset is c2kd_shards.ShardDataset)", tmp_path)
    assert r.returncode == 0, r.stderr
    path, ver, same = r.stdout.split()
    assert path.startswith(os.path.dirname(os.path.dirname(venv))) and "site-packages" in path
    assert ver == "0.1" and same == "True"


@pytest.mark.parametrize("name,network", [("teacher", "teacher"), ("c2kd", "student"), ("none", "student")])
def test_load_model_predicts_as_train_evaluates(venv, runs, tmp_path, name, network):
    """RUN/eval/ (train's evaluation of best.h5 on test) against load_model + predict."""
    ev = os.path.join(runs[name], "eval")
    p = predict(venv, tmp_path, os.path.join(runs[name], "best.h5"), runs["data"], network=network)
    assert p["modality"] == ("audio" if network == "teacher" else "visual")
    assert p["classes"] == list(CLASSES)
    compare_with_train(p, ev)
    res = json.load(open(os.path.join(runs[name], "result.json")))
    ej = json.load(open(os.path.join(ev, "eval.json")))
    acc = np.mean(np.array(p["pred"]) == np.array(p["labels"]))
    assert ej["top1"] == res["test_acc_at_best_val"] == acc
    assert ej["network"] == network and ej["split"] == "test" and ej["epoch"] == res["best_epoch"]
    # top-5, per-class accuracy, the confusion matrix and the loss from PyTorch's numbers
    z, y = np.array(p["z64"]), np.array(p["labels"])
    rank = (z > z[np.arange(len(y)), y][:, None]).sum(1)
    assert ej["top5"] == np.mean(rank < 5)
    cm = np.zeros((3, 3), int)
    np.add.at(cm, (y, np.array(p["pred"])), 1)
    assert ej["confusion"] == cm.tolist()
    for c, pc in enumerate(ej["per_class"]):
        assert pc["class"] == CLASSES[c] and pc["samples"] == int((y == c).sum())
        assert pc["accuracy"] == (cm[c, c] / cm[c].sum() if cm[c].sum() else None)
    tol_z, _ = tolerances(p)
    ce = np.mean(np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) - (z[np.arange(len(y)), y] - z.max(1)))
    assert abs(ej["loss"] - ce) <= 2 * tol_z


def test_exported_models_predict_as_train(venv, runs, tmp_path):
    """TorchScript (torch.jit.load) and ONNX (run by tests/oracle/onnx_numpy.py, a float64
    interpreter of the ONNX operators) give train's predictions on the test split."""
    import onnx
    import onnx_numpy

    p = predict(venv, tmp_path, os.path.join(runs["c2kd"], "best.h5"), runs["data"])
    np.testing.assert_allclose(np.array(p["zscript"]), np.array(p["z32"]), rtol=0, atol=1e-5)
    _, rows = read_tsv(os.path.join(runs["c2kd"], "eval", "predictions.tsv"))
    train_pred = [CLASSES.index(r[2]) for r in rows]
    assert np.argmax(p["zscript"], 1).tolist() == train_pred
    model = onnx.load(p["out"] + ".onnx")
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    x = np.load(p["out"] + "-input.npy")
    z = onnx_numpy.run(model, x)
    tol_z, _ = tolerances(p)
    np.testing.assert_allclose(z, np.array(p["z64"]), rtol=0, atol=tol_z)
    assert np.argmax(z, 1).tolist() == train_pred
    z1 = onnx_numpy.run(model, x[:1])  # the batch dimension is dynamic
    np.testing.assert_allclose(z1, z[:1], rtol=0, atol=tol_z)


def test_folded_frames_model(venv, runs, tmp_path):
    """F = 2 frames folded into the batch: [B, F, 3, S, S] in, features averaged over frames."""
    p = predict(venv, tmp_path, os.path.join(runs["fold"], "best.h5"), runs["fold_data"])
    assert np.load(p["out"] + "-input.npy").shape[1:] == (2, 3, 16, 16)
    compare_with_train(p, os.path.join(runs["fold"], "eval"))


def test_train_eval_command(venv, runs, tmp_path):
    """train --eval on val gives the best epoch's val top-1 (result.json) and PyTorch's
    predictions; on test the files of RUN/eval/ (the same checkpoint, the same numbers)."""
    run_dir, ckpt = runs["c2kd"], os.path.join(runs["c2kd"], "best.h5")
    ev = tmp_path / "ev-val"
    r = run([binary("train"), "--eval", ckpt, "--data", runs["data"], "--split", "val", "--out", ev,
             "--device", "cpu", "--threads", "1"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and "top-1" in r.stdout and "top-5" in r.stdout
    res = json.load(open(os.path.join(run_dir, "result.json")))
    ej = json.load(open(ev / "eval.json"))
    assert ej["top1"] == res["best_val_acc"] and ej["split"] == "val" and ej["samples"] == 8
    compare_with_train(predict(venv, tmp_path, ckpt, runs["data"], split="val"), str(ev))
    assert "<svg" in open(ev / "confusion.svg").read() and all(c in open(ev / "confusion.svg").read() for c in CLASSES)
    et = tmp_path / "ev-test"
    # the run's batch size and threads: the same float32 sums as the run's own evaluation, so the same bytes
    r = run([binary("train"), "--eval", ckpt, "--data", runs["data"], "--out", et, "--device", "cpu", "--batch-size", "4",
             "--threads", "1"])
    assert r.returncode == 0, r.stderr
    a, b = json.load(open(et / "eval.json")), json.load(open(os.path.join(run_dir, "eval", "eval.json")))
    for k in ("top1", "top5", "loss", "confusion", "per_class", "samples"):
        assert a[k] == b[k], k
    assert open(et / "predictions.tsv").read() == open(os.path.join(run_dir, "eval", "predictions.tsv")).read()
    # the teacher of the c2kd checkpoint, and of the pretraining run: the same weights
    r = run([binary("train"), "--eval", ckpt, "--network", "teacher", "--data", runs["data"], "--out",
             tmp_path / "ev-t", "--device", "cpu"])
    assert r.returncode == 0, r.stderr
    assert "teacher" in r.stdout


def test_eval_bad_inputs(runs, tmp_path):
    ckpt = os.path.join(runs["none"], "best.h5")
    base = ["--data", runs["data"], "--device", "cpu"]
    cases = [
        (["--eval", str(tmp_path / "nope.h5"), *base, "--out", tmp_path / "a"], 1, ["nope.h5", "no such"]),
        (["--eval", ckpt, *base, "--out", tmp_path / "b", "--network", "teacher"], 1, ["no teacher"]),
        (["--eval", ckpt, *base, "--out", tmp_path / "c", "--split", "nosuch"], 1, ["nosuch"]),
        (["--eval", ckpt, *base, "--out", tmp_path / "d", "--resume", runs["none"]], 2, ["--eval"]),
        (["--eval", os.path.join(runs["data"], "index.json"), *base, "--out", tmp_path / "e"], 1, ["index.json"]),
    ]
    for args, rc, needles in cases:
        r = run([binary("train"), *args])
        assert r.returncode == rc, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("train: "), r.stderr
        for n in needles:
            assert n in lines[0], lines[0]
    other = str(tmp_path / "other")
    u.make_dataset(other, counts={"train": 4, "test": 4}, classes=("dog", "cat", "cow"))
    r = run([binary("train"), "--eval", ckpt, "--data", other, "--out", tmp_path / "f", "--device", "cpu"])
    assert r.returncode == 1 and "class" in r.stderr and not os.path.exists(tmp_path / "f")


# ---------------------------------------------------------------- the numbers people look at


def epoch_records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        recs = [json.loads(l) for l in f]
    return [r for r in recs if r["type"] == "epoch"], [r for r in recs if r["type"] == "step"]


def test_console_line_per_epoch(runs):
    """One line per epoch whose numbers are the log's; the progress counts steps."""
    err = runs["c2kd_stderr"]
    eps, _ = epoch_records(runs["c2kd"])
    lines = [l for l in err.splitlines() if re.match(r"train: epoch \d+/3: ", l)]
    assert len(lines) == len(eps) == 3
    for l, e in zip(lines, eps):
        m = re.match(r"train: epoch (\d+)/3: train loss ([\d.]+), val top-1 ([\d.]+)%, test top-1 ([\d.]+)%"
                     r"(?: \(best\))?, lr ([\d.e-]+), ([\d.]+) s, ([\d.]+) samples/s$", l)
        assert m, l
        assert int(m[1]) == e["epoch"]
        assert float(m[2]) == pytest.approx(e["train_loss"], abs=5e-5)
        assert float(m[3]) == pytest.approx(100 * e["val_acc_student"], abs=5e-3)
        assert float(m[4]) == pytest.approx(100 * e["test_acc_student"], abs=5e-3)
        assert float(m[5]) == pytest.approx(e["lr"], rel=1e-2)
        assert float(m[7]) == pytest.approx(e["samples_per_second"], rel=1e-3, abs=0.05)
    assert "failed" not in err
    assert re.search(r"train: 18/18 steps ", err), err


def test_metrics_log_has_time_losses_and_classes(runs):
    eps, steps = epoch_records(runs["c2kd"])
    times = [r["time"] for r in steps + eps]
    assert all(abs(t - os.path.getmtime(os.path.join(runs["c2kd"], "metrics.jsonl"))) < 3600 for t in times)
    assert [r["time"] for r in steps] == sorted(r["time"] for r in steps)
    for e in eps:
        for k in ("val_loss_student", "test_loss_student", "val_loss_teacher", "test_loss_teacher"):
            assert e[k] > 0
        assert len(e["val_class_acc_student"]) == len(e["test_class_acc_teacher"]) == 3
        assert e["samples_per_second"] > 0
    # the best epoch's test figures are those of RUN/eval/ (the same weights, best.h5)
    ej = json.load(open(os.path.join(runs["c2kd"], "eval", "eval.json")))
    best = eps[ej["epoch"] - 1]
    assert best["test_acc_student"] == ej["top1"]
    assert best["test_loss_student"] == pytest.approx(ej["loss"], rel=1e-12)
    assert best["test_class_acc_student"] == [pc["accuracy"] for pc in ej["per_class"]]


def test_tensorboard_and_csv(venv, runs, tmp_path):
    """python -m c2kd.tb / c2kd.csv in the venv; the event file read back twice: with the
    package's reader, and with protobuf's own decoder (python3-protobuf) on records split
    by hand, every CRC-32C checked against a table-free bitwise implementation here."""
    run_dir = str(tmp_path / "run")
    shutil.copytree(runs["c2kd"], run_dir)
    r = vrun(venv, "import runpy; runpy.run_module('c2kd.tb', run_name='__main__')", tmp_path, run_dir)
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    assert os.path.dirname(path) == os.path.join(run_dir, "tb") and os.path.basename(path).startswith("events.out.tfevents.")
    r = vrun(venv, "import runpy; runpy.run_module('c2kd.csv', run_name='__main__')", tmp_path, run_dir)
    assert r.returncode == 0, r.stderr
    eps, steps = epoch_records(run_dir)

    def crc32c(b):
        c = 0xFFFFFFFF
        for x in b:
            c ^= x
            for _ in range(8):
                c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
        return c ^ 0xFFFFFFFF

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)

    def masked(b):
        c = crc32c(b)
        return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF

    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    fd = descriptor_pb2.FileDescriptorProto(name="ev.proto", package="t")
    val = fd.message_type.add(name="Value")
    val.field.add(name="tag", number=1, type=9, label=1)
    val.field.add(name="simple_value", number=2, type=2, label=1)
    summ = fd.message_type.add(name="Summary")
    summ.field.add(name="value", number=1, type=11, label=3, type_name=".t.Value")
    ev = fd.message_type.add(name="Event")
    ev.field.add(name="wall_time", number=1, type=1, label=1)
    ev.field.add(name="step", number=2, type=3, label=1)
    ev.field.add(name="file_version", number=3, type=9, label=1)
    ev.field.add(name="summary", number=5, type=11, label=1, type_name=".t.Summary")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    Event = message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName("t.Event"))
    data = open(path, "rb").read()
    events, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 8], "little")
        assert int.from_bytes(data[i + 8:i + 12], "little") == masked(data[i:i + 8])
        body = data[i + 12:i + 12 + n]
        assert int.from_bytes(data[i + 12 + n:i + 16 + n], "little") == masked(body)
        e = Event()
        e.ParseFromString(body)
        events.append(e)
        i += 16 + n
    assert events[0].file_version == "brain.Event:2"
    got = {}
    for e in events[1:]:
        for v in e.summary.value:
            got[(v.tag, e.step)] = (v.simple_value, e.wall_time)
    for s in steps:
        assert got[("step/loss", s["step"])] == (pytest.approx(s["loss"], rel=1e-6), s["time"])
    for e in eps:
        assert got[("epoch/test_acc_student", e["step"])][0] == pytest.approx(e["test_acc_student"], rel=1e-6)
        assert got[("epoch/val_loss_teacher", e["step"])][0] == pytest.approx(e["val_loss_teacher"], rel=1e-6)
        for c, name in enumerate(CLASSES):
            assert got[(f"epoch/test_class_acc_student/{name}", e["step"])][0] == \
                pytest.approx(e["test_class_acc_student"][c], rel=1e-6)
    r = vrun(venv, "import sys, c2kd.tb as t; print(len(t.read_events(sys.argv[1])))", tmp_path, path)
    assert r.returncode == 0 and int(r.stdout) == len(events), r.stderr
    with open(os.path.join(run_dir, "epochs.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(eps)
    for row, e in zip(rows, eps):
        assert float(row["test_acc_student"]) == e["test_acc_student"] and int(row["epoch"]) == e["epoch"]
        assert float(row["val_class_acc_student/cat"]) == e["val_class_acc_student"][1]
    with open(os.path.join(run_dir, "steps.csv"), newline="") as f:
        srows = list(csv.DictReader(f))
    assert [float(r["loss"]) for r in srows] == [s["loss"] for s in steps]


def test_plots(runs):
    """No teacher in a no-KD title; round ticks; the confusion matrix beside the curves."""
    none = open(os.path.join(runs["none"], "curves.svg")).read()
    title = re.search(r"<text x='480' y='20'[^>]*>([^<]*)</text>", none)[1]
    assert "no KD" in title and "audio" not in title and "->" not in title and "&gt;" not in title
    for svg in (none, open(os.path.join(runs["c2kd"], "curves.svg")).read()):
        for anchor in ("end", "middle"):  # y ticks, x ticks: one increasing run per panel
            ticks = [float(t) for t in re.findall(rf"font-size='11' text-anchor='{anchor}'>(-?[\d.]+)</text>", svg)]
            runs_ = [[ticks[0]]]
            for t in ticks[1:]:
                (runs_[-1].append(t) if t > runs_[-1][-1] else runs_.append([t]))
            assert len(runs_) == 2, ticks
            for seq in runs_:
                step = seq[1] - seq[0]
                mant = step / 10 ** math.floor(math.log10(step))
                assert any(abs(mant - k) < 1e-6 for k in (1, 2, 5)), seq  # 1, 2 or 5 x 10^k
                assert all(abs(b - a - step) < 1e-6 * step for a, b in zip(seq, seq[1:])), seq
                assert abs(seq[0] / step - round(seq[0] / step)) < 1e-6, seq
        assert "confusion" in svg.lower() or "test, best epoch" in svg
        for c in CLASSES:
            assert f">{c}</text>" in svg
    kd = open(os.path.join(runs["c2kd"], "curves.svg")).read()
    assert "c2kd audio-&gt;visual" in kd


# ---------------------------------------------------------------- no silent footguns


@pytest.mark.parametrize("method", ["kd", "nkd", "c2kd", "review", "shake"])
def test_distillation_without_a_teacher_is_refused(runs, tmp_path, method):
    out = tmp_path / "r"
    r = run([binary("train"), *BASE, "--data", runs["data"], "--out", out, "--method", method])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--teacher-ckpt" in lines[0] and "--teacher-init random" in lines[0], r.stderr
    assert not os.path.exists(out)
    r = run([binary("train"), *BASE, "--data", runs["data"], "--out", out, "--method", method, "--teacher-init",
             "random", "--teacher-ckpt", os.path.join(runs["teacher"], "best.h5")])
    assert r.returncode == 2 and "exclude" in r.stderr


def test_teacher_init_random_runs_and_is_recorded(runs, tmp_path):
    out = tmp_path / "r"
    r = run([binary("train"), *BASE, "--data", runs["data"], "--out", out, "--method", "kd", "--teacher-init",
             "random", "--epochs", "1", "--steps", "2"])
    assert r.returncode == 0, r.stderr
    assert json.load(open(out / "options.json"))["teacher-init"] == "random"


def git_describe():
    r = run(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    return r.stdout.strip() if r.returncode == 0 else None


def test_version_and_revision_recorded(runs):
    r = run([binary("train"), "--version"])
    assert r.returncode == 0
    m = re.match(r"train \(c2kd\) (\S+), git revision (\S+)$", r.stdout.strip())
    assert m, r.stdout
    # the build's revision is git's for this checkout (make test builds first), or "unknown" outside git
    if git_describe() is None:
        assert m[2] == "unknown"
    else:
        h = re.search(r"(?:^|-g)([0-9a-f]{7,40})(?:-dirty)?$", m[2])
        # a commit of this checkout's history (the build may predate the last commit outside make test)
        assert h and run(["git", "-C", ROOT, "merge-base", "--is-ancestor", h[1], "HEAD"]).returncode == 0, m[2]
    for name in ("c2kd", "none", "teacher"):
        for f in ("options.json", "result.json"):
            j = json.load(open(os.path.join(runs[name], f)))
            assert j["version"] == m[1] and j["git_revision"] == m[2], (name, f)


def test_resume_extends_epochs(runs, tmp_path):
    """--resume RUN --epochs N: the poly schedule recomputed for N from the next epoch on;
    options.json records N; the epochs trained keep their rates."""
    out = tmp_path / "r"
    args = [*BASE, "--data", runs["data"], "--out", out, "--method", "none", "--epochs", "2", "--lr", "0.05"]
    r = run([binary("train"), *args])
    assert r.returncode == 0, r.stderr
    before, _ = epoch_records(out)
    r = run([binary("train"), "--resume", out, "--epochs", "4"])
    assert r.returncode == 0, r.stderr
    eps, _ = epoch_records(out)
    assert [e["epoch"] for e in eps] == [1, 2, 3, 4]
    assert eps[:2] == before
    poly = lambda e, n: 1e-4 + (0.05 - 1e-4) * (1 - e / n) ** 0.9  # noqa: E731 (docs/METHOD.md)
    assert [e["lr"] for e in eps] == pytest.approx([poly(0, 2), poly(1, 2), poly(2, 4), poly(3, 4)], rel=1e-12)
    assert json.load(open(out / "options.json"))["epochs"] == 4
    res = json.load(open(out / "result.json"))
    assert res["epochs"] == 4 and res["complete"] and res["epochs_completed"] == 4
    r = run([binary("train"), "--resume", out, "--epochs", "3"])
    assert r.returncode == 1 and "4" in r.stderr and "3" in r.stderr


# ---------------------------------------------------------------- the docs' Python snippets


def doc_snippets():
    """Every ```python block of README.md, docs/*.md and python/README.md, with the
    <!-- doctest: setup: CODE --> or <!-- doctest: skip: REASON --> comment right above it."""
    files = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "python", "README.md"),
             *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
    out = []
    for path in files:
        lines = open(path, encoding="utf-8").read().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```python":
                j = i + 1
                while lines[j].strip() != "```":
                    j += 1
                prev = lines[i - 1].strip() if i else ""
                m = re.match(r"<!-- doctest: (setup|skip): (.*) -->$", prev)
                out.append((f"{os.path.relpath(path, ROOT)}:{i + 1}", "\n".join(lines[i + 1:j]),
                            m[1] if m else None, m[2] if m else ""))
                i = j
            i += 1
    return out


SNIPPETS = doc_snippets()


def test_docs_have_python_snippets():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("where,code,kind,arg", SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_doc_snippet_runs(venv, runs, tmp_path, where, code, kind, arg):
    """Each snippet runs in the venv in a folder where data/ave, data/vggsound (an ingested
    folder) and RUN (a finished c2kd run) exist, as the docs name them."""
    if kind == "skip":
        assert arg, f"{where}: a skipped snippet says why"
        pytest.skip(arg)
    os.makedirs(tmp_path / "data")
    for name in ("ave", "vggsound"):
        os.symlink(runs["data"], tmp_path / "data" / name)
    shutil.copytree(runs["c2kd"], tmp_path / "RUN")
    r = vrun(venv, (arg + "\n" if kind == "setup" else "") + code, tmp_path)
    assert r.returncode == 0, f"{where}:\n{code}\n{r.stderr}"


def test_command_lines_of_the_package(venv, runs, tmp_path):
    """python -m c2kd.export_model / c2kd.tb / c2kd.csv from the shell: outputs, and one line
    naming the input with exit 1 when it cannot be read."""
    ckpt = os.path.join(runs["teacher"], "best.h5")
    mod = "import runpy, sys; sys.argv[0] = sys.argv[1]; del sys.argv[1]; runpy.run_module(sys.argv[0], run_name='__main__')"
    r = vrun(venv, mod, tmp_path, "c2kd.export_model", ckpt, tmp_path / "t.pt", "--network", "teacher")
    assert r.returncode == 0 and os.path.getsize(tmp_path / "t.pt") > 0, r.stderr
    for args, needle in ((["c2kd.export_model", ckpt, tmp_path / "t.zip", "--network", "teacher"], ".pt"),
                         (["c2kd.export_model", ckpt, tmp_path / "s.pt"], "pretrain"),
                         (["c2kd.export_model", tmp_path / "none.h5", tmp_path / "n.pt"], "none.h5"),
                         (["c2kd.tb", tmp_path / "norun"], "norun"),
                         (["c2kd.csv", tmp_path / "norun"], "norun")):
        r = vrun(venv, mod, tmp_path, *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and needle in lines[0], (args, r.stderr)
    assert not os.path.exists(tmp_path / "t.zip") and not os.path.exists(tmp_path / "n.pt")
