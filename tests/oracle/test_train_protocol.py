"""train's options for the authors' protocol (docs/METHOD.md, "Protocol of the authors'
code"): --lr-horizon (the poly schedule's horizon, fixed at 100 epochs in their code) and
--best-tie (their distillation keeps the LAST of equal validation accuracies)."""
import json
import os

import numpy as np
import pytest

import train_util as u
from conftest import binary, run

BASE = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1",
        "--method", "none"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("protocol") / "data")
    u.make_dataset(root, counts={"train": 8, "val": 5, "test": 5})
    return root


def epochs(out):
    return [m for m in u.metrics(out) if m.get("type") == "epoch"]


def poly(lr, e, n):
    """The authors' adjust_lr: 1e-4 + (lr - 1e-4)(1 - e/n)^0.9."""
    return 1e-4 + (lr - 1e-4) * max(0.0, 1 - e / n) ** 0.9


@pytest.mark.parametrize("horizon", [0, 3, 100])
def test_lr_horizon(data, tmp_path, horizon):
    out = str(tmp_path / "run")
    r = run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "4", "--lr", "0.01",
             "--lr-horizon", str(horizon)])
    assert r.returncode == 0, r.stderr
    n = horizon or 4
    recs = epochs(out)
    assert [m["epoch"] for m in recs] == [1, 2, 3, 4]
    for m in recs:  # epoch records count from 1, the schedule from 0
        assert m["lr"] == pytest.approx(poly(0.01, m["epoch"] - 1, n), rel=1e-6), (horizon, m)
    steps = [m for m in u.metrics(out) if m.get("type") == "step"]
    assert all(s["lr"] == pytest.approx(poly(0.01, s["epoch"] - 1, n), rel=1e-6) for s in steps)
    assert json.load(open(os.path.join(out, "options.json")))["lr-horizon"] == horizon


def test_best_tie_first_or_last(data, tmp_path):
    """Same training either way; the best epoch is the first or the last of the equal maxima.
    A learning rate of 1e-9 keeps the predictions (and so the validation accuracy) equal over
    epochs, so a tie happens."""
    res, vals = {}, {}
    for tie in ("first", "last"):
        out = str(tmp_path / tie)
        r = run([binary("train"), *BASE, "--data", data, "--out", out, "--epochs", "4", "--lr", "1e-9",
                 "--eval-from", "2", "--best-tie", tie])
        assert r.returncode == 0, r.stderr
        recs = [m for m in epochs(out) if m.get("val_acc_student") is not None]
        assert [m["epoch"] for m in recs] == [2, 3, 4]  # evaluated from --eval-from on
        vals[tie] = [m["val_acc_student"] for m in recs]
        res[tie] = json.load(open(os.path.join(out, "result.json")))
    assert vals["first"] == vals["last"]
    v = vals["first"]
    best = max(v)
    tied = [e for e, a in zip((2, 3, 4), v) if a == best]
    assert len(tied) >= 2, f"no tie to test: {v}"
    assert res["first"]["best_epoch"] == tied[0] and res["last"]["best_epoch"] == tied[-1]


def test_best_tie_bad_value(data, tmp_path):
    r = run([binary("train"), *BASE, "--data", data, "--out", str(tmp_path / "x"), "--best-tie", "middle"])
    assert r.returncode == 2 and "best-tie" in r.stderr
    r = run([binary("train"), *BASE, "--data", data, "--out", str(tmp_path / "y"), "--lr-horizon", "-1"])
    assert r.returncode == 2 and "lr-horizon" in r.stderr


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_spec_standardize(tmp_path, mode):
    """auto: each clip standardised (the recipe says normalize=none); off: the stored float16
    spectrogram itself, as the authors' loader feeds it."""
    root = str(tmp_path / "data")
    samples = u.make_dataset(root, counts={"train": 8, "val": 4, "test": 4})
    dump = str(tmp_path / "dump")
    r = run([binary("train"), *BASE, "--data", root, "--out", str(tmp_path / "run"), "--epochs", "1",
             "--no-augment", "--no-shuffle", "--dump-batches", dump, "--spec-standardize", mode,
             "--student", "audio", "--teacher", "visual"])
    assert r.returncode == 0, r.stderr
    for s in range(2):
        audio = np.load(os.path.join(dump, f"batch-{s:05d}-audio.npy"))
        index = np.load(os.path.join(dump, f"batch-{s:05d}-index.npy"))
        for i, gi in enumerate(index):
            spec = samples["train"][gi][2]
            if mode == "off":
                np.testing.assert_array_equal(audio[i, 0], np.asarray(spec, np.float32))
            else:
                np.testing.assert_allclose(audio[i, 0], u.standardize(spec), atol=1e-5)
