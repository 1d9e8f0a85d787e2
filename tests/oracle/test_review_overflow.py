"""ReviewKD's HCL on a teacher whose features are finite in float32 but whose
squares are not (|x| ~ 1e20, x^2 ~ 1e40 > FLT_MAX ~ 3.4e38).

The backend's MSE sums the squared differences in double into a double loss
(kernels/kernels.h, mse), so train gives the float64 value where a float32
sum would overflow; only a truly non-finite feature stops a run. Checked
against PyTorch float64 (tests/torch_ref/c2kd_ref.py) on the op and on a
whole training step.
"""
import os
import subprocess
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from conftest import BIN, ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "torch_ref"))
import c2kd_ref as R  # noqa: E402
from test_backend_ops import opcheck  # noqa: E402

FLT_MAX = float(np.finfo(np.float32).max)


def test_mse_op_sums_beyond_float32_range():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((4, 6, 5)) * 1e20).astype(np.float32)
    t = (rng.standard_normal((4, 6, 5)) * 1e20).astype(np.float32)
    assert np.all(np.isfinite(x)) and np.isinf(np.sum(np.square(x - t, dtype=np.float32), dtype=np.float32))
    X = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    L = 0.5 * F.mse_loss(X, torch.from_numpy(t.astype(np.float64)))
    L.backward()
    out = opcheck("mse", {"x": x, "t": t}, ["loss", "dz"], weight=0.5, loss0=1.0)
    assert out["loss"].dtype == np.float64 and float(L) > FLT_MAX
    # float64 sum of float32 inputs: within float32 rounding of the inputs' difference
    np.testing.assert_allclose(out["loss"], [1.0 + float(L)], rtol=1e-6)
    np.testing.assert_allclose(out["dz"], X.grad.numpy(), rtol=1e-6, atol=1e-6 * float(X.grad.abs().max()))


def test_mse_op_nonfinite_feature_gives_nonfinite_loss():
    x = np.ones(10, np.float32)
    t = np.ones(10, np.float32)
    t[3] = np.inf
    out = opcheck("mse", {"x": x, "t": t}, ["loss", "dz"])
    assert not np.isfinite(out["loss"][0])


def _stepcheck():
    return os.path.join(os.path.dirname(BIN), "tests", "stepcheck")


def test_review_step_with_huge_teacher_features_matches_float64(tmp_path):
    """A frozen ResNet-18 teacher whose layer3 output is ~1e20 (its last
    block's BN scaled: eval-mode features as a badly trained teacher's):
    hcl_layer3, hcl_layer4 and hcl_pool exceed FLT_MAX, and the step's
    terms, gradients and update equal PyTorch float64's."""
    cfg = R.default_cfg(method="review", student="visual", steps=1)
    args = [_stepcheck(), *R.stepcheck_args(cfg)]
    r = subprocess.run(args + ["--out", str(tmp_path / "plain")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    big = tmp_path / "big.h5"
    with h5py.File(tmp_path / "plain" / "init.h5", "r") as src, h5py.File(big, "w") as dst:
        for g in src.keys():
            src.copy(src[g], dst, name=g)
        for k in ("weight", "bias"):
            ds = dst[f"teacher/layer3.1.bn2.{k}"]
            ds[...] = ds[()] * np.float32(1e20)
    run = tmp_path / "big"
    r = subprocess.run(args + ["--out", str(run), "--init", str(big)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with h5py.File(run / "step_1.h5", "r") as f:
        terms = dict(f["terms"].attrs)
    for n in ("hcl_layer3", "hcl_layer4", "hcl_pool"):
        assert np.isfinite(terms[n]) and terms[n] > FLT_MAX, (n, terms[n])
    rows = R.compare(str(run), cfg)
    assert any("step 1 term hcl_layer3" in w for w, _, _ in rows)
    bad = [f"{what}: {e:.3g} > {tol:g}" for what, e, tol in rows if e > tol]
    assert not bad, "\n".join(bad[:20])


def test_review_step_with_nonfinite_teacher_feature_stops(tmp_path):
    """A teacher feature that overflows float32 (finite weights, FLT_MAX
    scale: the checkpoint itself refuses non-finite values) still stops the
    step, naming the term."""
    cfg = R.default_cfg(method="review", student="visual", steps=1)
    args = [_stepcheck(), *R.stepcheck_args(cfg)]
    r = subprocess.run(args + ["--out", str(tmp_path / "plain")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "inf.h5"
    with h5py.File(tmp_path / "plain" / "init.h5", "r") as src, h5py.File(bad, "w") as dst:
        for g in src.keys():
            src.copy(src[g], dst, name=g)
        for k in ("weight", "bias"):
            ds = dst[f"teacher/layer3.1.bn2.{k}"]
            ds[...] = np.full(ds.shape, FLT_MAX, np.float32)
    r = subprocess.run(args + ["--out", str(tmp_path / "inf"), "--init", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "non-finite loss (hcl_layer3" in r.stderr, r.stderr
