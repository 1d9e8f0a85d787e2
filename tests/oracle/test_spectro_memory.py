"""spectro's memory is bounded by its output, not by its input's length (issue 16, item 8): it keeps only the
samples of the segment it needs and stops decoding after them. Peak RSS (the kernel's, via getrusage of a
waited child: no timing involved) of a 10 s output from a 1 h file stays within a fixed allowance of the
peak RSS of the same output from a 10 s file; before, the whole decoded file was held (230 MB here; 5.4 GB
for the issue's 24 h)."""
import sys

import numpy as np
import pytest

import spectro_util as su
from conftest import binary, ffmpeg, run

RATE = 16000
LONG_S = 3600
# what may differ between the two runs beyond the output, which is the same: the demuxer's seek index
# (libavformat caps it at 1 MB), allocator noise
ALLOWANCE_MB = 16


def peak_rss_mb(args):
    """Runs args in a fresh Python child and returns (returncode, stderr, the peak RSS of its own child, MB):
    RUSAGE_CHILDREN of a process that waited for exactly one child is that child's peak."""
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stderr.write(r.stderr)\n"
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    r = run([sys.executable, "-c", code, *args])
    rc, kb = r.stdout.split()
    return int(rc), r.stderr, int(kb) / 1024.0


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("spmem")
    noise = f"anoisesrc=d=10:c=pink:a=0.5:r={RATE}:seed=3"
    short, long_ = d / "short.flac", d / "long.flac"
    ffmpeg("-f", "lavfi", "-i", noise, "-sample_fmt", "s16", "-c:a", "flac", short)
    # 1 h: silence, then the same 10 s of noise at its end (16-bit throughout: the same samples)
    ffmpeg("-f", "lavfi", "-i", f"anullsrc=r={RATE}:cl=mono:d={LONG_S - 10}", "-f", "lavfi", "-i", noise,
           "-filter_complex", "[0]aformat=sample_fmts=s16[a];[1]aformat=sample_fmts=s16[b];"
           "[a][b]concat=n=2:v=0:a=1", "-c:a", "flac", long_)
    return {"short": str(short), "long": str(long_)}


def test_memory_bounded_by_the_output(files, tmp_path):
    out = tmp_path / "s.npy"
    base = [binary("spectro"), "-q", "--no-wisdom", "-o", out]
    rc, err, short = peak_rss_mb(base + [files["short"]])
    assert rc == 0, err
    ref_short = np.load(out)
    for extra in ([], ["--start", LONG_S - 10, "--end", LONG_S], ["--start", 1000, "--end", 1010]):
        rc, err, rss = peak_rss_mb(base + [files["long"], *extra])
        assert rc == 0, err
        assert rss <= short + ALLOWANCE_MB, (extra, rss, short)
    # the segment at the end is the same noise: the same spectrogram as the short file's
    rc, err, _ = peak_rss_mb(base + [files["long"], "--start", LONG_S - 10, "--end", LONG_S])
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(out), ref_short)
    # what the whole decoded file would have taken
    assert LONG_S * RATE * 4 / 2**20 > 10 * ALLOWANCE_MB


def test_long_file_segment_equals_ffmpeg(files, tmp_path):
    """The segment at the end of the long file is the ffmpeg program's -ss on it, then scipy."""
    s, e = LONG_S - 12, LONG_S - 2
    out = tmp_path / "s.npy"
    r = run([binary("spectro"), "-q", "--no-wisdom", files["long"], "-o", out, "--start", s, "--end", e])
    assert r.returncode == 0, r.stderr
    x = su.fix_length(su.ffmpeg_decode(files["long"], start=s, duration=e - s), RATE, 10)
    S, L = su.log_spectrogram(x, RATE)
    su.assert_matches(np.load(out), S, L, "end of the long file", su.log_spectrogram(x, RATE, np.float32)[1])
