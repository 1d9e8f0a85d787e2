"""Oracle tests of `spectro`: clips generated with the ffmpeg program in many
codecs, rates and channel layouts; our output against scipy (float64) run on
the audio the ffmpeg program decodes, tiled/cut/clipped (spectro_util.py)."""
import os
import struct
import subprocess
import sys
import wave

import h5py
import numpy as np
import pytest
import scipy.fft
import scipy.signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import binary, ffmpeg, run  # noqa: E402
import spectro_util as su
import tolerance as TOL  # noqa: E402


def _encoders():
    r = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    return {line.split()[1] for line in r.stdout.splitlines()[10:] if len(line.split()) > 1}


def _source(rate, channels, dur, gain=1.0):
    """An aevalsrc with a different chirp + noise per channel (broadband, so
    that most bins are above the 1e-6 floor)."""
    exprs = []
    for c in range(channels):
        f0 = 150 + 97 * c
        exprs.append(f"{gain:.3f}*(0.25*sin(2*PI*({f0}+{400 + 50 * c}*t)*t)+0.15*sin(2*PI*{1000 + 333 * c}*t)"
                     f"+0.2*(random({c})-0.5))")
    return ["-f", "lavfi", "-i", f"aevalsrc=exprs={'|'.join(exprs)}:s={rate}:d={dur}"]


ENC = None


def _vorbis():
    return ["-c:a", "libvorbis"] if "libvorbis" in ENC else ["-c:a", "vorbis", "-strict", "-2"]


def _unspec_layout(path):
    """Zeroes the WAVE_FORMAT_EXTENSIBLE channel mask: the decoder then gives
    a channel count without a layout."""
    b = bytearray(open(path, "rb").read())
    i = b.index(b"fmt ")
    fmt = i + 8
    assert struct.unpack_from("<H", b, fmt)[0] == 0xFFFE, "expected WAVE_FORMAT_EXTENSIBLE"
    struct.pack_into("<I", b, fmt + 20, 0)
    open(path, "wb").write(b)


# name: (rate, channels, seconds, codec args, extra: video / gain / fix)
CLIPS = {
    "aac_stereo_44k_video.mp4": (44100, 2, 4.0, lambda: ["-c:a", "aac"], {"video": True}),
    "aac_6ch_48k.m4a": (48000, 6, 12.5, lambda: ["-c:a", "aac", "-channel_layout", "5.1"], {}),
    "mp3_mono_22k.mp3": (22050, 1, 3.3, lambda: ["-c:a", "libmp3lame"], {}),
    "vorbis_stereo_11k.ogg": (11025, 2, 5.0, _vorbis, {}),
    "opus_stereo_48k.webm": (48000, 2, 6.0, lambda: ["-c:a", "libopus"], {}),
    "aac_stereo_44k.flv": (44100, 2, 3.0, lambda: ["-c:a", "aac"], {}),
    "flac_stereo_22k.mkv": (22050, 2, 4.0, lambda: ["-c:a", "flac"], {}),
    "s16_mono_8k.wav": (8000, 1, 2.5, lambda: ["-c:a", "pcm_s16le"], {}),
    "u8_stereo_11024.wav": (11024, 2, 4.0, lambda: ["-c:a", "pcm_u8"], {}),
    "s32_6ch_48k.wav": (48000, 6, 3.0, lambda: ["-c:a", "pcm_s32le", "-channel_layout", "5.1"], {}),
    "f32_stereo_44k_loud.wav": (44100, 2, 11.0, lambda: ["-c:a", "pcm_f32le"], {"gain": 2.5}),
    "s16_6ch_22k_nolayout.wav": (22050, 6, 3.0, lambda: ["-c:a", "pcm_s16le", "-channel_layout", "5.1"],
                                 {"fix": _unspec_layout}),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    global ENC
    ENC = _encoders()
    d = tmp_path_factory.mktemp("spectro_clips")
    paths = {}
    for name, (rate, ch, dur, codec, extra) in CLIPS.items():
        p = d / name
        args = _source(rate, ch, dur, extra.get("gain", 1.0))
        if extra.get("video"):
            args += ["-f", "lavfi", "-i", f"testsrc=d={dur}:s=64x48:r=10", "-c:v", "mpeg4"]
        ffmpeg(*args, *codec(), "-ac", ch, "-ar", rate, p)
        if "fix" in extra:
            extra["fix"](p)
        paths[name] = p
    return paths


@pytest.fixture(scope="module")
def folder_run(clips, tmp_path_factory):
    """One run over every clip into a folder, 2 jobs."""
    out = tmp_path_factory.mktemp("spectro_out")
    r = run([binary("spectro"), "-j", "2", "-q", "--no-wisdom", *clips.values(), "-o", out])
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return out


def test_generated_clips_are_what_they_claim(clips):
    """The inputs really cover the layouts and rates (ffprobe)."""
    for name, (rate, ch, _, _, _) in CLIPS.items():
        r = run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                 "stream=sample_rate,channels,channel_layout", "-of", "default=nw=1", clips[name]])
        assert f"sample_rate={rate}" in r.stdout and f"channels={ch}" in r.stdout, (name, r.stdout)
        if "nolayout" in name:
            assert "channel_layout=5.1" not in r.stdout, r.stdout


