"""python/c2kd_shards.py (the PyTorch reader of the shards) against `train --dump-batches`
on folders made by `ingest` from generated clips (tools/gen_dataset.py).

Tolerances (why not exact):
- spectrograms: rtol 3e-7 + atol 1e-7 (about 2 float32 ulps). Both sides compute the
  per-clip mean and std in float64 and round once to float32; only the order of the float64
  sums differs (numpy's pairwise sum against the C loop), which can move a value across a
  float32 rounding boundary: 1 ulp.
- frames: 2e-6 absolute (|values| <= 2.7, so about 8 float32 ulps). The reader repeats the
  CPU prep_frames' float32 operations in the same order (exact here: x86-64 without FMA
  contraction; measured max difference 0); the margin covers a build that contracts a*b+c
  into an FMA (at most half an ulp of a pixel sum ~ 3e-7 after normalisation). Decoding is
  libjpeg-turbo on both sides (PIL and TurboJPEG, default islow DCT and fancy upsampling),
  so pixels are identical; a different libjpeg would show here as a grey level (0.0175).
"""
import glob
import json
import os
import random
import subprocess
import sys

import h5py
import numpy as np
import pytest

import train_util as u
from conftest import ROOT, binary, run
from ingest_util import generate

sys.path.insert(0, os.path.join(ROOT, "python"))
import c2kd_shards as cs  # noqa: E402

S = 32
SPEC_TOL = dict(rtol=3e-7, atol=1e-7)
FRAME_TOL = 2e-6
TRAIN = ["--width", "4", "--batch-size", "4", "--image-size", str(S), "--device", "cpu", "--threads", "1",
         "--epochs", "1", "--no-augment", "--no-shuffle", "--teacher-init", "random"]  # c2kd, the default


def ingest(base, layout, *extra):
    root = base / layout
    generate(layout, root, classes=3, per_class=6, seconds=2, bad=False, size="96x64")
    out = base / f"out_{layout}"
    r = run([binary("ingest"), "--dataset", layout, "--root", root, "--out", out, "--jobs", "2",
             "--shard-items", "3", "--set", "duration=2", *extra])
    assert r.returncode == 0, r.stderr
    return str(out)


@pytest.fixture(scope="module")
def ave(tmp_path_factory):
    """F = 1, several shards (3 rows each), splits train/val/test."""
    return ingest(tmp_path_factory.mktemp("pyr_ave"), "ave")


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    """F = 3 (the vggsound preset), splits train/test."""
    return ingest(tmp_path_factory.mktemp("pyr_vgg"), "vggsound")


def dump_batches(data, tmp_path, *extra):
    dump = str(tmp_path / "dump")
    r = run([binary("train"), *TRAIN, "--data", data, "--out", str(tmp_path / "run"), "--dump-batches", dump, *extra])
    assert r.returncode == 0, r.stderr
    out = []
    for s in range(len(glob.glob(os.path.join(dump, "batch-*-labels.npy")))):
        out.append({k: np.load(os.path.join(dump, f"batch-{s:05d}-{k}.npy"))
                    for k in ("audio", "visual", "labels", "index")})
    return out


def compare(dumps, ours, F):
    assert len(dumps) == len(ours) > 0
    worst = 0.0
    for d, o in zip(dumps, ours):
        np.testing.assert_array_equal(d["index"], o["index"])
        np.testing.assert_array_equal(d["labels"], o["label"])
        np.testing.assert_allclose(o["audio"], d["audio"], **SPEC_TOL)
        B = d["visual"].shape[0]
        diff = np.abs(o["visual"].reshape(B, F, 3, S, S) - d["visual"]).max()
        worst = max(worst, float(diff))
    assert worst <= FRAME_TOL, worst
    return worst


