"""ingest + store, end to end: readers on the real annotation files, generated trees in each
native layout (with a missing, a corrupt and an audio-less video) -> shards read back with
h5py only, compared with the `spectro` and `frames` commands; resume after SIGKILL."""
import collections
import json
import os
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import binary, run
from ingest_util import (ave_classes, ave_rows, cremad_rows, decode_jpeg, generate, read_manifest, read_out,
                         vgg_rows)

DATASETS = "/work/shared/datasets"
if not os.path.isdir(DATASETS):
    DATASETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "datasets")
SECONDS = 3


# ---------------------------------------------------------------- readers on the real files

def manifest_of(tmp_path, dataset, *extra):
    out = tmp_path / f"{dataset}.tsv"
    r = run([binary("ingest"), "--dataset", dataset, "--root", os.path.join(DATASETS, dataset),
             "--write-manifest", out, *extra])
    assert r.returncode == 0, r.stderr
    return read_manifest(out)


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATASETS, "ave")), reason="real annotation files absent")
def test_reader_ave_real_files(tmp_path):
    classes, items = manifest_of(tmp_path, "ave")
    rows = ave_rows(os.path.join(DATASETS, "ave"))
    assert len(rows) == 4143 and len(items) == 4143          # every row, the 0&0 one included
    assert [(i["split"], i["id"], i["label"]) for i in items] == [(r[0], r[1], r[2]) for r in rows]
    assert collections.Counter(i["split"] for i in items) == {"train": 3339, "val": 402, "test": 402}
    assert collections.Counter((i["split"], i["label"]) for i in items) == \
        collections.Counter((r[0], r[2]) for r in rows)
    assert classes == ave_classes(rows) and len(classes) == 28
    assert classes[1] == "Male speech, man speaking"           # comma inside a name, split on & only
    assert len({i["id"] for i in items}) == 4143
    assert sum("~" in i["id"] for i in items) == 46           # 44 ids twice + 1 three times
    empty = [i for i in items if i["start"] == i["end"]]
    assert [e["id"] for e in empty] == ["VWi2ENBuTbw_0_0"]
    assert all(i["video"].endswith("/AVE/" + i["id"].split("_")[0] + ".mp4") or "_" in i["id"] for i in items)


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATASETS, "cremad")), reason="real annotation files absent")
def test_reader_cremad_real_files(tmp_path):
    classes, items = manifest_of(tmp_path, "cremad")
    rows = cremad_rows(os.path.join(DATASETS, "cremad"))
    assert classes == ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
    assert collections.Counter(i["split"] for i in items) == {"train": 6698, "test": 744}
    assert collections.Counter((i["split"], i["label"]) for i in items) == \
        collections.Counter((r[0], r[2]) for r in rows)
    assert all(i["video"].endswith("VideoFlash/%s.flv" % i["id"]) for i in items)
    assert all(i["start"] == "-" and i["end"] == "-" for i in items)


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATASETS, "vggsound")), reason="real annotation files absent")
@pytest.mark.parametrize("full", [False, True])
def test_reader_vggsound_real_files(tmp_path, full):
    classes, items = manifest_of(tmp_path, "vggsound", *(["--full"] if full else []))
    rows = vgg_rows(os.path.join(DATASETS, "vggsound"), tiny=not full)
    want = {"train": 183730, "test": 15446} if full else {"train": 25835, "test": 2500}
    assert collections.Counter(i["split"] for i in items) == want
    assert collections.Counter((i["split"], i["label"]) for i in items) == \
        collections.Counter((r[0], r[2]) for r in rows)
    assert [i["id"] for i in items] == [r[1] for r in rows]
    assert classes == sorted({r[2] for r in rows}) and len(classes) == (309 if full else 50)
    assert not any(c.endswith("\r") or c.startswith('"') for c in classes)   # CRLF, quotes stripped
    if full:
        assert "subway, metro, underground" in classes