@pytest.mark.parametrize("name", list(CLIPS))
def test_decode_bit_exact_vs_ffmpeg(clips, tmp_path, name):
    """Decoded mono 16 kHz samples equal `ffmpeg -af aresample=async=1:first_pts=0:min_comp=0 -ac 1 -ar 16000
    -f f32le` (the file's clock, spectro_util.FILE_CLOCK) bit for bit."""
    out = tmp_path / "s.npy"
    r = run([binary("spectro"), "--samples", "--no-wisdom", clips[name], "-o", out])
    assert r.returncode == 0, r.stderr
    ours = np.load(out)
    ref = su.ffmpeg_decode(clips[name])
    assert ours.dtype == np.float32 and ours.shape == ref.shape, (ours.shape, ref.shape)
    assert np.array_equal(ours, ref), f"max diff {np.abs(ours - ref).max()}"


@pytest.mark.parametrize("name", list(CLIPS))
def test_spectrogram_matches_scipy(clips, folder_run, name):
    ours = np.load(folder_run / (os.path.splitext(name)[0] + ".npy"))
    assert ours.shape == (257, 1004)
    S, L = su.reference(clips[name])
    su.assert_matches(ours, S, L, name, su.reference(clips[name], dtype=np.float32)[1])


@pytest.mark.parametrize("planner", ["estimate", "measure", "patient", "wisdom"])
def test_fftw_plans(clips, tmp_path, planner):
    """FFTW's plan (chosen by timing under the default measure, so it can differ between runs and
    machines; or read from a wisdom file another planner wrote) changes the spectrogram by float32
    rounding only: each matches scipy under the tolerance rule."""
    clip = clips["aac_6ch_48k.m4a"]
    out = tmp_path / "p.npy"
    if planner == "wisdom":  # a patient plan's wisdom, then read by a default (measure) run
        w = tmp_path / "w"
        r = run([binary("spectro"), "--wisdom", w, "--fftw-planner", "patient", clip, "-o", tmp_path / "x.npy"])
        assert r.returncode == 0 and w.exists(), r.stderr
        args = ["--wisdom", w]
    else:
        args = ["--no-wisdom", "--fftw-planner", planner]
    r = run([binary("spectro"), *args, clip, "-o", out])
    assert r.returncode == 0, r.stderr
    S, L = su.reference(clip)
    su.assert_matches(np.load(out), S, L, planner, su.reference(clip, dtype=np.float32)[1])


def test_loud_clip_is_clipped(clips, folder_run):
    """The loud clip exceeds [-1, 1]: without clipping it would not match."""
    x = su.ffmpeg_decode(clips["f32_stereo_44k_loud.wav"])
    assert np.abs(x).max() > 1.2
    ours = np.load(folder_run / "f32_stereo_44k_loud.npy")
    xs = np.tile(x.astype(np.float64), 2)[:160000]  # not clipped
    _, _, S = scipy.signal.spectrogram(xs, fs=16000, nperseg=512, noverlap=353)
    assert np.abs(ours - np.log(S + 1e-7)).max() > 0.1


