"""One command-line grammar (common/cm_opts.h) for spectro, frames, ingest,
store and train: --help generated from each table, --version with the git
revision (also recorded in the outputs), the same error shape and exit status
2 for every usage error, a suggestion for a near miss, ranges and choices
checked, and -q/-v/-j accepted and doing what their help says."""
import json
import os
import re
import subprocess

import h5py
import numpy as np
import pytest

import train_util as u
from conftest import ROOT, binary, ffmpeg, run

COMMANDS = ["spectro", "frames", "ingest", "store", "train"]
STD = {  # the standard options each command takes
    "spectro": ["-q, --quiet", "-v, --verbose", "-j, --jobs N", "--version", "-h, --help"],
    "frames": ["-q, --quiet", "-v, --verbose", "-j, --jobs N", "--version", "-h, --help"],
    "ingest": ["-q, --quiet", "-v, --verbose", "-j, --jobs N", "--version", "-h, --help"],
    "store": ["-q, --quiet", "-v, --verbose", "--version", "-h, --help"],
    "train": ["-q, --quiet", "-v, --verbose", "-j, --threads N", "--version", "-h, --help"],
}


def git_describe():
    r = run(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    return r.stdout.strip() if r.returncode == 0 else None


def version_of(name):
    r = run([binary(name), "--version"])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    m = re.fullmatch(rf"{name} \(c2kd\) (\S+), git revision (\S+)\n", r.stdout)
    assert m, r.stdout
    return m[1], m[2]


@pytest.mark.parametrize("name", COMMANDS)
def test_help(name):
    r = run([binary(name), "--help"])
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith(f"usage: {name}")
    for opt in STD[name]:
        assert opt in r.stdout, (name, opt)
    assert run([binary(name), "-h"]).stdout == r.stdout
    # no line of the generated help is wider than its wrap width (100) unless one word is
    for line in r.stdout.splitlines():
        assert len(line) <= 100 or " " not in line.strip(), line


@pytest.mark.parametrize("name", COMMANDS)
def test_version(name):
    v, rev = version_of(name)
    assert v and rev
    # every command reports the same build
    assert (v, rev) == version_of("train")
    if git_describe() is None:
        assert rev == "unknown"
    else:
        h = re.search(r"(?:^|-g)([0-9a-f]{7,40})(?:-dirty)?$", rev)
        assert h and run(["git", "-C", ROOT, "merge-base", "--is-ancestor", h[1], "HEAD"]).returncode == 0, rev


# an unknown option near a known one: "PROG: --opt: unknown option; did you mean --known?"
NEAR = {
    "spectro": ("--windw", "--window"),
    "frames": ("--cont", "--count"),
    "ingest": ("--manifst", "--manifest"),
    "train": ("--lrr", "--lr"),
}


@pytest.mark.parametrize("name", sorted(NEAR))
def test_unknown_option_suggests(name):
    bad, good = NEAR[name]
    r = run([binary(name), bad, "1"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"{name}: {bad}: unknown option; did you mean {good}?\n", r.stderr
    # far from every option: no suggestion, still one line and exit 2
    r = run([binary(name), "--zzzzzzzzzz"])
    assert r.returncode == 2 and r.stderr == f"{name}: --zzzzzzzzzz: unknown option (see --help)\n", r.stderr


def test_store_unknown_command_and_option(tmp_path):
    r = run([binary("store"), "verfy", tmp_path])
    assert r.returncode == 2 and r.stderr == "store: verfy: unknown command; did you mean verify?\n", r.stderr
    r = run([binary("store"), "verify", "--quiett", tmp_path])
    assert r.returncode == 2 and r.stderr == "store verify: --quiett: unknown option; did you mean --quiet?\n"
    r = run([binary("store"), "info"])
    assert r.returncode == 2 and r.stderr.startswith("store info: no DIR given"), r.stderr
    r = run([binary("store"), "export", tmp_path, "x"])
    assert r.returncode == 2 and r.stderr == "store export: -o PREFIX is required\n", r.stderr
    r = run([binary("store"), "info", tmp_path / "missing"])
    assert r.returncode == 2 and r.stderr == f"store info: {tmp_path / 'missing'}: not a directory\n", r.stderr


# out of range: "PROG: --opt: V is not in [lo, hi]" (or >= / >), exit 2, nothing written
RANGE = [
    ("spectro", ["--window", "4", "x.wav", "-o", "o.npy"], "spectro: --window: 4 is not in [8, 65536]"),
    ("spectro", ["-j", "0", "x.wav", "-o", "o.npy"], "spectro: --jobs: 0 is not in [1, 1024]"),
    ("spectro", ["--log-eps", "0", "x.wav", "-o", "o.npy"], "spectro: --log-eps: 0 is not > 0"),
    ("frames", ["--count", "0", "x.mp4"], "frames: --count: 0 is not in [1, 64]"),
    ("frames", ["--quality=101", "x.mp4"], "frames: --quality: 101 is not in [1, 100]"),
    ("ingest", ["--manifest", "m.tsv", "--jobs", "0"], "ingest: --jobs: 0 is not in [1, 1024]"),
    ("ingest", ["--manifest", "m.tsv", "--shard-items", "0"], "ingest: --shard-items: 0 is not >= 1"),
    ("train", ["--data", "d", "--out", "o", "--momentum", "1"], "train: --momentum: 1 is not in [0, 1)"),
    ("train", ["--data", "d", "--out", "o", "--width", "0"], "train: --width: 0 is not >= 1"),
    ("train", ["--data", "d", "--out", "o", "--lr", "0"], "train: --lr: 0 is not > 0"),
]


@pytest.mark.parametrize("name,args,msg", RANGE)
def test_out_of_range(name, args, msg, tmp_path):
    r = run([binary(name), *args], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr == msg + "\n", r.stderr
    assert os.listdir(tmp_path) == []


BAD = [
    ("spectro", ["--scale", "db", "x.wav", "-o", "o.npy"], 'spectro: --scale: "db" is not one of density|magnitude'),
    ("spectro", ["--window-fn", "box", "x.wav", "-o", "o.npy"],
     'spectro: --window-kind: "box" is not one of tukey25|hann'),
    ("spectro", ["--duration", "abc", "x.wav", "-o", "o.npy"], 'spectro: --duration: "abc" is not a finite number'),
    ("spectro", ["--fftw-planner", "fast", "x.wav", "-o", "o.npy"],
     'spectro: --fftw-planner: "fast" is not one of measure|estimate|patient|exhaustive'),
    ("frames", ["--at", "1,x", "x.mp4"], 'frames: --at: "1,x" is not a list of times in seconds (T1,T2,...)'),
    ("frames", ["--count", "3.5", "x.mp4"], 'frames: --count: "3.5" is not an integer'),
    ("ingest", ["--manifest", "m.tsv", "--part", "2/2"], 'ingest: --part: expected K/N with 0 <= K < N <= 65536, got "2/2"'),
    ("ingest", ["--manifest", "m.tsv", "--shard-size", "12Q"], 'ingest: --shard-size: "12Q" is not a size like 512M'),
    ("train", ["--data", "d", "--out", "o", "--method", "fancy"],
     'train: --method: "fancy" is not one of none|kd|nkd|c2kd|shake|review'),
    ("train", ["--data", "d", "--out", "o", "--depth", "34"], 'train: --depth: "34" is not one of 18|50'),
    ("train", ["--data", "d", "--out", "o", "--pretrain=1"], "train: --pretrain takes no value"),
    ("train", ["--data", "d", "--out"], "train: --out needs a value (RUN)"),
    ("train", ["--data", "d", "--out", "o", "stray"], 'train: unexpected argument "stray"'),
]


@pytest.mark.parametrize("name,args,msg", BAD)
def test_bad_value(name, args, msg, tmp_path):
    r = run([binary(name), *args], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr == msg + "\n", r.stderr
    assert os.listdir(tmp_path) == []


def test_grammar_forms(tmp_path):
    """--name=value, --name value, -xVALUE, bundled flags, -- and old spellings are one grammar."""
    wav = tmp_path / "a.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2", "-ac", "1", wav)
    forms = [["--window", "256", "--overlap", "128", "--window-kind", "hann"],
             ["--window=256", "--overlap=128", "--window-fn=hann"],      # the older name of the option
             ["--window", "256", "--overlap", "128", "--window-kind", "tukey"]]  # an older value (tukey25)
    # each run plans FFTW anew (FFTW_MEASURE may pick another algorithm: rounding differs, test_spectro.py)
    same = lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4)  # noqa: E731
    outs = []
    for i, f in enumerate(forms):
        out = tmp_path / f"o{i}.npy"
        r = run([binary("spectro"), "--no-wisdom", "-qvj1", "--duration", "1", *f, f"-o{out}", "--", wav])
        assert r.returncode == 0, r.stderr
        outs.append(np.load(out))
    same(outs[0], outs[1])
    # after "--" an argument that starts with '-' is an input
    dash = tmp_path / "-a.wav"
    os.link(wav, dash)
    r = run([binary("spectro"), "--no-wisdom", "--duration", "1", "--window", "256", "--overlap", "128",
             "--window-kind", "hann", "-o", tmp_path / "d.npy", "--", "-a.wav"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    same(outs[0], np.load(tmp_path / "d.npy"))
    assert np.abs(outs[0] - outs[2]).max() > 0.1  # hann vs tukey25
    r = run([binary("spectro"), "--no-wisdom", "--duration", "1", "--window", "256", "--overlap", "128",
             "--window-kind", "tukey25", wav, "-o", tmp_path / "t.npy"])
    same(outs[2], np.load(tmp_path / "t.npy"))
    # --no-X of a boolean setting; --log-eps without log is not used
    r = run([binary("spectro"), "--no-wisdom", "--duration", "1", "--no-log", "--no-detrend", wav, "-o",
             tmp_path / "nolog.npy"])
    assert r.returncode == 0 and np.load(tmp_path / "nolog.npy").min() >= 0, r.stderr


def test_spectro_quiet_verbose_jobs_and_h5_version(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=1", "-ac", "1", a)
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=880:sample_rate=16000:duration=1", "-ac", "1", b)
    plain = run([binary("spectro"), "--no-wisdom", "--duration", "1", a, b, "-o", tmp_path / "p"])
    flags = run([binary("spectro"), "--no-wisdom", "--duration", "1", "-q", "-v", "--jobs", "2", a, b,
                 "-o", tmp_path / "f"])
    assert plain.returncode == 0 and flags.returncode == 0, plain.stderr + flags.stderr
    for n in ("a.npy", "b.npy"):  # FFTW planned per run: rounding may differ (test_spectro.py)
        np.testing.assert_allclose(np.load(tmp_path / "p" / n), np.load(tmp_path / "f" / n), atol=1e-4)
    v, rev = version_of("spectro")
    r = run([binary("spectro"), "--no-wisdom", "--duration", "1", "--window-kind", "hann", a, "-o", tmp_path / "x.h5"])
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "x.h5") as f:
        at = {k: (x.decode() if isinstance(x, bytes) else x) for k, x in f["spectrogram"].attrs.items()}
    assert at["version"] == v and at["git_revision"] == rev
    assert at["window_kind"] == "hann" and "window_fn" not in at  # one name (docs/FORMAT.md)
    # every setting of the table is an attribute, under the key the presets and the recipe use
    keys = ["sample_rate", "duration", "window", "overlap", "window_kind", "scale", "detrend", "log", "log_eps",
            "normalize"]
    assert set(keys) <= set(at), at
    # numbers as numbers (h5_attr_write): an INT or BOOL row as int32, a number as float64
    assert at["window"] == 512 and at["window"].dtype == np.int32 and at["detrend"] == 1, at
    assert at["duration"] == 1.0 and at["duration"].dtype == np.float64 and at["log_eps"] == 1e-7, at
    assert at["start"] == 0.0 and at["start"].dtype == np.float64 and at["scale"] == "density", at


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    for i, freq in enumerate((440, 660)):
        ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration=2", "-f", "lavfi", "-i",
               f"sine=frequency={freq}:sample_rate=16000:duration=2", "-shortest", "-c:v", "mpeg4", "-c:a", "aac",
               d / f"clip{i}.mp4")
    return d


def test_frames_quiet_verbose_jobs(media, tmp_path):
    clips = [media / "clip0.mp4", media / "clip1.mp4"]
    plain = run([binary("frames"), *clips, "--count", "2", "--npy", "-o", tmp_path / "p"])
    flags = run([binary("frames"), *clips, "--count", "2", "--npy", "-o", tmp_path / "f", "-qv", "--jobs", "2"])
    assert plain.returncode == 0 and flags.returncode == 0, plain.stderr + flags.stderr
    for n in ("clip0.npy", "clip1.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "p" / n), np.load(tmp_path / "f" / n))
    # -v: a line per input with the frames decoded; without it nothing
    assert plain.stderr == ""
    for c in clips:
        assert re.search(rf"^frames: {re.escape(str(c))}: \d+ frames decoded$", flags.stderr, re.M), flags.stderr


def test_ingest_and_store_quiet_verbose_jobs_and_revision(media, tmp_path):
    man = tmp_path / "m.tsv"
    man.write_text("".join(f"c{i}\tclip{i}.mp4\tclip{i}.mp4\t{lab}\t{sp}\t-\t-\n"
                           for i, (lab, sp) in enumerate((("a", "train"), ("b", "test")))))
    common = ["--manifest", man, "--root", media, "--set", "duration=1", "--set", "window_fn=hann"]
    loud = run([binary("ingest"), *common, "--out", tmp_path / "loud", "-v", "--jobs", "2"])
    quiet = run([binary("ingest"), *common, "--out", tmp_path / "quiet", "-q", "-j", "1"])
    assert loud.returncode == 0 and quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "rows (0 rejected by the reader), 2 worker(s)" in loud.stderr
    assert "worker(s)" not in quiet.stderr  # -q: no progress lines
    idx = json.load(open(tmp_path / "quiet" / "index.json"))
    v, rev = version_of("ingest")
    assert idx["tool_version"] == f"c2kd {v} (git {rev})"
    # the older preset key window_fn is read as window_kind; the recipe uses the one name
    assert idx["recipe"]["audio"]["window_kind"] == "hann" and "window_fn" not in idx["recipe"]["audio"]
    for sp in ("train", "test"):
        f = idx["splits"][sp]["shards"][0]["file"]
        with h5py.File(tmp_path / "quiet" / f) as h:
            assert h.attrs["tool_version"].decode() == f"c2kd {v} (git {rev})"
            assert json.loads(h.attrs["recipe"]) == idx["recipe"]
    # the two folders hold the same samples (-j, -q, -v change no byte of a sample)
    for sp in ("train", "test"):
        f = idx["splits"][sp]["shards"][0]["file"]
        with h5py.File(tmp_path / "quiet" / f) as a, h5py.File(tmp_path / "loud" / f) as b:
            # float16 of float32 values that FFTW may round differently per plan: one float16 step at most
            np.testing.assert_allclose(a["audio/spec"][()].astype(np.float32), b["audio/spec"][()].astype(np.float32),
                                       rtol=2 ** -10, atol=1e-6)
            assert (a["video/jpeg"][()] == b["video/jpeg"][()]).all()
    # store: -q prints no summary of a clean folder, -v names each shard checked
    out = tmp_path / "quiet"
    plain = run([binary("store"), "verify", out])
    q = run([binary("store"), "-q", "verify", out])
    vv = run([binary("store"), "verify", "-v", out])
    assert plain.returncode == q.returncode == vv.returncode == 0, plain.stdout + plain.stderr
    assert "0 fault(s)" in plain.stdout and q.stdout == ""
    assert vv.stdout.count("checking") == 2 and "0 fault(s)" in vv.stdout
    # a preset value out of the spectrogram table's bounds: the key and the bound
    r = run([binary("ingest"), *common, "--set", "window=4", "--out", tmp_path / "bad"])
    assert r.returncode == 2 and r.stderr == "ingest: --set window=4: window: 4 is not in [8, 65536]\n", r.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli") / "data")
    u.make_dataset(root, counts={"train": 8, "val": 4, "test": 4}, classes=("dog", "cat"))
    return root


TRAIN = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--epochs", "1",
         "--method", "none"]


def test_train_quiet_verbose_jobs(data, tmp_path):
    q = run([binary("train"), *TRAIN, "--data", data, "--out", tmp_path / "q", "-q", "-j", "1"])
    v = run([binary("train"), *TRAIN, "--data", data, "--out", tmp_path / "v", "-v", "--jobs", "1"])
    assert q.returncode == 0 and v.returncode == 0, q.stderr + v.stderr
    assert "epoch 1/1" not in q.stderr and "train: none" not in q.stderr, q.stderr  # -q: no progress, no notices
    assert "epoch 1/1" in v.stderr
    m = re.search(r"^train: options: (.*?)^train: none", v.stderr, re.S | re.M)
    assert m, v.stderr
    shown = json.loads(m[1])
    saved = json.load(open(tmp_path / "v" / "options.json"))
    assert {k: saved[k] for k in shown} == shown  # -v prints what options.json keeps
    assert saved["threads"] == 1 and "quiet" not in saved and "verbose" not in saved and "jobs" not in saved
    # the same run: -q/-v/-j change no number
    a = json.load(open(tmp_path / "q" / "result.json"))
    b = json.load(open(tmp_path / "v" / "result.json"))
    assert a["test_acc_at_best_val"] == b["test_acc_at_best_val"] and a["best_val_acc"] == b["best_val_acc"]