def test_reader_tsv_and_usage_errors(tmp_path):
    m = tmp_path / "m.tsv"
    m.write_text("# hand written\nid\taudio\tvideo\tlabel\tsplit\tstart\tend\n"
                 "a\t\tx.mp4\tdog\ttrain\t-\t-\nb\tb.wav\tb.mp4\tcat\ttest\t1\t2.5\n"
                 "a\t\ty.mp4\tdog\ttrain\t-\t-\nbroken line\n")
    out = tmp_path / "m_out.tsv"
    r = run([binary("ingest"), "--manifest", m, "--write-manifest", out])
    assert r.returncode == 0, r.stderr
    classes, items = read_manifest(out)
    assert classes == ["cat", "dog"]
    assert [(i["id"], i["split"], i["start"], i["end"]) for i in items] == [("a", "train", "-", "-"),
                                                                           ("b", "test", "1", "2.5")]
    assert items[0]["audio"] == items[0]["video"] == str(tmp_path / "x.mp4")
    assert "duplicate id" in r.stderr and "line 6" in r.stderr
    assert run([binary("ingest")]).returncode == 2
    assert run([binary("ingest"), "--dataset", "nope", "--root", tmp_path]).returncode == 2
    assert run([binary("ingest"), "--dataset", "ave", "--root", tmp_path / "missing"]).returncode == 2
    assert run([binary("ingest"), "--dataset", "ave", "--root", tmp_path, "--jobs", "0"]).returncode == 2
    r = run([binary("ingest"), "--dataset", "ave", "--root", tmp_path, "--out", tmp_path / "o"])
    assert r.returncode == 1 and "trainSet.txt" in r.stderr     # annotations missing: fatal, named


# ---------------------------------------------------------------- end to end on generated trees

LAYOUTS = {"ave": dict(F=1), "cremad": dict(F=1), "vggsound": dict(F=3)}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("ingest_e2e")
    res = {}
    for layout in LAYOUTS:
        root = base / layout
        info = generate(layout, root, seconds=SECONDS)
        out = base / f"out_{layout}"
        r = run([binary("ingest"), "--dataset", layout, "--root", root, "--out", out, "--jobs", "2",
                 "--shard-items", "3", "--set", f"duration={SECONDS}"])
        res[layout] = dict(root=root, info=info, out=out, run=r)
    return res