def test_f1_eval_batches_equal_train_dump(ave, tmp_path):
    dumps = dump_batches(ave, tmp_path)
    sp = cs.ShardSplit(ave, "train", image_size=S)
    assert len(sp.shards) > 1 and sp.F == 1 and not sp.fold
    ours = list(sp.batches(4, drop_last=True))  # train drops the last partial batch
    assert ours[0]["visual"].shape == (4, 3, S, S) and ours[0]["audio"].shape[:2] == (4, 1)
    compare(dumps, ours, 1)
    # the folded layout of the same frames is a reshape
    fold = cs.ShardSplit(ave, "train", image_size=S, visual_mode="fold").sample(0)["visual"]
    np.testing.assert_array_equal(fold, ours[0]["visual"][0][None])


@pytest.mark.parametrize("mode", ["stack", "fold"])
def test_f3_eval_batches_equal_train_dump(vgg, tmp_path, mode):
    dumps = dump_batches(vgg, tmp_path, "--visual-mode", mode)
    sp = cs.ShardSplit(vgg, "train", image_size=S, visual_mode=mode)
    assert sp.F == 3 and sp.fold == (mode == "fold")
    ours = list(sp.batches(4, drop_last=True))
    assert ours[0]["visual"].shape == ((4, 3, 3, S, S) if mode == "fold" else (4, 9, S, S))
    compare(dumps, ours, 3)


def test_samples_equal_h5py_and_torch_oracle(ave):
    """Independent of train: raw reads equal h5py, the evaluation transform equals
    torch's interpolate (float64) within the float32 rounding of the arithmetic."""
    sp = cs.ShardSplit(ave, "val", image_size=S)
    with open(os.path.join(ave, "index.json")) as f:
        idx = json.load(f)
    i = 0
    for sh in idx["splits"]["val"]["shards"]:
        with h5py.File(os.path.join(ave, sh["file"])) as h:
            off = h["video/offset"][:]
            for j in range(h["label"].shape[0]):
                r = sp.read(i)
                assert r["label"] == h["label"][j] and r["id"] == h["id"][j].decode()
                np.testing.assert_array_equal(r["spec"], h["audio/spec"][j])
                jp = h["video/jpeg"][off[j]:off[j + 1]].tobytes()
                assert r["jpegs"] == [jp]
                s = sp.sample(i)
                np.testing.assert_allclose(s["audio"][0], u.standardize(r["spec"]), atol=1e-5)
                assert np.abs(s["visual"] - u.eval_frame(jp, S)).max() < 1e-5
                i += 1
    assert i == len(sp)


def test_training_transform(ave):
    sp = cs.ShardSplit(ave, "train", image_size=S, train=True, seed=7)
    a, b = sp.sample(2)["visual"], sp.sample(2)["visual"]
    np.testing.assert_array_equal(a, b)  # seeded: a sample's draws depend on (seed, epoch, index)
    sp.set_epoch(1)
    assert not np.array_equal(a, sp.sample(2)["visual"])
    # the prepared frame is the crop + flip of its draw, resized as torch does
    jp = sp.read(2)["jpegs"][0]
    img = u.decode(jp)
    rng = random.Random("c2kd:7:1:2")
    x, y, w, h = cs.random_resized_crop(rng, img.shape[1], img.shape[0])
    flip = rng.random() < 0.5
    assert np.abs(sp.sample(2)["visual"] - u.eval_frame(jp, S, (x, y, w, h, flip))).max() < 1e-5
    # torchvision's rules: area 8-100 %, ratio 3/4-4/3 up to rounding, inside the image
    rng = random.Random(3)
    areas, flips = [], 0
    for _ in range(400):
        x, y, w, h = cs.random_resized_crop(rng, 96, 64)
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 64
        assert 0.7 < w / h < 1.45 or (w, h) == (85, 64)
        areas.append(w * h / (96 * 64))
        flips += rng.random() < 0.5
    assert 0.08 * 0.9 <= min(areas) < 0.2 and max(areas) <= 1.0
    assert 0.4 < flips / 400 < 0.6
    # audio is unaffected by the training transform
    np.testing.assert_array_equal(sp.sample(0)["audio"], cs.ShardSplit(ave, "train").sample(0)["audio"])