def test_segment_tiled(clips, tmp_path):
    out = tmp_path / "seg.npy"
    r = run([binary("spectro"), "--no-wisdom", "--start", "1.5", "--end", "3.2", clips["aac_6ch_48k.m4a"],
             "-o", out])
    assert r.returncode == 0, r.stderr
    S, L = su.reference(clips["aac_6ch_48k.m4a"], start=1.5, end=3.2)
    _, L32 = su.reference(clips["aac_6ch_48k.m4a"], start=1.5, end=3.2, dtype=np.float32)
    su.assert_matches(np.load(out), S, L, "segment", L32)


def test_three_seconds_and_clip_normalisation(clips, tmp_path):
    out = tmp_path / "n.npy"
    r = run([binary("spectro"), "--no-wisdom", "--duration", "3", "--normalize", "clip",
             clips["mp3_mono_22k.mp3"], "-o", out])
    assert r.returncode == 0, r.stderr
    ours = np.load(out)
    assert ours.shape == (257, 299)
    _, L = su.reference(clips["mp3_mono_22k.mp3"], duration=3, normalize=True)
    _, L32 = su.reference(clips["mp3_mono_22k.mp3"], duration=3, normalize=True, dtype=np.float32)
    d, dc = np.abs(ours - L), np.abs(L32 - L)
    for q in (99.9, 50):
        assert np.percentile(d, q) <= TOL.bound(np.percentile(dc, q)), (q, np.percentile(d, q), np.percentile(dc, q))
    for stat, want in ((np.mean, 0.0), (np.std, 1.0)):
        e, ec = abs(stat(ours.astype(np.float64)) - want), abs(stat(L32.astype(np.float64)) - want)
        assert e <= TOL.bound(ec), (stat.__name__, e, ec)


def test_hann_magnitude_no_detrend(clips, tmp_path):
    """The librosa-like recipe: |FFT(hann * x)| at 22.05 kHz, 3 s, log(|X| + 1e-7)."""
    out = tmp_path / "h.npy"
    r = run([binary("spectro"), "--no-wisdom", "--sample-rate", "22050", "--duration", "3", "--window-fn",
             "hann", "--scale", "magnitude", "--no-detrend", "--overlap", "159", clips["aac_stereo_44k.flv"],
             "-o", out])
    assert r.returncode == 0, r.stderr
    ours = np.load(out)
    x = su.fix_length(su.ffmpeg_decode(clips["aac_stereo_44k.flv"], 22050), 22050, 3)
    hop = 512 - 159
    T = (len(x) - 512) // hop + 1
    frames = np.stack([x[t * hop:t * hop + 512] for t in range(T)])
    win = scipy.signal.get_window("hann", 512)

    def logmag(dt):  # scipy.fft keeps single precision in single
        X = np.abs(scipy.fft.rfft(frames.astype(dt) * win.astype(dt), axis=1)).T
        return X, np.log(X + dt(1e-7))
    X, L = logmag(np.float64)
    _, L32 = logmag(np.float32)
    assert ours.shape == L.shape == (257, 186)  # no centre padding: (66150 - 512) // 353 + 1
    d, dc = np.abs(ours - L)[X > 1e-3], np.abs(L32 - L)[X > 1e-3]
    for q in (99.9, 50):
        assert np.percentile(d, q) <= TOL.bound(np.percentile(dc, q)), (q, np.percentile(d, q), np.percentile(dc, q))


def test_no_log_writes_power(clips, tmp_path):
    out = tmp_path / "p.npy"
    r = run([binary("spectro"), "--no-wisdom", "--no-log", clips["s16_mono_8k.wav"], "-o", out])
    assert r.returncode == 0, r.stderr
    S, _ = su.reference(clips["s16_mono_8k.wav"])
    S32, _ = su.reference(clips["s16_mono_8k.wav"], dtype=np.float32)
    ours = np.load(out).astype(np.float64)
    # per frame: max error relative to the frame's peak; over loud bins: median relative error
    peak = S.max(axis=0, keepdims=True)
    loud = S > 1e-3 * peak
    for x in (ours, S32):
        assert x.shape == S.shape
    e = [(np.abs(x - S) / peak).max() for x in (ours, S32)]
    m = [np.median(np.abs(x - S)[loud] / S[loud]) for x in (ours, S32)]
    assert e[0] <= TOL.bound(e[1]) and m[0] <= TOL.bound(m[1]), (e, m)


