"""The reference recipe for the spectro oracle tests: the `ffmpeg` program
decodes (-ac 1 -ar 16000 -f f32le), numpy tiles/cuts/clips, scipy (float64)
computes the spectrogram."""
import subprocess

import numpy as np
import scipy.signal

import tolerance as TOL


# The file's clock (docs/ARCHITECTURE.md, common/): sample 0 is the file's start time (ffmpeg's -ss origin).
# ffmpeg shifts every timestamp by -start_time; aresample with first_pts=0 then pads audio that starts
# later with silence (injected at the input rate, before resampling) or drops output before 0, and
# min_comp=0 does so for any offset (the default ignores offsets under 1 ms). For audio whose first
# decoded sample is at the file's start this is bit for bit `ffmpeg -i IN -vn -ac 1 -ar R -f f32le`.
FILE_CLOCK = "aresample=async=1:first_pts=0:min_comp=0"


def ffmpeg_decode(path, rate=16000, start=None, duration=None, file_clock=True):
    """Mono float32 samples on the file's clock as the ffmpeg program decodes them; with start (and
    duration): the output-side `-ss start -t duration` of that (ffmpeg's trim, after resampling).
    file_clock=False: the plain decoding (no leading silence, and no gap filled later either)."""
    seg = [] if start is None else ["-ss", repr(start)] + ([] if duration is None else ["-t", repr(duration)])
    r = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), *seg,
                        "-vn", *(["-af", FILE_CLOCK] if file_clock else []), "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
                       capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg could not decode {path}: {r.stderr.decode()}")
    return np.frombuffer(r.stdout, dtype="<f4")


def fix_length(x, rate, duration, start=None, end=None):
    """Segment [start, end) s (sample index = round half up), tile, cut, clip."""
    if end is not None:
        i0 = int(np.floor(start * rate + 0.5))
        i1 = min(int(np.floor(end * rate + 0.5)), len(x))
        x = x[i0:i1]
    target = int(round(duration * rate))
    reps = -(-target // len(x))
    return np.clip(np.tile(x.astype(np.float64), reps)[:target], -1.0, 1.0)


def log_spectrogram(x, rate=16000, dtype=np.float64):
    """(S, log S) of scipy's recipe on the samples x (already fixed in length), in dtype: float64 is
    the reference, float32 the control of the tolerance rule."""
    x = np.asarray(x).astype(dtype)
    _, _, S = scipy.signal.spectrogram(x, fs=rate, nperseg=512, noverlap=353)
    return S, np.log(S + dtype(1e-7))


def reference(path, rate=16000, duration=10.0, start=None, end=None, normalize=False, dtype=np.float64):
    """Returns (S, log S) of scipy's recipe, [257, T] in dtype: float64 is the
    reference, float32 the control of the tolerance rule (scipy then transforms
    in single precision, numpy sums in float32)."""
    S, L = log_spectrogram(fix_length(ffmpeg_decode(path, rate), rate, duration, start, end), rate, dtype)
    if normalize:
        L = (L - L.mean()) / (L.std() + dtype(1e-9))
    return S, L


def log_error_stats(ours, S, L):
    """|ours - L| statistics: over bins with S > 1e-6 (p99.9, median) and over all bins (max).
    |delta log| is the relative error of the power."""
    d = np.abs(ours.astype(np.float64) - L)
    m = S > 1e-6
    return {"p999": float(np.percentile(d[m], 99.9)) if m.any() else 0.0,
            "median": float(np.median(d[m])) if m.any() else 0.0,
            "max_all": float(d.max()),
            "n_loud": int(m.sum())}


def assert_matches(ours, S, L, what, control):
    """The tolerance rule (tests/oracle/tolerance.py) on each statistic of
    |ours - L| (log_error_stats): at most K x the same statistic of the float32
    control (scipy's recipe in float32 on the same samples: control = its log S)
    + FLOOR (absolute in log units, i.e. relative in power). Measured here
    (AVX-512 FFTW): ours p99.9 ~3e-6, median ~4e-7."""
    assert ours.shape == L.shape, f"{what}: shape {ours.shape} != {L.shape}"
    assert ours.dtype == np.float32, f"{what}: dtype {ours.dtype}"
    st = log_error_stats(ours, S, L)
    ct = log_error_stats(control, S, L)
    assert st["n_loud"] > 0.05 * L.size, f"{what}: test signal too quiet ({st})"
    for k in ("p999", "median", "max_all"):
        assert st[k] <= TOL.bound(ct[k]), f"{what}: {k} {st[k]:.3g} > bound {TOL.bound(ct[k]):.3g} (control {ct})"
    return st
