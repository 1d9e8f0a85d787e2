"""Truncated media (issue 13): `spectro`, `frames` and `ingest` refuse a file whose decoded audio or readable
video ends clearly before what the file declares (or before the requested segment), with the reason
"truncated: decoded A s of B s"; --allow-truncated keeps it with a warning. Real truncated files: complete
clips cut with `head -c` semantics (the first N bytes)."""
import os

import numpy as np
import pytest

from conftest import binary, ffmpeg, run
from frames_util import compare_with_ffmpeg, extract

SRC = "testsrc2=size=176x144:rate=25:duration=6"
# name -> (video encoder options, audio encoder options, extra output options)
FULL = {
    "mpeg4.avi": (["-c:v", "mpeg4", "-g", "12"], ["-c:a", "libmp3lame"], []),
    "h264.mkv": (["-c:v", "libx264", "-g", "12", "-pix_fmt", "yuv420p"], ["-c:a", "aac"], []),
    "cremad.flv": (["-c:v", "flv1", "-g", "12"], ["-c:a", "libmp3lame", "-ar", "22050"], []),
    "h264.mp4": (["-c:v", "libx264", "-g", "12", "-pix_fmt", "yuv420p"], ["-c:a", "aac"],
                 ["-movflags", "+faststart"]),
    "vp8.webm": (["-c:v", "libvpx", "-g", "12", "-b:v", "300k"], ["-c:a", "libvorbis"], []),
}
CUTS = [0.25, 0.5, 0.8]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("truncated")
    out = {}
    for name, (venc, aenc, extra) in FULL.items():
        path = d / name
        ffmpeg("-f", "lavfi", "-i", SRC, "-f", "lavfi", "-i", "sine=duration=6", *venc, *aenc, *extra, path)
        out[name] = str(path)
        data = path.read_bytes()
        for cut in CUTS:
            p = d / f"cut{int(cut * 100)}_{name}"
            p.write_bytes(data[: int(len(data) * cut)])
            out[(name, cut)] = str(p)
    return out


def test_complete_files_pass(media, tmp_path):
    # a start offset: Matroska declares the end time (9.5 s), not the length (6 s)
    off = tmp_path / "offset.mkv"
    ffmpeg("-f", "lavfi", "-i", SRC, "-f", "lavfi", "-i", "sine=duration=6", "-c:v", "libx264", "-c:a", "aac",
           "-output_ts_offset", "3.5", off)
    media = dict(media, **{"offset.mkv": str(off)})
    for name in list(FULL) + ["offset.mkv"]:
        r = run([binary("spectro"), "-q", media[name], "-o", tmp_path / "s.npy", "--duration", "6"])
        assert r.returncode == 0 and r.stderr == "", (name, r.stderr)
        r = run([binary("frames"), media[name], "--count", "3"])
        assert r.returncode == 0 and r.stderr == "", (name, r.stderr)


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("name", list(FULL))
def test_spectro_truncated(media, tmp_path, name, cut):
    path = media[(name, cut)]
    out = tmp_path / "s.npy"
    r = run([binary("spectro"), "-q", path, "-o", out, "--duration", "6"])
    assert r.returncode == 1 and not out.exists(), r.stderr
    line = r.stderr.strip()
    assert line.startswith(f"spectro: {path}: "), line
    # a cut mp4 keeps its index (faststart) and is decoded up to the cut; so are the others
    assert "truncated: decoded " in line and " s of " in line, line
    decoded, declared = [float(x) for x in line.split("decoded ")[1].replace(" s", "").split(" of ")]
    assert declared == pytest.approx(6.0, abs=0.3) and decoded < 6 * cut + 0.5, line
    r = run([binary("spectro"), "-q", path, "-o", out, "--duration", "6", "--allow-truncated"])
    assert r.returncode == 0, r.stderr
    assert "warning: truncated: decoded" in r.stderr and path in r.stderr
    assert np.load(out).shape == (257, 601)


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("name", list(FULL))
def test_frames_truncated(media, tmp_path, name, cut):
    path = media[(name, cut)]
    out = tmp_path / "f.npy"
    r = run([binary("frames"), path, "-o", out, "--count", "3"])
    assert r.returncode == 1 and not out.exists(), r.stderr
    assert r.stderr.startswith(f"frames: {path}: truncated: decoded "), r.stderr
    # kept: three distinct frames of the readable part, each identical to ffmpeg's at its time
    arr, times, printed = extract(path, out, "--count", "3", "--allow-truncated")
    assert len(set(printed)) == 3, printed
    assert float(printed[-1]) < 6 * cut + 0.5
    compare_with_ffmpeg(path, arr, printed, exact=True)
    r = run([binary("frames"), path, "--count", "1", "--allow-truncated"])
    assert r.returncode == 0 and "warning: truncated: decoded" in r.stderr


def test_segment_past_the_end(media, tmp_path):
    """A complete 6 s file asked for [1, 9): the audio and video cover clearly less than the segment."""
    path = media["h264.mkv"]
    r = run([binary("spectro"), "-q", path, "-o", tmp_path / "s.npy", "--start", "1", "--end", "9"])
    assert r.returncode == 1 and "truncated: decoded 6.0" in r.stderr and "of 9.00 s" in r.stderr, r.stderr
    r = run([binary("frames"), path, "--start", "1", "--end", "9", "--count", "3"])
    assert r.returncode == 1 and "truncated: decoded 6.0" in r.stderr and "of 9.00 s" in r.stderr, r.stderr
    # a little past the end is not truncation
    assert run([binary("spectro"), "-q", path, "-o", tmp_path / "s.npy", "--start", "1",
                "--end", "6.3"]).returncode == 0
    assert run([binary("frames"), path, "--start", "1", "--end", "6.3", "--count", "3"]).returncode == 0
    # explicit times past the end keep their documented meaning (the last frame)
    assert run([binary("frames"), path, "--at", "1,100"]).returncode == 0


def test_ingest_puts_truncated_rows_in_failures(media, tmp_path):
    rows = [("full", media["h264.mkv"]), ("avi25", media[("mpeg4.avi", 0.25)]),
            ("flv50", media[("cremad.flv", 0.5)]), ("mp4_80", media[("h264.mp4", 0.8)])]
    m = tmp_path / "m.tsv"
    m.write_text("".join(f"{i}\t{p}\t{p}\tdog\ttrain\t-\t-\n" for i, p in rows))
    out = tmp_path / "out"
    args = [binary("ingest"), "--manifest", m, "--out", out, "--jobs", "1", "--set", "duration=6", "--quiet"]
    r = run(args)
    assert r.returncode == 1, r.stderr  # some rows failed
    assert "avi25 (train): audio: truncated: decoded " in r.stderr
    fails = {}
    for line in (out / "failures.tsv").read_text().splitlines():
        f = line.split("\t")
        if f[0] != "id":
            fails[f[0]] = line
    assert sorted(fails) == ["avi25", "flv50", "mp4_80"], fails
    for line in fails.values():
        assert "truncated: decoded " in line, line
    out2 = tmp_path / "out2"
    r = run(args[:4] + [out2] + args[5:] + ["--allow-truncated"])
    assert r.returncode == 0, r.stderr
    kept = [x for x in (out2 / "failures.tsv").read_text().splitlines() if not x.startswith("id\t")]
    assert kept == [], kept
    assert any(n.endswith(".h5") for n in os.listdir(out2))
