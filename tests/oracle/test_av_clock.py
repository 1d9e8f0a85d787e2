"""Sound and picture on one clock (issue 16, item 1): every time is presentation time on the file's clock,
counted from the file's start time as the ffmpeg program counts -ss (common/cm_media.h). Audio that starts
after the file's start is silence before its first sample, audio before it is cut. Files are made in the
test with the audio stream shifted against the video (`-itsoffset` on the audio input) in several
containers; `spectro`, `frames` and `ingest` are checked against the ffmpeg program (decoding on the
file's clock: spectro_util.FILE_CLOCK; frames: `-ss T -frames:v 1`) and scipy."""
import subprocess

import numpy as np
import pytest

import spectro_util as su
from conftest import binary, ffmpeg, run
from frames_util import ffmpeg_frame, psnr
from ingest_util import decode_jpeg, read_out

VIDEO = "testsrc2=size=128x96:rate=25:duration=6"
AUDIO = "anoisesrc=d=4:c=pink:a=0.5:r=44100:seed=7"
# container -> (video encoder options, audio encoder options)
CONTAINERS = {
    "mp4": (["-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    "mkv": (["-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p"], ["-c:a", "libvorbis"]),
    "flv": (["-c:v", "flv1", "-g", "10"], ["-c:a", "libmp3lame", "-ar", "22050"]),
    "mov": (["-c:v", "mpeg4", "-g", "10"], ["-c:a", "pcm_s16le"]),
    "avi": (["-c:v", "mpeg4", "-g", "10"], ["-c:a", "libmp3lame"]),
}
OFFSETS = [1.5, -0.7, 0.05]
CASES = [(c, o) for c in CONTAINERS for o in OFFSETS]


def _probe(path, what):
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", what, "-of", "csv=p=0", str(path)],
                       capture_output=True, text=True, check=True)
    return [x for x in r.stdout.split()]


def audio_start_on_file_clock(path):
    """ffprobe's first decoded audio frame time minus the format's start time (seconds)."""
    fmt = float(_probe(path, "format=start_time")[0])
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_frames", "-read_intervals",
                        "%+#200", "-show_entries", "frame=pts_time", "-of", "csv=p=0", str(path)],
                       capture_output=True, text=True, check=True)
    return float(r.stdout.split()[0].strip(",")) - fmt


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("avclock")
    v, a = d / "v.nut", d / "a.wav"
    ffmpeg("-f", "lavfi", "-i", VIDEO, "-c:v", "ffv1", v)
    ffmpeg("-f", "lavfi", "-i", AUDIO, "-ac", "2", a)
    out = {}
    for c, o in CASES:
        venc, aenc = CONTAINERS[c]
        p = d / f"off{o:+g}.{c}"
        ffmpeg("-i", v, "-itsoffset", repr(o), "-i", a, "-map", "0:v", "-map", "1:a", *venc, *aenc, p)
        out[(c, o)] = str(p)
    # an MP4 with an edit list cutting 1 s of audio before the start, and AAC priming (its first packet
    # is decoded and dropped: AV_PKT_DATA_SKIP_SAMPLES)
    p = d / "editlist.mp4"
    ffmpeg("-i", v, "-itsoffset", "-1", "-i", a, "-map", "0:v", "-map", "1:a", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a", "aac", p)
    out["editlist.mp4"] = str(p)
    return out


def test_the_files_are_what_they_claim(media):
    """The oracle itself: ffmpeg's file-clock decoding starts the sound where ffprobe says the audio starts
    on the file's clock, and the generated offsets are there (AVI cannot store one: ffmpeg plays its audio
    from 0; MP4/MOV cut audio before 0 with an edit list)."""
    starts = {}
    for key, path in media.items():
        s = audio_start_on_file_clock(path)
        starts[key] = s
        x = su.ffmpeg_decode(path)
        loud = np.flatnonzero(np.abs(x) > 0.02)
        assert loud.size, key
        # the noise is loud from its first sample: the sound starts at the generated offset (the codec's
        # priming, before it, is silent), or at 0 when the offset is negative or the container lost it
        off = 0.0 if key == "editlist.mp4" or key[0] == "avi" else max(key[1], 0.0)
        prime = 0.08 if key[0] in ("flv", "avi") else 0.03  # MP3: 1105 + 529 samples of decoder delay
        assert off - 0.005 <= loud[0] / 16000 <= off + prime, (key, s, loud[0] / 16000)
        assert s <= off + 0.01, (key, s)
    assert starts[("mkv", 1.5)] == pytest.approx(1.5, abs=0.03)
    assert starts[("mp4", 1.5)] == pytest.approx(1.5, abs=0.03)
    assert starts[("mp4", 0.05)] == pytest.approx(0.05, abs=0.03)
    assert starts[("flv", 1.5)] == pytest.approx(1.5, abs=0.08)  # MP3 priming before the sound
    # audio first: the file starts with it, the video 0.7 s later
    assert starts[("mkv", -0.7)] == pytest.approx(0.0, abs=0.01)
    assert float(_probe(media[("mkv", -0.7)], "stream=start_time")[0]) == pytest.approx(0.7, abs=0.03)


@pytest.mark.parametrize("key", CASES + ["editlist.mp4"], ids=str)
def test_samples_on_the_file_clock(media, tmp_path, key):
    """--samples equals the ffmpeg program's decoding on the file's clock, bit for bit, leading silence
    included."""
    out = tmp_path / "x.npy"
    r = run([binary("spectro"), "-q", "--samples", "--no-wisdom", media[key], "-o", out])
    assert r.returncode == 0, r.stderr
    ours, ref = np.load(out), su.ffmpeg_decode(media[key])
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert np.array_equal(ours, ref), np.abs(ours - ref).max()


@pytest.mark.parametrize("seg", [(2.0, 3.0), (1.0, 2.0), (0.25, 1.25)])
@pytest.mark.parametrize("key", CASES + ["editlist.mp4"], ids=str)
def test_segment_is_file_time(media, tmp_path, key, seg):
    """spectro --start S --end E is the ffmpeg program's `-ss S -t E-S` on the file's clock (its trim, after
    resampling), then scipy's spectrogram; the segment's samples are those of the whole decoding."""
    s, e = seg
    path = media[key]
    ref_x = su.ffmpeg_decode(path, start=s, duration=e - s)
    whole = su.ffmpeg_decode(path)
    assert np.array_equal(ref_x, whole[int(s * 16000):int(e * 16000)])
    out = tmp_path / "s.npy"
    r = run([binary("spectro"), "-q", "--no-wisdom", path, "-o", out, "--start", s, "--end", e,
             "--duration", e - s])
    assert r.returncode == 0, r.stderr
    ours = np.load(out)
    x = su.fix_length(ref_x, 16000, e - s)
    S, L = su.log_spectrogram(x)
    if (S > 1e-6).mean() > 0.05:
        su.assert_matches(ours, S, L, f"{key} {seg}", su.log_spectrogram(x, dtype=np.float32)[1])
    else:  # silence (audio that starts after the segment): the floor everywhere
        assert ours.shape == L.shape and np.abs(ours - L).max() <= 1e-3


@pytest.mark.parametrize("key", [("mkv", 1.5), ("mp4", 1.5), ("flv", -0.7), ("mp4", -0.7)], ids=str)
def test_whole_file_with_leading_silence(media, tmp_path, key):
    """No segment: the clip is the file from its start (leading silence when the audio starts later),
    tiled/cut to --duration; a longer --duration tiles all of it."""
    for dur in (3, 10):
        out = tmp_path / "s.npy"
        r = run([binary("spectro"), "-q", "--no-wisdom", media[key], "-o", out, "--duration", dur])
        assert r.returncode == 0, r.stderr
        S, L = su.reference(media[key], duration=dur)
        su.assert_matches(np.load(out), S, L, f"{key} {dur}", su.reference(media[key], duration=dur, dtype=np.float32)[1])


@pytest.mark.parametrize("key", CASES + ["editlist.mp4"], ids=str)
def test_frames_on_the_same_clock(media, tmp_path, key):
    """frames at file time T is `ffmpeg -i IN -ss T -frames:v 1`, whatever the audio's offset."""
    out = tmp_path / "f.npy"
    times = [0.5, 2.0, 2.5, 4.2]
    r = run([binary("frames"), media[key], "-o", out, "--at", ",".join(map(str, times))])
    assert r.returncode == 0, r.stderr
    arr = np.load(out)
    for i, t in enumerate(times):
        ref = np.frombuffer(ffmpeg_frame(media[key], t), np.uint8).reshape(arr[i].shape)
        assert np.array_equal(ref, arr[i]), (key, t, psnr(ref, arr[i]))


def test_ingest_row_sound_and_picture_from_one_segment(media, tmp_path):
    """A row's spectrogram and frame come from the same file-time segment: equal to spectro and frames run on
    that segment, and to the ffmpeg program's -ss on it."""
    keys = [("mp4", 1.5), ("mkv", -0.7), ("flv", 1.5), ("mp4", 0.05), "editlist.mp4"]
    seg = (2.0, 3.0)
    m = tmp_path / "m.tsv"
    ids = {f"r{i}": k for i, k in enumerate(keys)}
    m.write_text("".join(f"{i}\t{media[k]}\t{media[k]}\tdog\ttrain\t{seg[0]}\t{seg[1]}\n" for i, k in ids.items()))
    out = tmp_path / "out"
    r = run([binary("ingest"), "--manifest", m, "--out", out, "--jobs", "2", "--quiet", "--float32",
             "--set", "duration=1", "--set", "frames=1", "--set", "use_segment=1"])
    assert r.returncode == 0, r.stderr
    _, samples, failures = read_out(out)
    assert failures == [] and len(samples) == len(ids)
    for sid, k in ids.items():
        path, row = media[k], samples[sid]
        sp = tmp_path / "s.npy"
        r = run([binary("spectro"), "-q", "--no-wisdom", path, "-o", sp, "--start", seg[0], "--end", seg[1],
                 "--duration", 1])
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(row["spec"], np.load(sp), atol=1e-4, err_msg=str(k))
        x = su.fix_length(su.ffmpeg_decode(path, start=seg[0], duration=seg[1] - seg[0]), 16000, 1)
        S, L = su.log_spectrogram(x)
        su.assert_matches(row["spec"].astype(np.float32), S, L, str(k), su.log_spectrogram(x, dtype=np.float32)[1])
        assert tuple(row["segment"]) == seg
        t = float(row["frame_time"][0])
        assert seg[0] <= t < seg[1]
        # the frame: frames on the same segment (same JPEG), which is ffmpeg's -ss frame at its time
        fdir = tmp_path / f"f_{sid}"
        r = run([binary("frames"), "--count", "1", "--start", seg[0], "--end", seg[1], "--quality", "90",
                 "--print-timestamps", path, "-o", fdir])
        assert r.returncode == 0, r.stderr
        assert t == pytest.approx(float(r.stdout.split()[-1]), abs=1e-5)
        got = decode_jpeg(row["jpegs"][0])
        assert np.array_equal(got, decode_jpeg((fdir / "frame_00.jpg").read_bytes()))
        f = tmp_path / "f.npy"
        assert run([binary("frames"), path, "-o", f, "--at", t]).returncode == 0
        ref = np.frombuffer(ffmpeg_frame(path, t), np.uint8).reshape(96, 128, 3)
        assert np.array_equal(np.load(f)[0], ref)
        # and the JPEG is that picture, not one 0.5 s away (the picture changes with time)
        near = psnr(got, ref)
        for dt in (-0.5, 0.5):
            other = np.frombuffer(ffmpeg_frame(path, t + dt), np.uint8).reshape(96, 128, 3)
            assert near > psnr(got, other) + 3, (k, t, dt)


def test_audio_starting_absurdly_late_is_refused(tmp_path):
    """A crafted timestamp (audio 35 days after the video) is one failure line, not days of silence to
    resample; frames on the same file go on."""
    p = tmp_path / "far.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=2", "-itsoffset", "3000000", "-f", "lavfi",
           "-i", "sine=duration=1", "-map", "0:v", "-map", "1:a", "-c:v", "mpeg4", "-c:a", "pcm_s16le", p)
    r = run([binary("spectro"), "-q", p, "-o", tmp_path / "s.npy"])
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "audio starts 3000000 s from the file's start" in r.stderr and not (tmp_path / "s.npy").exists()
    assert run([binary("frames"), p, "--count", "2", "-o", tmp_path / "f.npy"]).returncode == 0


