"""--bad-samples: a sample whose checksum does not match (or whose JPEG does
not decode) is never trained on silently. stop: exit 1 naming the sample and
its shard. skip: every such sample is named on stderr and in metrics.jsonl
and left out; in evaluation the accuracies are those of the shards without
it, in training the run stays deterministic and resumable."""
import json
import os

import h5py
import numpy as np
import pytest

import train_util as u
from conftest import binary, run

BASE = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1",
        "--epochs", "2", "--method", "kd", "--teacher-init", "random"]
COUNTS = {"train": 12, "val": 5, "test": 6}


def records(out, kind):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        recs = [json.loads(l) for l in f]
    for r in recs:
        for k in ("seconds", "time", "samples_per_second"):  # wall-clock measures
            r.pop(k, None)
    return [r for r in recs if r["type"] == kind] if kind else recs


def assert_same_epochs(a, b):
    """The epoch records of two runs are the same training. Mean evaluation losses: the same
    samples in other batches (a skipped sample shifts the rest), whose float32 logits come from
    GEMMs blocked for another batch size, so they agree to float32 rounding only."""
    ea, eb = records(a, "epoch"), records(b, "epoch")
    assert len(ea) == len(eb)
    for x, y in zip(ea, eb):
        for k in [k for k in x if "_loss_" in k]:
            assert x.pop(k) == pytest.approx(y.pop(k), rel=1e-5), k
    assert ea == eb


