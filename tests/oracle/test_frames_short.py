"""Short clips (1-5 s, with audio) of every codec and container `frames` supports, against the ffmpeg program.

Regression of issue 13: on short FLV clips (CREMA-D's format) `frames --count 3` failed ("no decodable video
frame") or returned a frame decoded from a packet after the keyframe (garbage pixels at the printed time): the
duration scan tried to seek before the first keyframe, the failed seek still moved FLV's reading position, and
the first target then decoded from there as if the file were freshly opened.
"""
import math
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from conftest import ffmpeg
from frames_util import compare_with_ffmpeg, extract, frame_pts_list

SMALL = "testsrc2=size=176x144:rate=25"
X264 = ["-c:v", "libx264", "-g", "250", "-bf", "3", "-pix_fmt", "yuv420p"]

# name -> (lavfi video source, video encoder options, audio encoder options)
CLIPS = {
    # CREMA-D: Sorenson H.263 (flv1) 480x360 at 30 fps with MP3 audio in FLV
    "cremad.flv": ("testsrc2=size=480x360:rate=30", ["-c:v", "flv1"], ["-c:a", "libmp3lame", "-ar", "22050"]),
    "flv1_g10.flv": (SMALL, ["-c:v", "flv1", "-g", "10"], ["-c:a", "libmp3lame", "-ar", "44100"]),
    "h264.flv": ("testsrc2=size=480x360:rate=30", X264, ["-c:a", "aac"]),
    "h264_g12.flv": (SMALL, ["-c:v", "libx264", "-g", "12", "-bf", "2", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    "h264.mp4": (SMALL, X264, ["-c:a", "aac"]),
    "h264.mkv": (SMALL, X264, ["-c:a", "libvorbis"]),
    "mpeg4.avi": (SMALL, ["-c:v", "mpeg4", "-bf", "2", "-g", "10"], ["-c:a", "libmp3lame"]),
    "mjpeg.avi": (SMALL, ["-c:v", "mjpeg"], ["-c:a", "pcm_s16le"]),
    "vp8.webm": (SMALL, ["-c:v", "libvpx", "-g", "10", "-b:v", "300k"], ["-c:a", "libvorbis"]),
    "vp9.webm": (SMALL, ["-c:v", "libvpx-vp9", "-g", "10", "-b:v", "300k", "-deadline", "realtime",
                         "-cpu-used", "8"], ["-c:a", "libopus"]),
    "msvideo1.avi": ("testsrc2=size=160x120:rate=15", ["-c:v", "msvideo1"], ["-c:a", "pcm_s16le"]),
    "h263.avi": (SMALL, ["-c:v", "h263", "-g", "10"], ["-c:a", "libmp3lame"]),
    "hevc.mp4": (SMALL, ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=12"],
                 ["-c:a", "aac"]),
    "vfr.mkv": (SMALL, ["-vf", "setpts='(N+0.02*N*N)/25/TB'", "-fps_mode", "passthrough", "-c:v", "libx264",
                        "-g", "10"], ["-c:a", "aac"]),
}
# Every duration from 1 to 5 s for FLV (the failing format), 1, 3 and 5 s for the others.
CASES = [(n, d) for n in CLIPS for d in ([1, 2, 3, 4, 5] if n.endswith(".flv") else [1, 3, 5])]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("short_clips")


def make_clip(d, name, dur):
    """A clip of `dur` seconds whose audio lasts a little longer than the video, as CREMA-D's often do."""
    src, venc, aenc = CLIPS[name]
    path = d / f"{dur}s_{name}"
    if not path.exists():
        ffmpeg("-f", "lavfi", "-i", f"{src}:duration={dur}", "-f", "lavfi", "-i", f"sine=duration={dur + 0.1}",
               *venc, *aenc, path)
    return str(path)


def time_base(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=time_base",
                        "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return Fraction(r.stdout.strip())


def to_time_base(t, tb):
    """T rounded to the stream time base, as ffmpeg -ss compares (1/25 s in AVI: 0.166667 -> 0.16, 0.5 -> 0.52)."""
    q = Fraction(t).limit_denominator(10**6) / tb
    return float(math.floor(q + Fraction(1, 2)) * tb)  # half away from zero (av_rescale_q), t >= 0 here


@pytest.mark.parametrize("name,dur", CASES)
def test_short_clip_equals_ffmpeg(clip_dir, tmp_path, name, dur):
    """--count 1 and --count 3: each frame identical to ffmpeg's at the printed time and at the time asked,
    and it is the first frame (in display order) at or after the time asked."""
    path = make_clip(clip_dir, name, dur)
    pts = frame_pts_list(path)
    tb = time_base(path)
    for count in (1, 3):
        arr, times, printed = extract(path, tmp_path / f"c{count}.npy", "--count", str(count))
        assert arr.shape[0] == count and arr.dtype == np.uint8
        compare_with_ffmpeg(path, arr, printed, exact=True)
        if count == 3:
            compare_with_ffmpeg(path, arr, [f"{a:.6f}" for a, _ in times], exact=True)
        for a, p in times:
            assert 0 < a < pts[-1] + 0.1, (a, pts[-1])  # inside the clip (vfr.mkv lasts longer than dur)
            want = [x for x in pts if x >= to_time_base(a, tb) - 1e-6][0]
            assert abs(p - want) < 1e-5, (name, dur, a, p, want)
        if count == 3:
            assert times[0][1] < times[1][1] < times[2][1], times


@pytest.mark.parametrize("name", ["cremad.flv", "h264.flv", "h264.mkv", "vp9.webm"])
def test_short_clip_any_time(clip_dir, tmp_path, name):
    """Times from before the first frame to past the last one, in one call, on a 2 s clip."""
    path = make_clip(clip_dir, name, 2)
    pts = frame_pts_list(path)
    tb = time_base(path)
    asked = [0.0, 0.01, pts[1], 0.9, 1.5, pts[-2], pts[-1], pts[-1] + 1.0]
    arr, times, printed = extract(path, tmp_path / "f.npy", "--at", ",".join(f"{t:.6f}" for t in asked))
    for (a, p), t in zip(times, asked):
        at = to_time_base(round(t, 6), tb)
        later = [x for x in pts if x >= at - 1e-6]
        want = later[0] if later else pts[-1]
        assert abs(p - want) < 1e-5, (t, p, want)
    compare_with_ffmpeg(path, arr, printed, exact=True)