def test_ingest_whole_clip_segment_is_where_the_audio_ends(media, tmp_path):
    """A whole-clip row stores the segment (0, where its audio ends on the file's clock), though only the
    first --duration seconds are decoded: the length of the ffmpeg program's file-clock decoding."""
    keys = [("mkv", 1.5), ("mp4", -0.7), ("flv", 0.05)]
    m = tmp_path / "m.tsv"
    m.write_text("".join(f"w{i}\t{media[k]}\t{media[k]}\tdog\ttrain\t-\t-\n" for i, k in enumerate(keys)))
    out = tmp_path / "out"
    r = run([binary("ingest"), "--manifest", m, "--out", out, "--jobs", "1", "--quiet", "--set", "duration=1"])
    assert r.returncode == 0, r.stderr
    _, samples, _ = read_out(out)
    for i, k in enumerate(keys):
        end = len(su.ffmpeg_decode(media[k])) / 16000
        seg = samples[f"w{i}"]["segment"]
        assert seg[0] == 0 and seg[1] == pytest.approx(end, abs=0.05), (k, seg, end)


def test_audio_wholly_before_the_start_is_zero_length(tmp_path):
    """An MP4 whose edit list cuts all of its audio (1 s of audio shifted 3 s before the video): the ffmpeg
    program decodes nothing, spectro refuses it as zero-length audio (one line), frames go on."""
    p = tmp_path / "allcut.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=4", "-itsoffset", "-3", "-f", "lavfi",
           "-i", "sine=duration=1", "-map", "0:v", "-map", "1:a", "-c:v", "mpeg4", "-c:a", "aac", p)
    assert len(su.ffmpeg_decode(p)) == 0
    for extra in ([], ["--samples"]):
        r = run([binary("spectro"), "-q", *extra, p, "-o", tmp_path / "s.npy"])
        assert r.returncode == 1 and "zero-length audio" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert run([binary("frames"), p, "--count", "2", "-o", tmp_path / "f.npy"]).returncode == 0