def weights(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k


def corrupted(tmp_path, split, name="bad"):
    root = str(tmp_path / name)
    u.make_dataset(root, counts=COUNTS, version=2)
    u.corrupt_sample(root, split, f"{split}0001", "spec")
    u.corrupt_sample(root, split, f"{split}0003", "jpeg")
    return root


def test_stop_names_the_sample_and_its_shard(tmp_path):
    root = corrupted(tmp_path, "train")
    r = run([binary("train"), *BASE, "--data", root, "--out", str(tmp_path / "r"), "--no-shuffle"])
    assert r.returncode == 1, r.stderr
    lines = [l for l in r.stderr.splitlines() if "checksum mismatch" in l]
    assert len(lines) == 1, r.stderr
    # the loader's threads read ahead: whichever corrupted sample is met first stops the run
    assert ("train0001" in lines[0] or "train0003" in lines[0]) and "train-00000.h5" in lines[0] \
        and "split train" in lines[0], lines[0]
    assert not os.path.exists(tmp_path / "r" / "last.h5")


def test_skip_in_evaluation_equals_shards_without_them(tmp_path):
    root = corrupted(tmp_path, "test")
    clean = str(tmp_path / "clean")
    u.make_dataset(clean, counts=COUNTS, version=2, drop=("test0001", "test0003"))
    ra = run([binary("train"), *BASE, "--data", root, "--out", str(tmp_path / "a"), "--bad-samples", "skip"])
    assert ra.returncode == 0, ra.stderr
    rb = run([binary("train"), *BASE, "--data", clean, "--out", str(tmp_path / "b")])
    assert rb.returncode == 0, rb.stderr
    for sid, what in (("test0001", "spec"), ("test0003", "record")):
        named = [l for l in ra.stderr.splitlines() if sid in l]
        assert len(named) == 1 and "test-00000.h5" in named[0] and "skipped" in named[0], ra.stderr
    bad = records(str(tmp_path / "a"), "bad_sample")
    assert sorted((b["id"], b["epoch"]) for b in bad) == [("test0001", 1), ("test0001", 2), ("test0003", 1),
                                                        ("test0003", 2)]
    assert all(b["split"] == "test" and "step" not in b for b in bad)
    assert_same_epochs(str(tmp_path / "a"), str(tmp_path / "b"))  # test accuracies over the 4 good samples
    assert_same_weights(str(tmp_path / "a" / "last.h5"), str(tmp_path / "b" / "last.h5"))


def test_skip_in_training_is_deterministic_and_resumable(tmp_path):
    root = corrupted(tmp_path, "train")
    full = [binary("train"), *BASE, "--data", root, "--bad-samples", "skip"]
    r1 = run([*full, "--out", str(tmp_path / "a")])
    assert r1.returncode == 0, r1.stderr
    for sid in ("train0001", "train0003"):
        assert sum(sid in l for l in r1.stderr.splitlines()) == 1, r1.stderr
    r2 = run([*full, "--out", str(tmp_path / "b")])
    assert r2.returncode == 0, r2.stderr
    assert records(str(tmp_path / "a"), None) == records(str(tmp_path / "b"), None)
    assert_same_weights(str(tmp_path / "a" / "last.h5"), str(tmp_path / "b" / "last.h5"))
    bad = records(str(tmp_path / "a"), "bad_sample")
    assert sorted({b["id"] for b in bad}) == ["train0001", "train0003"]
    assert all(b["split"] == "train" and b["step"] >= 1 for b in bad)
    steps = records(str(tmp_path / "a"), "step")
    assert len(steps) == 2 * (12 // 4)  # full batches: no step lost
    # stopped inside epoch 1, then resumed: the same log and weights
    r3 = run([*full, "--out", str(tmp_path / "c"), "--steps", "2"])
    assert r3.returncode == 0, r3.stderr
    r4 = run([binary("train"), "--resume", str(tmp_path / "c")])
    assert r4.returncode == 0, r4.stderr
    assert records(str(tmp_path / "c"), None) == records(str(tmp_path / "a"), None)
    assert_same_weights(str(tmp_path / "a" / "last.h5"), str(tmp_path / "c" / "last.h5"))


def test_undecodable_jpeg_is_a_bad_sample(tmp_path):
    """A version 1 shard (no checksums): the JPEG that does not decode is caught."""
    root = str(tmp_path / "d")
    samples = u.make_dataset(root, counts={"train": 8, "test": 4})
    s = samples["train"][:7]
    jp = [list(x[3]) for x in s]
    jp[2][0] = b"\0" * 40
    u.write_shard(os.path.join(root, "train-00000.h5"), "train", [x[0] for x in s], [x[1] for x in s],
                  np.stack([x[2] for x in s]), jp, ["dog", "cat", "car"], 1, u.DEFAULT_RECIPE)
    r = run([binary("train"), *BASE, "--data", root, "--out", str(tmp_path / "r"), "--bad-samples", "skip"])
    assert r.returncode == 0, r.stderr
    named = [l for l in r.stderr.splitlines() if "train0002" in l]
    assert len(named) == 1 and "JPEG" in named[0] and "train-00000.h5" in named[0], r.stderr


def test_bad_samples_is_a_choice():
    r = run([binary("train"), "--data", "x", "--out", "y", "--bad-samples", "maybe"])
    assert r.returncode == 2 and "bad-samples" in r.stderr


# Issue 16 item 4: a JPEG whose header does not parse left the decoder
# unusable, and every later JPEG on that decoder failed too (12 faults in 3
# shards for 1 bad sample; "no good sample left"). One bad sample is one fault.
HEADER_BREAKS = ("height0", "huge", "dqt", "soi")


def verify_lines(root):
    with open(os.path.join(root, "failures.tsv"), "w"):
        pass  # what an ingest leaves next to its shards (verify asks for it)
    r = run([binary("store"), "verify", root])
    return r, [l for l in r.stdout.splitlines() if not l.endswith("fault(s)")]


@pytest.mark.parametrize("how", HEADER_BREAKS)
def test_one_bad_jpeg_header_is_one_fault_in_verify(tmp_path, how):
    counts = {"train": 20, "val": 5, "test": 6}
    root = str(tmp_path / "d")
    u.make_dataset(root, counts=counts, version=2)
    # the folder-level lines (the test's index.json) are the same before and after
    _, before = verify_lines(root)
    # early in the folder's first shard: every later JPEG goes through the same decoder
    shard = u.break_jpeg_header(root, "train", "train0001", how)
    r, after = verify_lines(root)
    assert r.returncode == 1, r.stdout
    new = [l for l in after if l not in before]
    assert len(after) == len(before) + 1 and len(new) == 1, r.stdout
    assert new[0].startswith(f"store: {shard}: ") and "train0001" in new[0] and "JPEG" in new[0], new
    assert r.stdout.splitlines()[-1].endswith(f" {len(before) + 1} fault(s)"), r.stdout
    n = sum(counts.values())
    assert f"{n} samples, {n - 1} JPEG frames checked" in r.stdout, r.stdout


@pytest.mark.parametrize("how", ("height0", "dqt"))
def test_skip_leaves_out_exactly_the_bad_jpeg_header(tmp_path, how):
    """Evaluation: the same as the shards without the sample. Training: the
    sample is left out and nothing else (the reader goes on decoding)."""
    root = str(tmp_path / "d")
    u.make_dataset(root, counts=COUNTS, version=2)
    u.break_jpeg_header(root, "test", "test0001", how)
    u.break_jpeg_header(root, "train", "train0002", how)
    clean = str(tmp_path / "clean")
    u.make_dataset(clean, counts=COUNTS, version=2, drop=("test0001",))
    u.break_jpeg_header(clean, "train", "train0002", how)
    ra = run([binary("train"), *BASE, "--data", root, "--out", str(tmp_path / "a"), "--bad-samples", "skip"])
    assert ra.returncode == 0, ra.stderr
    rb = run([binary("train"), *BASE, "--data", clean, "--out", str(tmp_path / "b"), "--bad-samples", "skip"])
    assert rb.returncode == 0, rb.stderr
    for sid in ("test0001", "train0002"):
        named = [l for l in ra.stderr.splitlines() if sid in l]
        assert len(named) == 1 and "skipped" in named[0] and "JPEG" in named[0], ra.stderr
    assert sorted({b["id"] for b in records(str(tmp_path / "a"), "bad_sample")}) == ["test0001", "train0002"]
    assert {b["id"] for b in records(str(tmp_path / "b"), "bad_sample")} == {"train0002"}
    assert len(records(str(tmp_path / "a"), "step")) == 2 * (12 // 4)
    assert_same_epochs(str(tmp_path / "a"), str(tmp_path / "b"))
    assert_same_weights(str(tmp_path / "a" / "last.h5"), str(tmp_path / "b" / "last.h5"))
