"""Helpers of the frames oracle tests: the reference is the ffmpeg program."""
import subprocess

import numpy as np

from conftest import binary, ffmpeg, run


def make_video(path, src, encode, pre=(), dur=3):
    """Generates a test video with the ffmpeg program: lavfi source `src`, encoder options `encode`."""
    ffmpeg(*pre, "-f", "lavfi", "-i", f"{src}:duration={dur}", *encode, path)
    return str(path)


def ffmpeg_frame(path, t):
    """The reference: ffmpeg -i IN -ss T -frames:v 1 -f rawvideo -pix_fmt rgb24 - (bytes, maybe empty)."""
    r = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-ss", str(t),
                        "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def ffprobe_size(path):
    """Displayed size (after rotation) as ffmpeg gives it: decode the first frame."""
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "stream=width,height", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    w, h = r.stdout.strip().split(",")[:2]
    return int(w), int(h)


def ffprobe_duration(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                       capture_output=True, text=True)
    return float(r.stdout.strip())


def frame_pts_list(path):
    """Presentation times of all video frames as ffmpeg counts them (start time removed)."""
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "frame=best_effort_timestamp_time", "-of", "csv=p=0", str(path)],
                       capture_output=True, text=True)
    ts = [float(x.split(",")[0]) for x in r.stdout.split() if x.strip() and x.split(",")[0] != "N/A"]
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=start_time", "-of", "csv=p=0", str(path)],
                       capture_output=True, text=True)
    st = float(r.stdout.strip()) if r.stdout.strip() not in ("", "N/A") else 0.0
    return sorted(t - st for t in ts)


def extract(path, out, *args):
    """Runs frames on one input into out (.npy); returns (array, [(asked, pts)])."""
    r = run([binary("frames"), path, "-o", out, "--print-timestamps", *args])
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    times = [(float(x[-2]), float(x[-1])) for x in rows]
    return np.load(out), times, [x[-1] for x in rows]


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def compare_with_ffmpeg(path, arr, printed, exact=True, min_psnr=35.0):
    """Each frame equals ffmpeg's at the printed timestamp (exactly, or within min_psnr)."""
    for i, pts in enumerate(printed):
        ref = ffmpeg_frame(path, pts)
        assert len(ref) == arr[i].size, f"{path} frame {i} at {pts}: ffmpeg gave {len(ref)} bytes, we {arr[i].shape}"
        ref = np.frombuffer(ref, np.uint8).reshape(arr[i].shape)
        if exact:
            diff = np.abs(ref.astype(int) - arr[i].astype(int))
            assert diff.max() == 0, f"{path} frame {i} at {pts}: max diff {diff.max()}, psnr {psnr(ref, arr[i]):.1f}"
        else:
            p = psnr(ref, arr[i])
            assert p >= min_psnr, f"{path} frame {i} at {pts}: psnr {p:.1f} dB"