def test_torch_dataset_with_workers(ave):
    torch = pytest.importorskip("torch")
    ds = cs.ShardDataset(ave, "test", image_size=S)
    assert isinstance(ds, torch.utils.data.Dataset)
    ref = list(ds.data.batches(3))
    dl = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, persistent_workers=True)
    for epoch in range(2):
        got = list(dl)
        assert len(got) == len(ref)
        for g, r in zip(got, ref):
            assert g["audio"].dtype == torch.float32 and g["label"].dtype == torch.int64
            np.testing.assert_array_equal(g["visual"].numpy(), r["visual"])
            np.testing.assert_array_equal(g["audio"].numpy(), r["audio"])
            np.testing.assert_array_equal(g["label"].numpy(), r["label"])


def test_imports_without_torch(ave):
    code = ("import sys; sys.modules['torch'] = None; sys.path.insert(0, sys.argv[1]); import c2kd_shards as c; "
            "assert c.torch is None; d = c.ShardDataset(sys.argv[2], 'test', image_size=8); "
            "s = d[0]; print(type(s['visual']).__name__, s['visual'].shape)")
    r = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "python"), ave], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "ndarray" and "(3, 8, 8)" in r.stdout


def test_already_standardised_recipe_is_left_alone(tmp_path):
    root = str(tmp_path / "d")
    samples = u.make_dataset(root, counts={"train": 4, "test": 2}, recipe={"spectro": {"normalize": "clip"}})
    sp = cs.ShardSplit(root, "train", image_size=8)
    assert not sp.standardize
    np.testing.assert_array_equal(sp.sample(1)["audio"][0], samples["train"][1][2].astype(np.float32))
    assert cs.recipe_standardized('{"a": [{"normalise": true}]}')
    assert not cs.recipe_standardized('{"audio": {"normalize": "none"}}') and not cs.recipe_standardized("{bad")


def test_float32_shards(tmp_path):
    """Shards in index order; float32 spectrograms."""
    root = str(tmp_path / "d")
    samples = u.make_dataset(root, counts={"train": 9, "test": 2}, F=3, dtype=np.float32)
    sp = cs.ShardSplit(root, "train", image_size=8)
    assert len(sp) == 9 and len(sp.shards) == 2 and sp.locate(7) == (1, 0)
    np.testing.assert_allclose(sp.sample(8)["audio"][0], u.standardize(samples["train"][8][2]), atol=1e-5)


