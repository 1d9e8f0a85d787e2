"""Truncated media (issue 13): `spectro`, `frames` and `ingest` refuse a file whose decoded audio or readable
video ends clearly before what the file declares (or before the requested segment), with the reason
"truncated: decoded A s of B s"; --allow-truncated keeps it with a warning. Real truncated files: complete
clips cut with `head -c` semantics (the first N bytes)."""
import os
import subprocess

import numpy as np
import pytest

import spectro_util as su
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


# ---- complete files that must not be called truncated (issue 16, item 5) ----

def _samples(path, tmp_path):
    out = tmp_path / "x.npy"
    r = run([binary("spectro"), "-q", "--samples", "--no-wisdom", path, "-o", out])
    assert r.returncode == 0 and r.stderr == "", (path, r.stderr)
    return np.load(out)


def _ffprobe_estimated(path):
    """The duration ffprobe reports and whether libavformat estimated it from the bitrate (its warning)."""
    r = subprocess.run(["ffprobe", "-v", "warning", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                       capture_output=True, text=True, check=True)
    return float(r.stdout.strip()), "Estimating duration from bitrate" in r.stderr


def test_bitrate_estimates_never_make_a_failure(tmp_path):
    """A VBR MP3 without a Xing header and two concatenated ADTS AAC streams: libavformat estimates their
    duration from the first frames' bitrate (far from the real one); the ffmpeg program decodes them whole,
    and so do spectro and ingest, bit for bit as ffmpeg."""
    quiet_loud = ["-f", "lavfi", "-i", "sine=f=300:duration=3", "-f", "lavfi", "-i", "anoisesrc=d=7:a=0.5",
                  "-filter_complex", "[0][1]concat=n=2:v=0:a=1"]
    vbr = tmp_path / "vbr.mp3"
    ffmpeg(*quiet_loud, "-ac", "2", "-c:a", "libmp3lame", "-q:a", "2", "-write_xing", "0", vbr)
    a1, a2, cat = tmp_path / "a1.aac", tmp_path / "a2.aac", tmp_path / "cat.aac"
    ffmpeg("-f", "lavfi", "-i", "sine=f=300:duration=3", "-ac", "1", "-b:a", "32k", "-c:a", "aac", a1)
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=6:a=0.5", "-ac", "2", "-b:a", "256k", "-c:a", "aac", a2)
    cat.write_bytes(a1.read_bytes() + a2.read_bytes())
    for path, real in ((vbr, 10.0), (cat, 9.0)):
        est, estimated = _ffprobe_estimated(str(path))
        assert estimated and abs(est - real) > 3, (path, est)  # the case: a wrong estimate
        x = _samples(str(path), tmp_path)
        if path == vbr:
            assert np.array_equal(x, su.ffmpeg_decode(path)), path
        else:
            # the raw ADTS timestamps jump where the second stream starts: ffmpeg's file-clock filter fills
            # that gap, the ffmpeg program without -async (and spectro) does not; at the switch from mono to
            # stereo the ffmpeg program rebuilds its filters and loses 16 samples, spectro keeps them
            ref = su.ffmpeg_decode(path, file_clock=False)
            assert np.array_equal(x[:48000], ref[:48000]) and abs(len(x) - len(ref)) <= 32, path
        assert abs(len(x) / 16000 - real) < 0.2, (path, len(x) / 16000)
        r = run([binary("spectro"), "-q", str(path), "-o", tmp_path / "s.npy"])
        assert r.returncode == 0 and r.stderr == "", r.stderr
    m = tmp_path / "m.tsv"
    m.write_text(f"vbr\t{vbr}\t{vbr}\tdog\ttrain\t-\t-\ncat\t{cat}\t{cat}\tdog\ttrain\t-\t-\n")
    # (no video stream: the rows fail on their video, never as truncated audio)
    r = run([binary("ingest"), "--manifest", m, "--out", tmp_path / "o", "--jobs", "1", "--quiet"])
    assert "truncated" not in r.stderr and "no video stream" in r.stderr, r.stderr


def test_a_stream_shorter_than_the_file_is_not_cut(tmp_path):
    """FLV declares only the file's duration: audio that ends before the video (and video before the audio)
    is complete. ffmpeg's AVI muxer stores a late audio start as empty chunks its header counts, which the
    demuxer skips. The file's packets go on to its end: not truncated, for spectro and frames alike."""
    files = {}
    for name, vd, ad in (("ashort.flv", 6, 3), ("vshort.flv", 3, 6)):
        files[name] = tmp_path / name
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=128x96:rate=25:duration={vd}", "-f", "lavfi", "-i",
               f"sine=duration={ad}", "-c:v", "flv1", "-c:a", "libmp3lame", files[name])
    v, a = tmp_path / "v.nut", tmp_path / "a.wav"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=6", "-c:v", "ffv1", v)
    ffmpeg("-f", "lavfi", "-i", "sine=duration=4", a)
    files["late.avi"] = tmp_path / "late.avi"
    ffmpeg("-i", v, "-itsoffset", "1.5", "-i", a, "-map", "0:v", "-map", "1:a", "-c:v", "mpeg4", "-c:a", "aac",
           files["late.avi"])
    for name, path in files.items():
        x = _samples(str(path), tmp_path)
        assert np.array_equal(x, su.ffmpeg_decode(path)), name
        r = run([binary("spectro"), "-q", path, "-o", tmp_path / "s.npy", "--duration", "6"])
        assert r.returncode == 0 and r.stderr == "", (name, r.stderr)
        r = run([binary("frames"), path, "--count", "3", "-o", tmp_path / "f.npy"])
        assert r.returncode == 0 and r.stderr == "", (name, r.stderr)
    # cut, the same files are truncated: the file's readable end falls short too
    for name, path in files.items():
        data = path.read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) // 3])
        r = run([binary("spectro"), "-q", cut, "-o", tmp_path / "s.npy", "--duration", "6"])
        assert r.returncode == 1 and "truncated" in r.stderr, (name, r.stderr)
