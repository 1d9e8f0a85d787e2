"""A short seeded fuzz campaign (libFuzzer + ASan/UBSan) over every fuzz target:
the annotation and manifest readers, damaged sample data in a real shard (never
returned as good), the media paths of spectro and frames, and the shard folder as a
whole (refused, or read as the seed's samples). `make fuzz` runs the long one; docs/RELIABILITY.md has the
record. Any crash, sanitizer report, leak, timeout or allocation over the
limit fails the test and leaves the input in build-fuzz/crashes/."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang (libFuzzer) is not installed: make deps")
def test_seeded_fuzz_campaign():
    r = subprocess.run(["sh", "tests/fuzz/run.sh", "--runs", "400", "--seed", "1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=1200)
    print(r.stdout[-4000:], r.stderr[-4000:])
    assert r.returncode == 0
    for target in ("annotations", "shard_data", "media", "folder"):
        assert f"fuzz: {target} stat::number_of_executed_units" in r.stdout