def test_bad_inputs(ave, tmp_path):
    with pytest.raises(cs.ShardError, match="not a folder"):
        cs.ShardSplit(str(tmp_path / "missing"), "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(cs.ShardError, match=r"no index.json: an unfinished ingest output .*rerun `ingest`"):
        cs.ShardSplit(str(empty), "train")
    with pytest.raises(cs.ShardError, match=r'no split "nope" \(splits: test, train, val\)'):
        cs.ShardSplit(ave, "nope")
    with pytest.raises(ValueError, match="visual_mode"):
        cs.ShardSplit(ave, "train", visual_mode="side")
    sp = cs.ShardSplit(ave, "train")
    with pytest.raises(IndexError, match="out of range"):
        sp.read(len(sp))
    # a copy with a listed shard missing, a shard that is not one, a newer version, a corrupt JPEG
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in glob.glob(os.path.join(ave, "*")):
        if not p.endswith("train-00000.h5"):
            os.symlink(p, bad / os.path.basename(p))
    with pytest.raises(cs.ShardError, match="train-00000.h5: missing"):
        cs.ShardSplit(str(bad), "train")
    (bad / "train-00000.h5").write_bytes(b"not hdf5")
    with pytest.raises(cs.ShardError, match="train-00000.h5: cannot open"):
        cs.ShardSplit(str(bad), "train")
    src = os.path.join(ave, "train-00000.h5")
    os.unlink(bad / "train-00000.h5")
    with open(src, "rb") as f, open(bad / "train-00000.h5", "wb") as g:
        g.write(f.read())
    with h5py.File(bad / "train-00000.h5", "r+") as h:
        assert h.attrs["version"] == 2
        h.attrs["version"] = 3
    with pytest.raises(cs.ShardError, match="train-00000.h5: unsupported format version 3"):
        cs.ShardSplit(str(bad), "train")
    with h5py.File(bad / "train-00000.h5", "r+") as h:
        h.attrs["version"] = 2
        off = h["video/offset"][:]
        jp = h["video/jpeg"][:]
        jp[off[1]:off[2]] = 0  # sample 1's frame: zeros
        h["video/jpeg"][:] = jp
        spec = h["audio/spec"][2]
        spec[0, 0] += 1  # sample 2's spectrogram: one value changed
        h["audio/spec"][2] = spec
        sid, sid2 = h["id"][1].decode(), h["id"][2].decode()
    sp = cs.ShardSplit(str(bad), "train")
    sp.sample(0)
    # version 2: the checksums catch both, by sample id, as train's reader does
    with pytest.raises(cs.ShardError, match=f"checksum mismatch: sample {sid} \\(row 1\\) of train-00000.h5: JPEG"):
        sp.sample(1)
    with pytest.raises(cs.ShardError, match=f"checksum mismatch: sample {sid2} \\(row 2\\) of train-00000.h5: spectrogram"):
        sp.sample(2)
    sp.close()
    with h5py.File(bad / "train-00000.h5", "r+") as h:
        h.attrs["version"] = 1  # a downgrade (checksums no longer checked) is refused
    with pytest.raises(cs.ShardError, match="train-00000.h5: format version 1, index.json says 2"):
        cs.ShardSplit(str(bad), "train")
    with open(bad / "index.json") as f:  # re-indexed as version 1: no checksums, the JPEG decoder finds it
        idx = json.load(f)
    os.unlink(bad / "index.json")  # a link to the fixture's: replace it, never write through it
    u.write_index(str(bad), idx)
    sp = cs.ShardSplit(str(bad), "train")
    with pytest.raises(cs.ShardError, match=f"train-00000.h5: sample {sid}: frame 0: not a readable JPEG"):
        sp.sample(1)
    os.unlink(bad / "index.json")
    (bad / "index.json").write_text("{")
    with pytest.raises(cs.ShardError, match="index.json: not valid JSON"):
        cs.ShardSplit(str(bad), "train")


def test_variable_length_string_in_version_2_is_refused(ave, tmp_path):
    bad = tmp_path / "vlen"
    bad.mkdir()
    for p in glob.glob(os.path.join(ave, "*")):
        if not p.endswith("train-00000.h5"):
            os.symlink(p, bad / os.path.basename(p))
    with open(os.path.join(ave, "train-00000.h5"), "rb") as f, open(bad / "train-00000.h5", "wb") as g:
        g.write(f.read())
    with h5py.File(bad / "train-00000.h5", "r+") as h:
        split = h.attrs["split"].decode()
        del h.attrs["split"]
        h.attrs["split"] = split  # a str: variable-length
    with pytest.raises(cs.ShardError, match="train-00000.h5: attribute split: variable-length string not accepted "
                                            "in format version 2"):
        cs.ShardSplit(str(bad), "train")
    with h5py.File(bad / "train-00000.h5", "r+") as h:
        h.attrs["version"] = 1  # version 1: read, once the index says so (a downgrade is refused)
    with pytest.raises(cs.ShardError, match="train-00000.h5: format version 1, index.json says 2"):
        cs.ShardSplit(str(bad), "train")
    with open(bad / "index.json") as f:
        idx = json.load(f)
    os.unlink(bad / "index.json")  # a link to the fixture's: replace it, never write through it
    u.write_index(str(bad), idx)
    assert len(cs.ShardSplit(str(bad), "train")) > 0
