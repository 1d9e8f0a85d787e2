"""train/system.c step for step against the PyTorch reference (tests/torch_ref/c2kd_ref.py, float64).

tests/tools/stepcheck runs the C side (CPU backend) on random batches and
saves the checkpoint before and after every step; the reference rebuilds the
same networks from those checkpoints with h5py + torch and compares logits,
each loss term, the selection mask and tau, every parameter gradient, the SGD
update, the momenta and the running statistics. The tolerance of each tensor is
derived in the same test (tests/oracle/tolerance.py, docs/TESTING.md): C's error against
float64 at most K x that of the same reference run in PyTorch float32 + FLOOR.

Discrete decisions (ReLU signs, max-pool choices) taken within float32
rounding of a kink are not left to float64: stepcheck records C's (within
KINK_BAND = 1e-4 of the tensor's largest |x|) and the reference applies them
(c2kd_ref.Kinks), checking that every activation was recorded and that no
float64 near-kink element was missed; each step reports how many decisions
were taken from C where float64 would have decided otherwise.
"""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from conftest import BIN, ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "torch_ref"))
import c2kd_ref as R  # noqa: E402


def stepcheck():
    path = os.path.join(os.path.dirname(BIN), "tests", "stepcheck")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not built (make {os.path.relpath(path, ROOT)})")
    return path


def run_c(tmp, cfg, extra=()):
    r = subprocess.run([stepcheck(), "--out", str(tmp), *R.stepcheck_args(cfg), *extra],
                       capture_output=True, text=True)
    return r


def check(tmp, cfg):
    r = run_c(tmp, cfg)
    assert r.returncode == 0, r.stderr
    rows = R.compare(str(tmp), cfg)
    bad = [f"{what}: {e:.3g} > {tol:g}" for what, e, tol in rows if e > tol]
    assert not bad, "\n".join(bad[:20])
    return rows


CASES = [
    dict(method=m, student=s) for m in ("none", "kd", "nkd", "c2kd") for s in ("visual", "audio")
] + [
    dict(method="c2kd", student="visual", fold=True, frames=3),
    dict(method="c2kd", student="audio", fold=True, frames=3),
    dict(method="pretrain", student="visual", steps=3),
    dict(method="c2kd", teacher_update="top", steps=3),
    dict(method="c2kd", teacher_update="frozen", steps=3),
    dict(method="c2kd", proxy="cfa", steps=3),
    dict(method="c2kd", proxy="none", steps=3),
    dict(method="c2kd", omega=0.3, steps=2),
    # ResNet-50, 5 steps, both directions. A ReLU or max-pool decision taken
    # within float32 rounding of its kink would change a gradient entry by a
    # whole term (e.g. one channel of a BN bias by 10% of the largest bias
    # gradient), so stepcheck records C's decisions near every kink and the
    # reference takes exactly those (c2kd_ref.Kinks; ~1300-4000 recorded per
    # step here, 0-7 of them decided otherwise by float64): what remains is
    # rounding, which the tolerance rule bounds.
    dict(method="c2kd", depth=50),
    dict(method="c2kd", depth=50, student="audio"),
] + [
    # heterogeneous pairs (student ResNet-18 / teacher ResNet-50 and the
    # reverse), both directions, 5 steps; c2kd's proxies follow each network's
    # layer3 width (R18 4w, R50 16w channels). Width 4 keeps them quick.
    dict(method=m, student=s, student_depth=sd, teacher_depth=td, width=4)
    for m in ("kd", "c2kd") for s in ("visual", "audio") for sd, td in ((18, 50), (50, 18))
] + [
    # SHAKE (docs/METHODS.md): the shadow head on the frozen teacher's layer2..4,
    # both directions, 5 steps; frames folded into the batch; both mixed pairs
    dict(method="shake", student="visual"),
    dict(method="shake", student="audio"),
    dict(method="shake", student="visual", fold=True, frames=3, steps=3),
    dict(method="shake", student="visual", student_depth=18, teacher_depth=50, width=4, steps=3),
    dict(method="shake", student="audio", student_depth=50, teacher_depth=18, width=4, steps=3),
] + [
    # ReviewKD (docs/METHODS.md): ABF modules over the student's layer1..4 and
    # pooled features, HCL against the frozen teacher's; the student's fused
    # maps resized bilinearly to the teacher's sizes. Both directions, 5 steps;
    # frames folded into the batch; both mixed pairs
    dict(method="review", student="visual"),
    dict(method="review", student="audio"),
    dict(method="review", student="visual", fold=True, frames=3, steps=3),
    dict(method="review", student="audio", fold=True, frames=3, steps=3),  # the teacher's frames averaged
    dict(method="review", student="visual", student_depth=18, teacher_depth=50, width=4, steps=3),
    dict(method="review", student="audio", student_depth=50, teacher_depth=18, width=4, steps=3),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_steps_match_torch(tmp_path, case):
    cfg = R.default_cfg(**case)
    rows = check(tmp_path, cfg)
    # the comparison really covered every step and every trained tensor
    assert any(f"step {cfg['steps']} grad" in w for w, _, _ in rows)
    if cfg["method"] == "c2kd":
        assert any("selection mask" in w for w, _, _ in rows)
    if cfg["method"] == "review":
        assert any(f"step {cfg['steps']} grad review/abfs.4.att_conv.0.bias" in w for w, _, _ in rows)
        assert any(f"step {cfg['steps']} term hcl_layer1" in w for w, _, _ in rows)
    if cfg["method"] == "shake":
        assert any(f"step {cfg['steps']} grad shadow/fuse5.0.weight" in w for w, _, _ in rows)
        assert any("h_shadow" in w for w, _, _ in rows)


def test_kink_records_required(tmp_path):
    """Without C's kink records (--kink-band 0) the comparison refuses, naming the activations."""
    cfg = R.default_cfg(method="c2kd", steps=1)
    r = run_c(tmp_path, cfg, ["--kink-band", "0"])
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "step_1.h5", "r") as f:
        assert "kink" not in f
    rows = R.compare(str(tmp_path), cfg)
    bad = [w for w, e, tol in rows if e > tol]
    assert any("activations without C's record" in w and "student/layer1.0.relu1" in w
               and "teacher/maxpool" in w and "student_proxy/act" in w for w in bad), bad
    # with the records: each activation of the pair is there
    r = run_c(tmp_path / "rec", cfg)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "rec" / "step_1.h5", "r") as f:
        names = set()
        f["kink"].visititems(lambda n, o: names.add(n) if isinstance(o, h5py.Group) and "kind" in o.attrs else None)
    per_net = 2 + 2 * 8  # stem ReLU + max-pool, two ReLUs in each of 8 BasicBlocks
    assert len(names) == 2 * per_net + 2, sorted(names)


