"""The shard folder as one verifiable whole (docs/FORMAT.md, "index.json"): every attack
on a folder made in the test (shards written with h5py by train_util, the index completed
by the independent Python implementation of the digests, train_util.write_index) is refused
with one line by `store verify`, `train` and the Python reader (python/c2kd_shards.py),
and the pristine folder is accepted by all three."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

import train_util as u
from conftest import ROOT, binary, run

sys.path.insert(0, os.path.join(ROOT, "python"))
import c2kd_shards as cs  # noqa: E402

COUNTS = {"train": 14, "val": 5, "test": 6}  # shards of 7: train-00000, train-00001, val-00000, test-00000
TRAIN = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1",
         "--method", "none", "--epochs", "1", "--steps", "1"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("folder") / "data")
    u.make_dataset(root, counts=COUNTS, version=2)
    return root


def copy(pristine, tmp_path, name="d"):
    d = str(tmp_path / name)
    shutil.copytree(pristine, d)
    return d


def index(d):
    with open(os.path.join(d, "index.json")) as f:
        return json.load(f)


def put_index(d, idx, redigest=True):
    """Writes an edited index; redigest: with its folder digest recomputed (so that only the
    semantic checks can refuse it, not the digest of the edit)."""
    if redigest:
        idx["digest"] = u.folder_digest(idx)
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump(idx, f)


def rewrite_shard(d, name, ids=None, labels=None, split=None):
    """Shard `name` written again (valid checksums) with other ids / labels / split attribute."""
    p = os.path.join(d, name)
    with h5py.File(p, "r") as f:
        old_ids = [x.decode() for x in f["id"][:]]
        old_labels = list(f["label"][:])
        specs = f["audio/spec"][:]
        F = int(f.attrs["frames_per_sample"])
        off, jp = f["video/offset"][:], f["video/jpeg"][:]
        jpegs = [[bytes(jp[off[i * F + k]:off[i * F + k + 1]]) for k in range(F)] for i in range(len(old_ids))]
        classes = [c.decode() for c in f.attrs["classes"]]
        recipe = json.loads(f.attrs["recipe"].decode())
        old_split = f.attrs["split"].decode()
    u.write_shard(p, split or old_split, ids or old_ids, labels or old_labels, specs, jpegs, classes, F, recipe,
                  version=2)


def refused_everywhere(d, *words, tmp_path):
    """store verify exits 1 naming it; train exits 1 with one line naming it; the Python
    reader raises ShardError naming it."""
    v = run([binary("store"), "verify", d])
    assert v.returncode == 1, v.stdout + v.stderr
    for w in words:
        assert w in v.stdout + v.stderr, (w, v.stdout + v.stderr)
    t = run([binary("train"), *TRAIN, "--data", d, "--out", str(tmp_path / "run")])
    lines = [x for x in t.stderr.splitlines() if x.strip()]
    assert t.returncode == 1 and len(lines) == 1, t.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not os.path.exists(tmp_path / "run" / "last.h5")
    with pytest.raises(cs.ShardError) as e:
        cs.ShardSplit(d, "train")
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    return v, t


def test_the_pristine_folder_is_accepted_by_all(pristine, tmp_path):
    v = run([binary("store"), "verify", pristine])
    assert v.returncode == 0, v.stdout + v.stderr
    t = run([binary("train"), *TRAIN, "--data", pristine, "--out", str(tmp_path / "run")])
    assert t.returncode == 0, t.stderr
    for split, n in COUNTS.items():
        assert len(cs.ShardSplit(pristine, split)) == n
    idx = index(pristine)
    assert idx["index_version"] == 2 and idx["digest"] == u.folder_digest(idx)
    for sp in idx["splits"].values():  # the entries the C writer's and the oracle's digests agree on
        for e in sp["shards"]:
            assert e["digest"] == u.shard_digest(os.path.join(pristine, e["file"]))[0]


def test_store_index_writes_what_the_oracle_computes(pristine, tmp_path):
    """`store index` on a folder without plan.json recomputes the index from the shards it
    lists: the same digests as the independent implementation."""
    d = copy(pristine, tmp_path)
    idx = index(d)
    for k in ("index_version", "digest", "count"):
        del idx[k]
    for sp in idx["splits"].values():
        for e in sp["shards"]:
            for k in ("digest", "version", "ids"):
                del e[k]
    put_index(d, idx, redigest=False)
    r = run([binary("store"), "verify", d])
    assert r.returncode == 1 and f"run `store index {d}` to re-index" in r.stdout + r.stderr
    with pytest.raises(cs.ShardError, match="store index .* to re-index"):
        cs.ShardSplit(d, "train")
    r = run([binary("train"), *TRAIN, "--data", d, "--out", str(tmp_path / "run")])
    assert r.returncode == 1 and "store index" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run([binary("store"), "index", d])
    assert r.returncode == 0, r.stderr
    assert index(d) == index(pristine)


def test_copy_of_a_shard_over_another(pristine, tmp_path):
    d = copy(pristine, tmp_path)
    shutil.copy(os.path.join(d, "train-00000.h5"), os.path.join(d, "train-00001.h5"))
    refused_everywhere(d, "train-00001.h5", "another shard's content", tmp_path=tmp_path)
    # re-indexed on purpose: one content twice, the same ids twice: still refused
    r = run([binary("store"), "index", d])
    assert r.returncode == 1 and "train-00000.h5" in r.stderr and "train-00001.h5" in r.stderr, r.stderr
    idx = index(d)
    e0, e1 = idx["splits"]["train"]["shards"]
    e1.update(digest=e0["digest"], ids=e0["ids"], count=e0["count"])
    idx["splits"]["train"]["count"] = 2 * e0["count"]
    idx["count"] = sum(s["count"] for s in idx["splits"].values())
    put_index(d, idx)
    refused_everywhere(d, "have one digest", tmp_path=tmp_path)


def test_a_duplicated_id_inside_one_shard(pristine, tmp_path):
    d = copy(pristine, tmp_path)
    with h5py.File(os.path.join(d, "train-00000.h5"), "r") as f:
        ids = [x.decode() for x in f["id"][:]]
    ids[3] = ids[1]
    rewrite_shard(d, "train-00000.h5", ids=ids)
    refused_everywhere(d, "train-00000.h5", tmp_path=tmp_path)  # the digest: another content
    r = run([binary("store"), "index", d])  # the index made to agree with it: the id is still there twice
    assert r.returncode == 1 and f'id "{ids[1]}" is there twice' in r.stderr, r.stderr
    idx = index(d)
    idx["splits"]["train"]["shards"][0]["digest"] = u.shard_digest(os.path.join(d, "train-00000.h5"))[0]
    put_index(d, idx)
    refused_everywhere(d, f'id "{ids[1]}" is there twice', tmp_path=tmp_path)


def test_an_id_in_two_splits(pristine, tmp_path):
    d = copy(pristine, tmp_path)
    with h5py.File(os.path.join(d, "test-00000.h5"), "r") as f:
        ids = [x.decode() for x in f["id"][:]]
    ids[2] = "train0003"  # a training sample's id in the test split
    rewrite_shard(d, "test-00000.h5", ids=ids)
    idx = index(d)
    e = idx["splits"]["test"]["shards"][0]
    e["digest"] = u.shard_digest(os.path.join(d, "test-00000.h5"))[0]
    put_index(d, idx)
    refused_everywhere(d, 'id "train0003" is in both', tmp_path=tmp_path)


def test_train_and_val_shards_swapped_by_name(pristine, tmp_path):
    d = copy(pristine, tmp_path)
    a, b = os.path.join(d, "train-00000.h5"), os.path.join(d, "val-00000.h5")
    os.rename(a, a + ".x")
    os.rename(b, a)
    os.rename(a + ".x", b)
    refused_everywhere(d, "train-00000.h5", 'holds split "val"', tmp_path=tmp_path)


def test_no_index_is_an_unfinished_folder(pristine, tmp_path):
    """No glob fallback: not even over a complete set of shards."""
    d = copy(pristine, tmp_path)
    os.unlink(os.path.join(d, "index.json"))
    os.unlink(os.path.join(d, "test-00000.h5"))  # an unfinished ingest: shards missing too
    refused_everywhere(d, "no index.json", "rerun `ingest`", "store index", tmp_path=tmp_path)


@pytest.mark.parametrize("edit", ["alias val->train", "alias test->train", "shard listed twice", "shard count",
                                  "split count", "classes reordered", "split listed under another",
                                  "shard dropped from the index", "shard version"])
@pytest.mark.parametrize("redigest", [False, True])
def test_an_edited_index(pristine, tmp_path, edit, redigest):
    d = copy(pristine, tmp_path)
    idx = index(d)
    sp = idx["splits"]
    word = {"alias val->train": "alias", "alias test->train": "alias", "shard listed twice": "listed twice",
            "shard count": "samples, index.json says", "split count": "count is not the sum",
            "classes reordered": "class", "split listed under another": "listed twice",
            "shard dropped from the index": "does not list", "shard version": "format version 2, index.json says 1"}[edit]
    if edit == "alias val->train":
        del sp["val"]
        idx["aliases"] = {"val": "train"}
        idx["count"] = COUNTS["train"] + COUNTS["test"]
    elif edit == "alias test->train":
        del sp["test"]
        idx["aliases"] = {"test": "train"}
        idx["count"] = COUNTS["train"] + COUNTS["val"]
    elif edit == "shard listed twice":
        sp["train"]["shards"].append(dict(sp["train"]["shards"][0]))
        sp["train"]["count"] += 7
        idx["count"] += 7
    elif edit == "shard count":
        sp["train"]["shards"][1]["count"] -= 1
        sp["train"]["count"] -= 1
        idx["count"] -= 1
    elif edit == "split count":
        sp["test"]["count"] = 3
    elif edit == "classes reordered":
        idx["classes"] = idx["classes"][::-1]
    elif edit == "split listed under another":  # test reads train's shards
        sp["test"] = json.loads(json.dumps(sp["train"]))
        idx["count"] = 2 * COUNTS["train"] + COUNTS["val"]
    elif edit == "shard dropped from the index":
        gone = sp["train"]["shards"].pop()
        sp["train"]["count"] -= gone["count"]
        idx["count"] -= gone["count"]
    elif edit == "shard version":
        sp["train"]["shards"][0]["version"] = 1
    put_index(d, idx, redigest)
    refused_everywhere(d, *([word] if redigest else []), tmp_path=tmp_path)


def test_a_shard_version_changed_to_1(pristine, tmp_path):
    d = copy(pristine, tmp_path)
    with h5py.File(os.path.join(d, "train-00001.h5"), "r+") as f:
        f.attrs["version"] = 1
    refused_everywhere(d, "train-00001.h5", "format version 1, index.json says 2", tmp_path=tmp_path)


@pytest.mark.parametrize("how", ["deleted", "renamed", "extra", "from another folder", "directory", "fifo"])
def test_missing_renamed_extra_and_foreign_shards(pristine, tmp_path, how):
    d = copy(pristine, tmp_path)
    p = os.path.join(d, "val-00000.h5")
    word = {"deleted": "val-00000.h5: missing", "renamed": "val-00000.h5: missing",
            "extra": "val-00001.h5: a shard that index.json does not list",
            "from another folder": "val-00000.h5: content digest", "directory": "not a regular file",
            "fifo": "not a regular file (a FIFO)"}[how]
    if how == "deleted":
        os.unlink(p)
    elif how == "renamed":
        os.rename(p, os.path.join(d, "val-00001.h5"))
    elif how == "extra":
        shutil.copy(p, os.path.join(d, "val-00001.h5"))
    elif how == "from another folder":  # same name, split and ids, other content (another seed)
        other = str(tmp_path / "other")
        u.make_dataset(other, counts=COUNTS, version=2, seed=7)
        shutil.copy(os.path.join(other, "val-00000.h5"), p)
    elif how == "directory":
        os.unlink(p)
        os.mkdir(p)
    else:
        os.unlink(p)
        os.mkfifo(p)
    refused_everywhere(d, word, tmp_path=tmp_path)


def test_resume_on_other_data_is_refused(pristine, tmp_path):
    out = str(tmp_path / "run")
    r = run([binary("train"), *TRAIN[:-2], "--data", pristine, "--out", out, "--epochs", "2"])
    assert r.returncode == 0, r.stderr
    other = str(tmp_path / "other")  # the same classes, recipe and shapes: other samples
    u.make_dataset(other, counts=COUNTS, version=2, seed=3)
    r = run([binary("train"), "--resume", out, "--data", other])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "trained on other data" in lines[0], r.stderr
    before = os.path.getmtime(os.path.join(out, "last.h5"))
    r = run([binary("train"), "--resume", out, "--data", pristine])  # its own data: goes on
    assert r.returncode == 0, r.stderr
    assert os.path.getmtime(os.path.join(out, "last.h5")) >= before


@pytest.mark.parametrize("seg,ft,word", [
    ((np.nan, 1.0), 0.5, "segment (nan, 1) is not two finite times"),
    ((0.0, np.inf), 0.5, "segment (0, inf) is not two finite times"),
    ((2.0, 1.0), 1.5, "segment (2, 1) is not two finite times"),
    ((-1.0, 1.0), 0.5, "segment (-1, 1) is not two finite times"),
    ((0.0, 1.0), -0.25, "frame 0: time -0.25 is negative"),
    ((0.0, 1.0), np.nan, "frame 0: time nan is not finite"),
])
def test_verify_faults_bad_times(pristine, tmp_path, seg, ft, word):
    """A sample whose segment or frame time is impossible, with its checksum made to match
    (so only the time check can see it), is a fault of store verify."""
    d = copy(pristine, tmp_path)
    p = os.path.join(d, "val-00000.h5")
    with h5py.File(p, "r+") as f:
        i, F = 2, int(f.attrs["frames_per_sample"])
        f["segment"][i] = np.array(seg, np.float32)
        times = f["frame_time"][i]
        times[0] = ft
        f["frame_time"][i] = times
        off, jp = f["video/offset"][:], f["video/jpeg"]
        frames = [bytes(jp[off[i * F + k]:off[i * F + k + 1]]) for k in range(F)]
        sid = f["id"][i].decode()
        crc = f["crc32/record"][:]
        crc[i] = u.record_crc(sid, f["label"][i], np.array(seg, np.float32), times, frames)
        f["crc32/record"][:] = crc
    idx = index(d)  # the digest covers the checksums: the index made to agree
    idx["splits"]["val"]["shards"][0]["digest"] = u.shard_digest(p)[0]
    put_index(d, idx)
    v = run([binary("store"), "verify", d])
    assert v.returncode == 1, v.stdout
    faults = [x for x in v.stdout.splitlines() if "fault(s)" not in x]
    assert len(faults) == 1 and f"sample 2 ({sid})" in faults[0] and word in faults[0], v.stdout


# ---------------------------------------------------------------- a folder written by ingest

@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from ingest_util import generate
    base = tmp_path_factory.mktemp("ingested")
    generate("ave", base / "ave", classes=2, per_class=4, seconds=1, bad=False)
    out = str(base / "out")
    r = run([binary("ingest"), "--dataset", "ave", "--root", base / "ave", "--out", out, "--jobs", "2",
             "--shard-items", "1", "--set", "duration=1", "--quiet"])
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("edit", ["entry dropped", "entries swapped", "rows edited", "failed edited"])
def test_an_ingest_index_rewritten_and_resealed(ingested, tmp_path, edit):
    """An index written from a plan states its manifest rows ("shard_items", "items"): its
    shards must cover them in order, so an entry dropped (its file deleted too) or two entries
    swapped is refused even with every count and the folder digest made to agree."""
    d = copy(ingested, tmp_path)
    idx = index(d)
    name = max(idx["splits"], key=lambda s: len(idx["splits"][s]["shards"]))
    sp = idx["splits"][name]
    assert len(sp["shards"]) >= 2
    if edit == "entry dropped":
        gone = sp["shards"].pop()
        os.unlink(os.path.join(d, gone["file"]))
        sp["count"] -= gone["count"]
        idx["count"] -= gone["count"]
    elif edit == "entries swapped":
        sp["shards"][0], sp["shards"][1] = sp["shards"][1], sp["shards"][0]
    elif edit == "rows edited":
        sp["items"] -= 1
    else:
        sp["shards"][0]["failed"] += 1
    put_index(d, idx)
    refused_everywhere(d, "index.json", tmp_path=tmp_path)
