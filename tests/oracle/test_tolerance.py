"""The test machinery itself: the tolerance rule (tolerance.py), the kernel-set chooser
(tools/coretypes.py) and the representative subset (conftest.py: --coretype-subset)."""
import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import tolerance as TOL
from conftest import ROOT

TOOL = os.path.join(ROOT, "tools", "coretypes.py")


def test_rule():
    ref = np.array([1.0, -2.0, 4.0])
    ctrl = ref + [0, 0, 4 * 1e-6]           # control error 1e-6 of the scale 4
    assert TOL.err(ctrl, ref) == pytest.approx(1e-6)
    TOL.check("ok", ref + [0, 0, 4 * TOL.K * 1e-6], ctrl, ref)              # exactly at K x control
    with pytest.raises(AssertionError, match=f"K={TOL.K:g}"):
        TOL.check("bad", ref + [0, 0, 4 * (TOL.K * 1e-6 + 2 * TOL.FLOOR)], ctrl, ref)
    TOL.check("floor", ref + [0, 0, 4 * 0.5 * TOL.FLOOR], ref, ref)         # an exact control: the floor
    assert TOL.err(ref, ref, scale=0.5) == 0.0 and TOL.err([], []) == 0.0
    # a NaN, an infinity or a wrong shape never passes
    for bad in ([np.nan, -2.0, 4.0], [np.inf, -2.0, 4.0], [1.0, -2.0]):
        assert TOL.err(bad, ref) == float("inf")
        with pytest.raises(AssertionError):
            TOL.check("bad", bad, ctrl, ref)
    # a scalar's control: the larger of its own and its inputs'
    w, e, tol = TOL.row("term", 1.0 + 1e-5, 1.0, 1.0, inputs_err=1e-6)
    assert tol == pytest.approx(TOL.bound(1e-6)) and e == pytest.approx(1e-5)


def coretypes(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)


def own_core():
    lib = ctypes.CDLL("libopenblas.so.0")
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def test_coretypes_keeps_only_what_openblas_takes():
    r = coretypes("SapphireRapids", "Prescott", "NoSuchCore")
    assert r.returncode == 0
    assert r.stdout.split() == ["Prescott"]          # every x86-64 CPU has SSE3
    assert "SapphireRapids left out" in r.stderr and "NoSuchCore left out" in r.stderr
    own = own_core()
    assert coretypes("--pick", "2", own).stdout.split() == []   # the machine's own is not "another"
    r = coretypes(own)
    assert r.stdout.split() in ([own], [])


def test_coretype_subset_selects_and_runs_each_entry():
    """Every entry of CORETYPE_SUBSET names collected tests (no entry silently matches nothing)."""
    import conftest
    files = ["test_train_step.py", "test_backend_ops.py", "test_train_dist.py", "test_reproduce.py"]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co",
                        "--coretype-subset", *[os.path.join(ROOT, "tests", "oracle", f) for f in files]],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    ids = [line.rsplit("/", 1)[-1] for line in r.stdout.splitlines() if "::" in line]
    for entry in conftest.CORETYPE_SUBSET:
        assert any(i.startswith(entry) for i in ids), entry
    assert all(i.startswith(conftest.CORETYPE_SUBSET) for i in ids)
