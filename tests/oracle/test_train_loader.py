"""The trainer's loader, seen from outside through `train --dump-batches`:
the prepared batches equal an independent h5py + PIL + torch computation, the
shuffle is a seeded permutation per epoch, the augmentation follows
RandomResizedCrop + flip, and runs are reproducible.

Tolerances: spectrograms 1e-5 (float32 vs float64 standardisation); frames:
PIL and TurboJPEG here both use libjpeg-turbo's default (islow DCT, fancy
upsampling), so decoded pixels are expected identical and the only difference
is float32 vs float64 interpolation (~1e-6); we allow one grey level
(1/255/0.225 = 0.0175) at most and 1e-3 on average, in case another libjpeg
build rounds a pixel differently."""
import glob
import os

import numpy as np
import pytest

import train_util as u
from conftest import binary, run

S = 20
BASE = ["--width", "4", "--batch-size", "4", "--image-size", str(S), "--device", "cpu", "--threads", "1",
        "--lr", "0.01", "--teacher-init", "random"]  # c2kd (the default) from an untrained teacher


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ld") / "data")
    samples = u.make_dataset(root, counts={"train": 18, "val": 5, "test": 5}, sizes=((40, 30), (33, 47), (64, 20)))
    return root, samples


def train(*args):
    r = run([binary("train"), *BASE, *args])
    assert r.returncode == 0, r.stderr
    return r


def load_dump(d, step):
    out = {}
    for k in ("audio", "visual", "labels", "index", "crops"):
        p = os.path.join(d, f"batch-{step:05d}-{k}.npy")
        if os.path.exists(p):
            out[k] = np.load(p)
    return out


def check_frames(visual, ref):
    diff = np.abs(visual.astype(np.float64) - ref)
    assert diff.max() <= 0.0175 and diff.mean() < 1e-3, (diff.max(), diff.mean())


def test_no_augment_batches_equal_independent_computation(data, tmp_path):
    root, samples = data
    dump = str(tmp_path / "dump")
    train("--data", root, "--out", str(tmp_path / "run"), "--epochs", "1", "--no-augment", "--no-shuffle",
          "--dump-batches", dump)
    steps = sorted(glob.glob(os.path.join(dump, "batch-*-labels.npy")))
    assert len(steps) == 18 // 4  # the last partial batch (2 samples) is dropped in training
    for s in range(len(steps)):
        b = load_dump(dump, s)
        assert list(b["index"]) == list(range(4 * s, 4 * s + 4))  # shard order
        for i, gi in enumerate(b["index"]):
            sid, label, spec, jpegs = samples["train"][gi]
            assert b["labels"][i] == label
            # per-clip standardisation of the float16 spectrogram (recipe normalize=none)
            np.testing.assert_allclose(b["audio"][i, 0], u.standardize(spec), atol=1e-5)
            check_frames(b["visual"][i, 0], u.eval_frame(jpegs[0], S))
            h, w = u.decode(jpegs[0]).shape[:2]
            assert list(b["crops"][i]) == [0, 0, w, h, 0, w, h]


def test_augmented_batches_follow_their_crops(data, tmp_path):
    root, samples = data
    dump = str(tmp_path / "dump")
    train("--data", root, "--out", str(tmp_path / "run"), "--epochs", "3", "--dump-batches", dump, "--seed", "5")
    flips, areas, ratios, crops_seen = [], [], [], 0
    for s in range(3 * 4):
        b = load_dump(dump, s)
        for i, gi in enumerate(b["index"]):
            _, label, spec, jpegs = samples["train"][gi]
            x, y, w, h, flip, sw, sh = (int(v) for v in b["crops"][i])
            img = u.decode(jpegs[0])
            assert (sh, sw) == img.shape[:2]
            assert 0 <= x and 0 <= y and x + w <= sw and y + h <= sh and w > 0 and h > 0
            check_frames(b["visual"][i, 0], u.eval_frame(jpegs[0], S, (x, y, w, h, flip)))
            np.testing.assert_allclose(b["audio"][i, 0], u.standardize(spec), atol=1e-5)
            flips.append(flip)
            areas.append(w * h / (sw * sh))
            ratios.append(w / h)
            crops_seen += 1
    assert crops_seen == 48
    assert 0.2 < np.mean(flips) < 0.8
    assert min(areas) < 0.5 and max(areas) <= 1.0 and min(areas) >= 0.08 * 0.8
    # torchvision's ratio range (3/4, 4/3), up to the rounding of small sides, or the centre-crop fallback
    assert all(0.5 < r < 2.0 for r in ratios)


def epoch_orders(dump, epochs, nb):
    out = []
    for e in range(epochs):
        idx = np.concatenate([load_dump(dump, e * nb + s)["index"] for s in range(nb)])
        out.append(idx)
    return out


def test_shuffle_is_a_seeded_permutation_per_epoch(data, tmp_path):
    root, _ = data
    orders = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        dump = str(tmp_path / f"dump{name}")
        train("--data", root, "--out", str(tmp_path / f"run{name}"), "--epochs", "3", "--no-augment",
              "--dump-batches", dump, "--seed", str(seed), "--loader-threads", "1" if name == "a" else "3")
        orders[name] = epoch_orders(dump, 3, 4)
    for e in range(3):
        o = orders["a"][e]
        assert len(set(o.tolist())) == 16 and set(o.tolist()) <= set(range(18))  # distinct, 2 dropped
        np.testing.assert_array_equal(o, orders["b"][e])  # same seed (other thread count): same order
    assert not np.array_equal(orders["a"][0], orders["a"][1])  # a new permutation each epoch
    assert not np.array_equal(orders["a"][0], orders["c"][0])  # another seed, another order
    assert orders["a"][0].tolist() != list(range(16))


def test_recipe_already_standardised_is_left_alone(tmp_path):
    root = str(tmp_path / "data")
    recipe = {"spectro": {"normalize": "clip"}, "frames": {"count": 1}}
    samples = u.make_dataset(root, counts={"train": 8, "test": 4}, recipe=recipe)
    dump = str(tmp_path / "dump")
    train("--data", root, "--out", str(tmp_path / "run"), "--epochs", "1", "--no-augment", "--no-shuffle",
          "--dump-batches", dump, "--dump-count", "1")
    b = load_dump(dump, 0)
    assert not os.path.exists(os.path.join(dump, "batch-00001-labels.npy"))
    for i in range(4):
        np.testing.assert_array_equal(b["audio"][i, 0], samples["train"][i][2].astype(np.float32))


def test_three_frames_float32_shards(tmp_path):
    """F = 3 (VGGSound-like: fold mode by default), float32 spectrograms."""
    root = str(tmp_path / "data")
    samples = u.make_dataset(root, counts={"train": 9, "test": 4}, F=3, dtype=np.float32)
    dump = str(tmp_path / "dump")
    r = train("--data", root, "--out", str(tmp_path / "run"), "--epochs", "1", "--no-augment", "--no-shuffle",
              "--dump-batches", dump)
    assert "test serves as val" in r.stderr
    b = load_dump(dump, 1)
    assert b["visual"].shape == (4, 3, 3, S, S)
    for i, gi in enumerate(b["index"]):
        _, _, spec, jpegs = samples["train"][gi]
        np.testing.assert_allclose(b["audio"][i, 0], u.standardize(spec), atol=1e-5)
        for k in range(3):
            check_frames(b["visual"][i, k], u.eval_frame(jpegs[k], S))