# ---------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def c2kd_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    cfg = R.default_cfg(steps=2)
    r = run_c(d, cfg)
    assert r.returncode == 0, r.stderr
    return d, cfg


def test_checkpoint_names_shapes_match_torch_state_dict(c2kd_run):
    d, cfg = c2kd_run
    ref = R.System(cfg)
    with h5py.File(d / "ckpt_2.h5", "r") as f:
        assert set(f.keys()) == {"student", "teacher", "student_proxy", "teacher_proxy", "momentum"}
        for g, m in ref.nets.items():
            sd = m.state_dict()
            assert set(f[g].keys()) == set(sd.keys()), g
            for k, v in sd.items():
                ds = f[g][k]
                assert ds.shape == tuple(v.shape), f"{g}/{k}"
                if k.endswith("num_batches_tracked"):
                    assert ds.dtype == np.int64 and ds[()] == 2
                else:
                    assert ds.dtype == np.float32
            assert set(f["momentum"][g].keys()) == {k for k, _ in m.named_parameters()}
        assert f["student_proxy/conv.weight"].shape == (32, 32, 1, 1)
        a = f.attrs
        assert a["step"] == 2 and a["epoch"] == 0 and len(a["rng_state"]) == 4
        assert json.loads(a["config"])["method"] == "c2kd"  # fixed-length string: bytes in h5py


def test_load_torch_written_checkpoint_without_num_batches_tracked(tmp_path):
    cfg = R.default_cfg(method="kd", steps=0)
    torch.manual_seed(3)
    ref = R.System(cfg)
    src = tmp_path / "torch.h5"
    with h5py.File(src, "w") as f:
        for g, m in ref.nets.items():
            for k, v in m.state_dict().items():
                if k.endswith("num_batches_tracked"):
                    continue
                if k.endswith("running_mean"):
                    v = torch.randn(v.shape)  # not the init values
                f[f"{g}/{k}"] = v.numpy()  # float64, as h5py writes torch tensors
    out = tmp_path / "run"
    r = run_c(out, cfg, ["--init", str(src)])
    assert r.returncode == 0, r.stderr
    with h5py.File(src, "r") as a, h5py.File(out / "init.h5", "r") as b:
        for g in ("student", "teacher"):
            for k in a[g].keys():
                np.testing.assert_allclose(b[g][k][()], a[g][k][()], rtol=1e-6, atol=1e-7, err_msg=f"{g}/{k}")


def test_load_only_one_group_and_bad_checkpoints(tmp_path, c2kd_run):
    d, _ = c2kd_run
    # a teacher-only file (pretraining) loads into a c2kd run: the other groups keep their values
    pre = tmp_path / "pre"
    r = run_c(pre, R.default_cfg(method="pretrain", steps=1))
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    r = run_c(run, R.default_cfg(method="c2kd", steps=0), ["--init", str(pre / "final.h5")])
    assert r.returncode == 0, r.stderr
    with h5py.File(pre / "final.h5", "r") as a, h5py.File(run / "init.h5", "r") as b:
        np.testing.assert_array_equal(a["teacher/layer4.1.conv2.weight"][()], b["teacher/layer4.1.conv2.weight"][()])
        assert b["teacher/bn1.num_batches_tracked"][()] == 1
    # shape mismatch: another width
    r = run_c(tmp_path / "w", R.default_cfg(width=16, steps=0), ["--init", str(d / "ckpt_2.h5")])
    assert r.returncode == 1 and "shape [8, 3, 7, 7] in the file, [16, 3, 7, 7] expected" in r.stderr, r.stderr
    # not HDF5
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    r = run_c(tmp_path / "j", R.default_cfg(steps=0), ["--init", str(junk)])
    assert r.returncode == 1 and "not an HDF5 file" in r.stderr
    # a tensor this architecture does not have
    extra = tmp_path / "extra.h5"
    with h5py.File(d / "ckpt_2.h5", "r") as a, h5py.File(extra, "w") as b:
        for g in ("student", "teacher"):
            a.copy(g, b)
        b["student/layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
    r = run_c(tmp_path / "x", R.default_cfg(steps=0), ["--init", str(extra)])
    assert r.returncode == 1 and "layer5.0.conv1.weight: unexpected" in r.stderr, r.stderr
    # missing file
    r = run_c(tmp_path / "m", R.default_cfg(steps=0), ["--init", str(tmp_path / "nope.h5")])
    assert r.returncode == 1 and "no such file" in r.stderr
