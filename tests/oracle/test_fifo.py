"""A FIFO or a device where a regular file is expected is refused at once, naming the file
(common/cm_file.h: opened non-blocking, fstat, read with a size limit), never waited on nor
read without end. The FIFOs are made in the test and never opened for writing: a reader
that waited would hang; the subprocess timeout is only a safety net, the assertion is on
the exit status and the message."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import train_util as u
from conftest import ROOT, binary, ffmpeg

sys.path.insert(0, os.path.join(ROOT, "python"))
import c2kd_shards as cs  # noqa: E402

SAFETY = 60  # seconds: only against a hang of a broken build


def run(args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=SAFETY)


def one_line(r, *words):
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1, r.stdout + r.stderr
    assert any(all(w in x for w in words) for x in lines), r.stderr


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fifo") / "data")
    u.make_dataset(root, counts={"train": 8, "test": 4}, version=2)
    return root


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("clip") / "a.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=16000:duration=2", "-c:v", "mpeg4", "-c:a", "aac", "-shortest", p)
    return p


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "huge"])
def test_index_json_not_a_regular_file(folder, tmp_path, kind):
    d = str(tmp_path / "d")
    shutil.copytree(folder, d)
    ix = os.path.join(d, "index.json")
    os.unlink(ix)
    if kind == "fifo":
        os.mkfifo(ix)
        words = ["index.json", "not a regular file (a FIFO)"]
    elif kind == "/dev/zero":
        os.symlink("/dev/zero", ix)
        words = ["index.json", "not a regular file (a device)"]
    else:  # 65 MiB (sparse): over the 64 MiB an index may hold; refused before reading it
        with open(ix, "wb") as f:
            f.truncate(65 << 20)
        words = ["index.json", "more than the"]
    for cmd in (["verify", d], ["info", d], ["export", d, "train0001", "-o", str(tmp_path / "x")], ["index", d]):
        one_line(run([binary("store"), *cmd]), *words)
    one_line(run([binary("train"), "--data", d, "--out", str(tmp_path / "run"), "--device", "cpu", "--method", "none"]), *words)
    assert not os.path.exists(tmp_path / "run")
    with pytest.raises(cs.ShardError, match="index.json"):
        cs.ShardSplit(d, "train")


def test_options_json_fifo_on_resume(folder, tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    os.mkfifo(os.path.join(out, "options.json"))
    one_line(run([binary("train"), "--resume", out]), "options.json", "not a regular file (a FIFO)")


def test_preset_fifo(tmp_path):
    p = str(tmp_path / "p.conf")
    os.mkfifo(p)
    r = run([binary("ingest"), "--preset", p, "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.returncode in (1, 2) and "p.conf: not a regular file (a FIFO)" in r.stderr, r.stderr


@pytest.mark.parametrize("tool", ["spectro", "frames"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_media_input_not_a_regular_file(clip, tmp_path, tool, kind):
    bad = str(tmp_path / "b.mp4")
    if kind == "fifo":
        os.mkfifo(bad)
    else:
        os.symlink("/dev/zero", bad)
    out = str(tmp_path / "out")
    r = run([binary(tool), clip, bad, "-o", out])  # the good input goes on, the bad one is one line
    one_line(r, "b.mp4", "not a regular file")
    assert len(os.listdir(out)) == 1, os.listdir(out)


def test_manifest_row_with_a_fifo(clip, tmp_path):
    fifo = str(tmp_path / "f.mp4")
    os.mkfifo(fifo)
    m = tmp_path / "m.tsv"
    m.write_text(f"a\t-\t{clip}\tdog\ttrain\t-\t-\nb\t-\t{fifo}\tcat\ttrain\t-\t-\n"
                 f"c\t-\t{clip}\tcat\ttest\t-\t-\n")
    out = tmp_path / "o"
    r = run([binary("ingest"), "--manifest", m, "--out", out, "--set", "duration=2", "--jobs", "1", "--quiet"])
    assert r.returncode == 1, r.stderr
    fails = (out / "failures.tsv").read_text().splitlines()
    assert len(fails) == 1 and fails[0].startswith("b\ttrain\t") and "not a regular file" in fails[0], fails
    with open(out / "index.json") as f:
        assert json.load(f)["count"] == 2


@pytest.mark.parametrize("opt", ["--init", "--teacher-ckpt"])
def test_checkpoint_fifo(folder, tmp_path, opt):
    ck = str(tmp_path / "ck.h5")
    os.mkfifo(ck)
    r = run([binary("train"), "--data", folder, "--out", str(tmp_path / "run"), "--device", "cpu", "--batch-size", "4",
             "--method", "kd",
             opt, ck])
    one_line(r, "ck.h5", "not a regular file (a FIFO)")
    assert not os.path.exists(tmp_path / "run")