def test_hdf5_output(clips, folder_run, tmp_path):
    out = tmp_path / "x.h5"
    clip = clips["vorbis_stereo_11k.ogg"]
    r = run([binary("spectro"), "--no-wisdom", clip, "-o", out])
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        ds = f["spectrogram"]
        assert ds.shape == (257, 1004) and ds.dtype == np.float32
        # another run: FFTW_MEASURE may pick another algorithm (rounding differs)
        np.testing.assert_allclose(ds[()], np.load(folder_run / "vorbis_stereo_11k.npy"), atol=1e-4)
        a = ds.attrs
        assert a["sample_rate"] == 16000 and a["window"] == 512 and a["overlap"] == 353
        assert a["duration"] == 10.0 and a["log"] == 1 and a["detrend"] == 1
        assert abs(a["log_eps"] - 1e-7) < 1e-20
        assert a["window_kind"] in (b"tukey25", "tukey25") and a["normalize"] in (b"none", "none")
    assert sorted(os.listdir(tmp_path)) == ["x.h5"]


def test_wisdom_file(clips, tmp_path):
    w = tmp_path / "w" / "wisdom"
    r = run([binary("spectro"), "--wisdom", w, clips["s16_mono_8k.wav"], "-o", tmp_path / "a.npy"])
    assert r.returncode == 0, r.stderr
    assert w.exists() and w.read_text().startswith("(fftw-")
    w.write_text("(fftw-3.3.10 fftwf_wisdom garbage (((((")  # a corrupt wisdom file is harmless
    r = run([binary("spectro"), "--wisdom", w, clips["s16_mono_8k.wav"], "-o", tmp_path / "b.npy"])
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), atol=1e-4)
    env = dict(os.environ, HOME=str(tmp_path / "home"), XDG_CACHE_HOME="", C2KD_FFTW_WISDOM="")
    r = run([binary("spectro"), "--no-wisdom", clips["s16_mono_8k.wav"], "-o", tmp_path / "c.npy"], env=env)
    assert r.returncode == 0 and not (tmp_path / "home").exists()
    r = run([binary("spectro"), clips["s16_mono_8k.wav"], "-o", tmp_path / "d.npy"], env=env)
    assert r.returncode == 0 and (tmp_path / "home/.cache/c2kd/fftw-wisdom-f32").exists()


# ---- bad inputs ----

