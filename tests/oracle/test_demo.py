"""The demo's parts (make demo, tools/demo.sh): the --mix clips of tools/gen_dataset.py carry
their two classes in the sound at the stated weight (decoded by the ffmpeg program, spectrum
by numpy), --splits shares, and tools/demo_summary.py's Welch t and verdict against scipy."""
import json
import os
import subprocess

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT

GEN = os.path.join(ROOT, "tools", "gen_dataset.py")
SUMMARY = os.path.join(ROOT, "tools", "demo_summary.py")


def gen(out, *extra):
    return subprocess.run(["/usr/bin/python3", GEN, "--layout", "ave", "--out", str(out), *extra],
                          capture_output=True, text=True)


def tone_amplitude(x, rate, f):
    """Amplitude of the sine of frequency ~f (+-3 %) in x (Hann window, peak of the spectrum)."""
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * w)) * 2 / w.sum()
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    band = (freqs > 0.97 * f) & (freqs < 1.03 * f)
    return float(spec[band].max())


def test_mix_clips_carry_two_classes_at_their_weight(tmp_path):
    r = gen(tmp_path / "ds", "--classes", "4", "--per-class", "5", "--seconds", "1", "--size", "64x48",
            "--fps", "5", "--mix", "--splits", "40,20,40", "--seed", "3")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["rows"] == {"train": 8, "val": 4, "test": 8}
    mix = info["mix"]
    assert len(mix) == 20 and all(v["class"] != v["second"] and 0 <= v["weight"] <= 0.45 for v in mix.values())
    labels = {}
    for sp in ("train", "val", "test"):
        for line in open(tmp_path / "ds" / f"{sp}Set.txt"):
            name, vid = line.split("&")[:2]
            labels[vid] = info["classes"].index(name)
    checked = 0
    for vid, v in mix.items():
        assert labels[vid] == v["class"]  # the label is the main class
        pcm = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(tmp_path / "ds" / "AVE" / f"{vid}.mp4"),
                              "-ac", "1", "-ar", "44100", "-f", "f32le", "-"], capture_output=True, check=True).stdout
        x = np.frombuffer(pcm, np.float32)[2048:-2048]  # away from the codec's edges
        a1, a2 = (tone_amplitude(x, 44100, f) for f in v["freqs"])
        m = v["weight"]
        if m > 0.1:  # the fainter tone well above the noise floor
            assert a2 / a1 == pytest.approx(m / (1 - m), rel=0.2), (vid, v, a1, a2)
            checked += 1
        assert a1 > a2
    assert checked >= 5


@pytest.mark.parametrize("bad", [["--mix", "--hard"], ["--mix", "--classes", "1"], ["--splits", "50,50"],
                                 ["--splits", "50,30,30"], ["--layout", "cremad", "--mix"]])
def test_mix_and_splits_bad_usage(tmp_path, bad):
    r = gen(tmp_path / "x", *bad)
    assert r.returncode == 2 and ("--mix" in r.stderr or "--splits" in r.stderr), r.stderr


def fake_runs(work, accs):
    os.makedirs(os.path.join(work, "data"), exist_ok=True)
    with open(os.path.join(work, "data", "index.json"), "w") as f:
        json.dump({"splits": {"test": {"count": 128}}}, f)
    for name, a in accs.items():
        os.makedirs(os.path.join(work, name), exist_ok=True)
        with open(os.path.join(work, name, "result.json"), "w") as f:
            json.dump({"test_acc_at_best_val": a, "best_epoch": 7, "plot": "p.svg"}, f)


@pytest.mark.parametrize("none,c2kd", [([0.60, 0.62, 0.61], [0.70, 0.71, 0.69]),   # clearly better
                                        ([0.59, 0.67, 0.64], [0.61, 0.60, 0.62]),   # noise
                                        ([0.70, 0.72, 0.71], [0.50, 0.52, 0.49])])  # clearly worse
def test_summary_welch_against_scipy(tmp_path, none, c2kd):
    accs = {"teacher": 0.98}
    accs.update({f"none-seed{i + 1}": a for i, a in enumerate(none)})
    accs.update({f"c2kd-seed{i + 1}": a for i, a in enumerate(c2kd)})
    fake_runs(str(tmp_path), accs)
    r = subprocess.run(["/usr/bin/python3", SUMMARY, str(tmp_path), "1 2 3", "10", "1m2.50s 0m1.50s"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ref = stats.ttest_ind(np.array(c2kd) * 100, np.array(none) * 100, equal_var=False)
    t = float(r.stdout.split("Welch t = ")[1].split()[0])
    assert t == pytest.approx(ref.statistic, abs=0.006)
    beyond = ref.pvalue < 0.05
    assert ("is larger than the noise" in r.stdout) == beyond and ("NOT larger" in r.stdout) == (not beyond)
    assert f"{100 * np.mean(none):.2f}% ± {100 * np.std(none, ddof=1):.2f}" in r.stdout
    assert "64 s CPU" in r.stdout and "one clip = 0.78 points" in r.stdout