def expected_rows(layout, root):
    if layout == "ave":
        return {r[1]: (r[0], r[2], r[3], r[4]) for r in ave_rows(root)}
    if layout == "cremad":
        return {r[1]: (r[0], r[2], None, None) for r in cremad_rows(root)}
    return {r[1]: (r[0], r[2], None, None) for r in vgg_rows(root)}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_row_accounted_for(trees, layout):
    t = trees[layout]
    assert t["run"].returncode == 1, t["run"].stderr          # some rows failed, the rest ingested
    index, samples, failures = read_out(t["out"])
    rows = expected_rows(layout, t["root"])
    failed = {f[0]: f for f in failures}
    assert len(failed) == len(failures)
    assert set(samples) | set(failed) == set(rows) and not set(samples) & set(failed)
    for sid, s in samples.items():
        split, label = rows[sid][0], rows[sid][1]
        assert s["split"] == split and s["cls"] == label, sid
    for fid, (_, split, _) in failed.items():
        assert split == rows[fid][0]
    faults = t["info"]["faults"]
    key = (lambda x: x) if layout != "ave" else (lambda x: f"{x}_0_{SECONDS}")
    assert "no such file" in failed[key(faults["missing"])][2]
    assert "audio" in failed[key(faults["corrupt"])][2]
    assert "no audio stream" in failed[key(faults["no_audio"])][2]
    if layout == "ave":
        assert "empty segment" in failed[faults["empty_segment"]][2]
        assert faults["repeat"] in samples
        assert len(failures) == 4
    else:
        assert len(failures) == 3
    assert index["count"] == len(samples) and index["failed"] == len(failures)
    if layout == "cremad":
        assert index["aliases"] == {"val": "test"}
    assert len([f for f in os.listdir(t["out"]) if f.endswith(".h5")]) == sum(
        len(s["shards"]) for s in index["splits"].values())
    r = run([binary("store"), "verify", t["out"]])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_spectrograms_and_frames_equal_the_commands(trees, layout, tmp_path):
    t = trees[layout]
    _, samples, _ = read_out(t["out"])
    index, _, _ = read_out(t["out"])
    F = LAYOUTS[layout]["F"]
    # the manifest gives each sample's media paths
    _, items = read_manifest_for(t, tmp_path)
    byid = {i["id"]: i for i in items}
    checked = 0
    for sid in sorted(samples)[:4]:
        s, it = samples[sid], byid[sid]
        seg = [] if it["start"] == "-" else ["--start", it["start"], "--end", it["end"]]
        npy = tmp_path / f"{checked}.npy"
        r = run([binary("spectro"), "--duration", str(SECONDS), *seg, it["audio"], "-o", npy])
        assert r.returncode == 0, r.stderr
        ref = np.load(npy)
        assert s["spec"].dtype == np.float16 and s["spec"].shape == ref.shape == tuple(index["spec_shape"])
        np.testing.assert_array_equal(s["spec"], ref.astype(np.float16))
        fdir = tmp_path / f"f{checked}"
        fseg = [] if it["start"] == "-" else ["--start", it["start"], "--end", it["end"]]
        r = run([binary("frames"), "--count", str(F), *fseg, "--quality", "90", "--print-timestamps",
                 it["video"], "-o", fdir])
        assert r.returncode == 0, r.stderr
        pts = [float(line.split()[-1]) for line in r.stdout.splitlines() if line.strip()]
        np.testing.assert_allclose(s["frame_time"], pts, atol=1e-5)
        for k in range(F):
            ref_jpg = open(fdir / f"frame_{k:02d}.jpg", "rb").read()
            np.testing.assert_array_equal(decode_jpeg(s["jpegs"][k]), decode_jpeg(ref_jpg))
        if it["start"] != "-":
            np.testing.assert_allclose(s["segment"], [float(it["start"]), float(it["end"])])
        else:
            assert s["segment"][0] == 0 and abs(s["segment"][1] - SECONDS) < 0.1
        checked += 1
    assert checked == 4


def read_manifest_for(t, tmp_path):
    out = tmp_path / "manifest.tsv"
    layout = os.path.basename(str(t["root"]))
    r = run([binary("ingest"), "--dataset", layout, "--root", t["root"], "--write-manifest", out])
    assert r.returncode == 0
    return read_manifest(out)


def test_store_info_export_and_verify_faults(trees, tmp_path):
    t = trees["ave"]
    r = run([binary("store"), "info", t["out"]])
    assert r.returncode == 0 and "split train" in r.stdout and "Male speech, man speaking" in r.stdout
    _, samples, _ = read_out(t["out"])
    sid = sorted(samples)[0]
    r = run([binary("store"), "export", t["out"], sid, "-o", tmp_path / "x"])
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), samples[sid]["spec"].astype(np.float32))
    assert open(tmp_path / "x_0.jpg", "rb").read() == samples[sid]["jpegs"][0]
    assert run([binary("store"), "export", t["out"], "no-such-id", "-o", tmp_path / "y"]).returncode == 1
    assert run([binary("store"), "info"]).returncode == 2
    # faults: a NaN, a broken JPEG, an unlisted shard, a missing shard
    bad = tmp_path / "bad"
    shutil.copytree(t["out"], bad)
    s0 = samples[sid]["shard"]
    with h5py.File(bad / s0, "r+") as h:
        h["audio/spec"][0, 0, 0] = np.nan
        h["video/jpeg"][:64] = 0
    shutil.copy(bad / s0, bad / "train-00099.h5")
    victim = [f for f in sorted(os.listdir(bad)) if f.endswith(".h5") and f != s0][0]
    os.unlink(bad / victim)
    r = run([binary("store"), "verify", bad])
    assert r.returncode == 1
    assert "NaN/Inf" in r.stdout
    assert "not a JPEG" in r.stdout or "does not decode" in r.stdout
    assert "not listed in index.json" in r.stdout and victim in r.stdout