@pytest.fixture(scope="module")
def bad_inputs(clips, tmp_path_factory):
    d = tmp_path_factory.mktemp("spectro_bad")
    bad = {}
    bad["missing"] = (d / "missing.mp4", "no such file")
    (d / "adir").mkdir()
    bad["directory"] = (d / "adir", "is a directory")
    (d / "text.mp4").write_text("not media\n" * 100)
    bad["not media"] = (d / "text.mp4", "not a media file")
    (d / "empty.wav").write_bytes(b"")
    bad["empty file"] = (d / "empty.wav", "empty file")
    ffmpeg("-f", "lavfi", "-i", "testsrc=d=1:s=64x48:r=10", "-c:v", "mpeg4", d / "video_only.mp4")
    bad["no audio stream"] = (d / "video_only.mp4", "no audio stream")
    with wave.open(str(d / "zero.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    bad["zero-length"] = (d / "zero.wav", "zero-length audio")
    # truncated: an mp4 with its index first (faststart) cut in half; an mp3
    # and a webm cut in half; an mp4 with the index at the end cut
    ffmpeg(*_source(44100, 2, 4), "-c:a", "aac", "-movflags", "+faststart", d / "fs.mp4")
    for src, name in [(d / "fs.mp4", "trunc_faststart.mp4"), (clips["mp3_mono_22k.mp3"], "trunc_mp3.mp3"),
                      (clips["opus_stereo_48k.webm"], "trunc_webm.webm"), (clips["aac_6ch_48k.m4a"], "trunc_moov.m4a")]:
        data = open(src, "rb").read()
        (d / name).write_bytes(data[:len(data) // 2])
        bad[name] = (d / name, "truncated")
    # corrupt: bytes in the middle of the AAC data overwritten
    data = bytearray(open(d / "fs.mp4", "rb").read())
    rng = np.random.default_rng(1)
    data[len(data) // 3:len(data) // 3 + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (d / "corrupt.mp4").write_bytes(bytes(data))
    bad["corrupt"] = (d / "corrupt.mp4", "corrupt")
    return bad


def test_bad_inputs_each_one_line_others_processed(clips, bad_inputs, tmp_path):
    good = [clips["s16_mono_8k.wav"], clips["mp3_mono_22k.mp3"]]
    out = tmp_path / "out"
    paths = [good[0]] + [p for p, _ in bad_inputs.values()] + [good[1]]
    r = run([binary("spectro"), "-j", "2", "--no-wisdom", *paths, "-o", out])
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == len(bad_inputs), r.stderr
    for what, (p, reason) in bad_inputs.items():
        mine = [ln for ln in lines if ln.startswith(f"spectro: {p}: ")]
        assert len(mine) == 1, (what, r.stderr)
        assert reason in mine[0].lower(), (what, mine[0])
    # outputs: exactly the good ones, no temporary or partial files
    assert sorted(os.listdir(out)) == ["mp3_mono_22k.npy", "s16_mono_8k.npy"]
    for g in good:
        assert np.load(out / (g.stem + ".npy")).shape == (257, 1004)


@pytest.mark.parametrize("ext", [".npy", ".h5"])
def test_bad_single_input_leaves_no_file(bad_inputs, tmp_path, ext):
    for what, (p, _) in bad_inputs.items():
        out = tmp_path / ("o" + ext)
        r = run([binary("spectro"), "--no-wisdom", p, "-o", out])
        assert r.returncode == 1, what
        assert len(r.stderr.strip().splitlines()) == 1, (what, r.stderr)
        assert os.listdir(tmp_path) == [], (what, os.listdir(tmp_path))


def test_empty_segment_is_a_bad_input(clips, tmp_path):
    r = run([binary("spectro"), "--no-wisdom", "--start", "30", "--end", "31", clips["s16_mono_8k.wav"],
             "-o", tmp_path / "o.npy"])
    assert r.returncode == 1 and "empty segment" in r.stderr
    assert os.listdir(tmp_path) == []


def test_usage(clips, tmp_path):
    r = run([binary("spectro"), "--help"])
    assert r.returncode == 0
    for opt in ["--output", "--jobs", "--sample-rate", "--duration", "--start", "--end", "--window ",
                "--overlap", "--window-fn", "--scale", "--no-detrend", "--no-log", "--log-eps", "--normalize",
                "--wisdom", "--no-wisdom", "--samples", "--timing", "--quiet", "--verbose", "--help"]:
        assert opt in r.stdout, opt
    c = clips["s16_mono_8k.wav"]
    for args in [[c], ["-o", tmp_path / "x.npy"], ["--bogus", c, "-o", tmp_path / "x.npy"],
                 ["-j", "0", c, "-o", tmp_path / "x.npy"], [c, c, "-o", tmp_path / "x.npy"],
                 ["--overlap", "512", c, "-o", tmp_path / "x.npy"], ["--scale", "db", c, "-o", tmp_path / "x.npy"],
                 ["--start", "3", "--end", "2", c, "-o", tmp_path / "x.npy"],
                 ["--duration", "abc", c, "-o", tmp_path / "x.npy"]]:
        r = run([binary("spectro"), *args])
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip(), args
    assert os.listdir(tmp_path) == []


def test_timing_report(clips, tmp_path):
    r = run([binary("spectro"), "--no-wisdom", "--timing", clips["s16_mono_8k.wav"], "-o", tmp_path / "t.npy"])
    assert r.returncode == 0
    for stage in ["decode", "length", "spectrogram", "write"]:
        assert stage in r.stderr