# ---------------------------------------------------------------- resume after SIGKILL

def snapshot(out):
    _, samples, failures = read_out(out)
    return {k: (v["shard"], v["label"], v["spec"].tobytes(), tuple(v["jpegs"]), v["frame_time"].tobytes())
            for k, v in samples.items()}, sorted(failures)


def test_kill_and_resume_gives_the_same_samples(tmp_path):
    root = tmp_path / "ave"
    generate("ave", root, classes=3, per_class=5, seconds=SECONDS, size="160x120", seed=3)
    args = ["--dataset", "ave", "--root", root, "--jobs", "1", "--shard-items", "2", "--set",
            f"duration={SECONDS}", "--quiet"]
    ref = tmp_path / "ref"
    assert run([binary("ingest"), *args, "--out", ref]).returncode == 1
    want = snapshot(ref)
    out = tmp_path / "out"
    kills = 0
    shards = len([f for f in os.listdir(ref) if f.endswith(".h5")])
    for delay_shards in (1, 3):     # kill after the 1st, then after the 3rd finished shard
        p = subprocess.Popen([binary("ingest"), *map(str, args), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # holding the lock's mutex once the run holds the folder: it cannot write
        # index.json (and end) until the test lets it, so the kill always lands
        fd = mutex_once_running(out, p)
        while True:
            done = [f for f in os.listdir(out) if f.endswith(".h5") and not f.startswith(".")]
            if len(done) >= min(delay_shards, shards):
                p.send_signal(signal.SIGKILL)
                kills += 1
                break
            assert p.poll() is None, "ingest ended while the test held the lock's mutex"
            time.sleep(0.005)
        p.wait()
        os.close(fd)
    assert kills == 2
    assert not os.path.exists(out / "index.json") or kills == 0
    r = run([binary("ingest"), *args, "--out", out])
    assert r.returncode == 1
    assert snapshot(out) == want
    assert not [f for f in os.listdir(out) if f.startswith(".") and f != ".lock"]   # no temporary left
    v = run([binary("store"), "verify", out])
    assert v.returncode == 0, v.stdout
    # a third run keeps everything
    r = run([binary("ingest"), *args[:-1], "--out", out])
    assert "keeping" in r.stderr and snapshot(out) == want


# ---------------------------------------------------------------- parts, the folder lock, hostile annotations

def datasets_of(out):
    """Every dataset and root attribute of every shard, read with h5py (not file bytes)."""
    res = {}
    for f in sorted(os.listdir(out)):
        if f.endswith(".h5") and not f.startswith("."):
            with h5py.File(os.path.join(out, f), "r") as h:
                d = {}
                h.visititems(lambda n, o: d.__setitem__(n, o[()].tobytes() if o.dtype.kind != "O"
                                                        else repr(list(o[()]))) if isinstance(o, h5py.Dataset)
                             else None)
                d["attrs"] = sorted((k, repr(v)) for k, v in h.attrs.items())
                res[f] = d
    return res


@pytest.fixture(scope="module")
def parts_src(tmp_path_factory):
    base = tmp_path_factory.mktemp("ingest_parts")
    root = base / "vgg"
    generate("vggsound", root, classes=3, per_class=3, seconds=SECONDS, seed=5)
    args = ["--dataset", "vggsound", "--root", str(root), "--jobs", "1", "--shard-items", "2", "--set",
            f"duration={SECONDS}", "--set", "frames=2", "--quiet"]
    ref = base / "ref"
    r = run([binary("ingest"), *args, "--out", ref])
    assert r.returncode == 1, r.stderr      # the generator's bad rows fail
    return dict(base=base, args=args, ref=ref)


def same_as_reference(out, ref):
    assert datasets_of(out) == datasets_of(ref)
    with open(out / "index.json") as a, open(ref / "index.json") as b:
        assert json.load(a) == json.load(b)
    assert open(out / "failures.tsv").read() == open(ref / "failures.tsv").read()
    v = run([binary("store"), "verify", out])
    assert v.returncode == 0, v.stdout + v.stderr


def test_two_parts_then_store_index_equal_one_process(parts_src):
    out = parts_src["base"] / "parts"
    r0 = run([binary("ingest"), *parts_src["args"], "--out", out, "--part", "0/2"])
    assert r0.returncode in (0, 1) and "part 0/2: 6 of 12 rows" in r0.stderr, r0.stderr
    assert not os.path.exists(out / "index.json")             # part 1 not done: no index yet
    r = run([binary("store"), "index", out])
    assert r.returncode == 1 and "missing" in r.stderr        # and store index says which shard is missing
    r1 = run([binary("ingest"), *parts_src["args"], "--out", out, "--part", "1/2"])
    assert r1.returncode == 1, r1.stderr
    assert os.path.exists(out / "index.json")                 # the last part wrote the index
    same_as_reference(out, parts_src["ref"])
    os.unlink(out / "index.json")
    os.unlink(out / "failures.tsv")
    r = run([binary("store"), "index", out])
    assert r.returncode == 0, r.stderr
    same_as_reference(out, parts_src["ref"])
    # each part resumes on its own: a rerun keeps every shard of its part
    r = run([binary("ingest"), *parts_src["args"][:-1], "--out", out, "--part", "1/2"])
    assert "keeping" in r.stderr
    same_as_reference(out, parts_src["ref"])
    assert run([binary("ingest"), *parts_src["args"], "--out", out, "--part", "2/2"]).returncode == 2


@pytest.mark.skipif(not shutil.which("mpirun"), reason="mpirun absent (make deps installs openmpi-bin)")
def test_mpirun_two_ranks_equal_one_process(parts_src):
    out = parts_src["base"] / "mpi"
    r = subprocess.run(["mpirun", "-np", "2", "--allow-run-as-root", "--oversubscribe", binary("ingest"),
                        *parts_src["args"], "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "part 0/2" in r.stderr and "part 1/2" in r.stderr, r.stderr
    assert os.path.exists(out / "index.json"), r.stderr
    same_as_reference(out, parts_src["ref"])
    os.unlink(out / "index.json")
    assert run([binary("store"), "index", out]).returncode == 0
    same_as_reference(out, parts_src["ref"])


def mutex_once_running(out, proc):
    """Waits until the ingest proc holds OUT's folder (byte 1 of OUT/.lock) and returns
    an fd through which the test then holds the lock's mutex (byte 0): an ingest
    needs the mutex to write index.json, so proc cannot end (but by dying) until
    the test closes the fd. Each check is made with the mutex held, so proc is
    never between taking the mutex and taking the folder when it is looked at."""
    import errno
    import fcntl
    while True:
        assert proc.poll() is None, "ingest ended before it held the folder"
        if os.path.exists(out / ".lock"):
            fd = os.open(out / ".lock", os.O_RDWR)
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0, os.SEEK_SET)      # the mutex (waits)
            try:
                fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 1, os.SEEK_SET)
            except OSError as e:
                assert e.errno in (errno.EACCES, errno.EAGAIN), e
                return fd                                           # the folder is proc's
            os.close(fd)                                            # releases both
        time.sleep(0.005)


def hold(path, byte, exclusive):
    """A POSIX record lock on one byte of OUT/.lock, as a running ingest holds it."""
    import fcntl
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, 1, byte, os.SEEK_SET)
    return fd


def test_a_second_ingest_into_one_folder_is_refused(parts_src, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    # a holder of the whole folder (as a running ingest): refused at once, naming the folder and the pid
    fd = hold(out / ".lock", 1, True)
    r = run([binary("ingest"), *parts_src["args"], "--out", out])
    os.close(fd)
    assert r.returncode == 1 and str(out) in r.stderr and f"pid {os.getpid()}" in r.stderr, r.stderr
    assert not [f for f in os.listdir(out) if f.endswith(".h5")]
    # a running part with another plan: a part with other options is refused
    fd = hold(out / ".lock", 1, False)
    (out / "plan.json").write_text("{}")
    r = run([binary("ingest"), *parts_src["args"], "--out", out, "--part", "1/2"])
    os.close(fd)
    assert r.returncode == 1 and "plan.json differs" in r.stderr, r.stderr
    # two real runs at once: the second one, started while the first holds the folder, is refused.
    # The first is stopped (SIGSTOP) while it holds the folder, so the order does not depend on speed.
    a = subprocess.Popen([binary("ingest"), *map(str, parts_src["args"]), "--out", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    fd = mutex_once_running(out, a)
    os.kill(a.pid, signal.SIGSTOP)
    os.close(fd)
    b = run([binary("ingest"), *parts_src["args"], "--out", out, "--set", "frames=1"])
    os.kill(a.pid, signal.SIGCONT)
    a.communicate()
    assert b.returncode == 1 and "in use by another ingest" in b.stderr and f"pid {a.pid}" in b.stderr, b.stderr
    assert a.returncode == 1
    same_as_reference(out, parts_src["ref"])


def test_hostile_annotation_rows_stay_inside(tmp_path):
    root = tmp_path / "vgg"
    root.mkdir()
    (root / "train_tiny.csv").write_text("abc,1,dog,train\n../../x,1,dog,train\nok2,3,cat,../../ESCAPED\n"
                                         "ok3,4,cat,te\x01st\n")
    (root / "test_tiny.csv").write_text("def,2,cat,test\n")
    r = run([binary("ingest"), "--dataset", "vggsound", "--root", root, "--write-manifest", tmp_path / "m.tsv"])
    assert r.returncode == 0
    _, items = read_manifest(tmp_path / "m.tsv")
    assert [i["id"] for i in items] == ["abc_1", "def_2"]
    assert "'..'" in r.stderr and "../../ESCAPED" in r.stderr and "[A-Za-z0-9_-]" in r.stderr
    out = tmp_path / "out"
    r = run([binary("ingest"), "--dataset", "vggsound", "--root", root, "--out", out, "--quiet"])
    assert r.returncode == 1
    assert not list(tmp_path.glob("**/ESCAPED*")) and not os.path.exists(tmp_path.parent / "ESCAPED-00000.h5")
    fails = open(out / "failures.tsv").read().splitlines()
    assert len(fails) == 5 and all(len(f.split("\t")) == 3 for f in fails)   # 3 hostile rows + 2 missing media
    # an AVE VideoID that climbs out of the root
    ave = tmp_path / "ave"
    ave.mkdir()
    (ave / "trainSet.txt").write_text("Bark&../../outside&good&0&3\nBark&fine&good&0&3\n")
    (ave / "valSet.txt").write_text("")
    (ave / "testSet.txt").write_text("Bark&t&good&0&3\n")
    r = run([binary("ingest"), "--dataset", "ave", "--root", ave, "--write-manifest", tmp_path / "a.tsv"])
    _, items = read_manifest(tmp_path / "a.tsv")
    assert [i["id"] for i in items] == ["fine_0_3", "t_0_3"] and "VideoID" in r.stderr


def test_fifo_annotation_file_is_refused_not_waited_on(tmp_path):
    root = tmp_path / "ave"
    root.mkdir()
    os.mkfifo(root / "trainSet.txt")
    r = subprocess.run([binary("ingest"), "--dataset", "ave", "--root", str(root), "--write-manifest", "-"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "trainSet.txt: not a regular file" in r.stderr
