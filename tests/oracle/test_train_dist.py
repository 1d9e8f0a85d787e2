"""Data-parallel `train` under `mpirun -np 2` (docs/DISTRIBUTED.md).

- Identical halves: a training split in which every sample appears twice in a
  row gives rank 0 and rank 1 (positions i mod 2, --no-shuffle) the same
  batches, so DDP's averaged gradient equals each rank's, and the 2-rank run
  must equal the 1-process run on the split without duplicates bit for bit:
  metrics, checkpoints, result. This proves the sampling, the gradient and
  loss averaging, the reduced evaluation counts and rank 0's outputs.
- Every epoch ends with a check that both ranks hold bitwise identical weights
  (a hash compared over ranks); with one step per epoch it runs after every
  step, and a run that passes it exits 0.
- --resume with another world size is refused; with the same one it finishes.
- Killing one rank (stopped by itself, so the run is surely unfinished) makes the run
  end non-zero with a message; --resume then finishes it.
- Step for step against the float64 PyTorch reference with DDP's semantics:
  tests/tools/stepcheck under mpirun -np 2 (each rank the samples i mod 2 == r
  of each batch of 8), 5 steps of c2kd and of none from one checkpoint; after
  every step both ranks hold bitwise identical parameters and momenta, and
  c2kd_ref.compare(world=2) (each rank's half through the networks with its
  own batch-norm statistics, gradients and loss terms averaged, one SGD step)
  matches under the tolerance rule of test_train_step (tests/oracle/tolerance.py).
Skipped (with the reason) when mpirun is absent."""
import json
import os
import shutil
import signal
import subprocess
import time

import sys

import h5py
import numpy as np
import pytest

import train_util as u
from conftest import BIN, ROOT, binary, run

sys.path.insert(0, os.path.join(ROOT, "tests", "torch_ref"))
import c2kd_ref as R  # noqa: E402

MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed (make deps installs OpenMPI)")
MPI = [MPIRUN or "mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"]
BASE = ["--width", "4", "--batch-size", "4", "--image-size", "16", "--device", "cpu", "--threads", "1",
        "--seed", "7", "--no-shuffle", "--no-augment", "--teacher-init", "random"]  # KD from an untrained teacher


def asan_build():
    with open(binary("train"), "rb") as b:
        return b"__asan_init" in b.read()


def mpi_env():
    env = dict(os.environ)
    env.setdefault("OMPI_MCA_btl", "self,vader")  # one machine; no network probing
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    if asan_build():
        # `make asan`: Open MPI 4.1 and the libstdc++ its plugins load leave blocks
        # unfreed at exit in modules already unloaded (no name to suppress them by);
        # memory errors are still caught in the ranks, and the same training code is
        # leak-checked by every single-process test.
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    return env


def mpirun(args, **kw):
    return subprocess.run([*MPI, *map(str, args)], capture_output=True, text=True, env=mpi_env(), **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(single, doubled): the same splits; doubled's train split has every sample twice in a row."""
    base = tmp_path_factory.mktemp("dd")
    single, doubled = str(base / "single"), str(base / "doubled")
    out = u.make_dataset(single, counts={"train": 8, "val": 5, "test": 6})
    u.make_dataset(doubled, counts={"train": 8, "val": 5, "test": 6})
    with open(os.path.join(doubled, "index.json")) as f:
        idx = json.load(f)
    for name in os.listdir(doubled):
        if name.startswith("train-"):
            os.remove(os.path.join(doubled, name))
    twice = [s for s in out["train"] for _ in range(2)]
    twice = [(f"{sid}-{k % 2}", lab, spec, fr) for k, (sid, lab, spec, fr) in enumerate(twice)]
    shards = []
    for s0 in range(0, len(twice), 5):
        part = twice[s0:s0 + 5]
        name = f"train-{len(shards):05d}.h5"
        u.write_shard(os.path.join(doubled, name), "train", [p[0] for p in part], [p[1] for p in part],
                      np.stack([p[2] for p in part]), [p[3] for p in part], idx["classes"], 1, idx["recipe"])
        shards.append({"file": name, "count": len(part)})
    idx["splits"]["train"] = {"count": len(twice), "shards": shards}
    u.write_index(doubled, idx)
    return single, doubled


def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = {k: f.attrs[k] for k in ("epoch", "step", "best_epoch")}
    return out, attrs


@pytest.mark.parametrize("method", ["c2kd", "none"])
def test_two_ranks_equal_one_process_on_identical_halves(data, tmp_path, method):
    single, doubled = data
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    # 8 samples, batch 4: 2 steps per epoch; 3 epochs (6 steps, the rank check after every epoch)
    args = [*BASE, "--method", method, "--epochs", "3"]
    r = run([binary("train"), *args, "--data", single, "--out", one])
    assert r.returncode == 0, r.stderr
    r = mpirun([binary("train"), *args, "--data", doubled, "--out", two])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "data parallel over 2 ranks" in r.stderr
    (ma, la), (mb, lb) = u.eval_losses_apart(u.metrics(one)), u.eval_losses_apart(u.metrics(two))
    assert ma == mb
    assert la == pytest.approx(lb, rel=1e-5)
    for name in ("last.h5", "best.h5"):
        ta, aa = tensors(os.path.join(one, name))
        tb, ab = tensors(os.path.join(two, name))
        assert sorted(ta) == sorted(tb) and aa == ab
        for k in ta:
            np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    ra, rb = (json.load(open(os.path.join(d, "result.json"))) for d in (one, two))
    ra.pop("plot"), rb.pop("plot")
    assert ra == rb
    assert json.load(open(os.path.join(two, "dist.json"))) == {"world_size": 2}


@pytest.mark.parametrize("method", ["c2kd", "none"])
def test_ranks_identical_after_every_step(data, tmp_path, method):
    # different samples per rank; 8 samples / 2 ranks / batch 4 = 1 step per epoch: the end-of-epoch
    # check (weights hashed and compared over ranks) runs after each of the 5 steps
    single, _ = data
    out = str(tmp_path / "r")
    r = mpirun([binary("train"), *BASE, "--method", method, "--epochs", "5", "--data", single, "--out", out])
    assert r.returncode == 0, r.stdout + r.stderr
    assert len([m for m in u.metrics(out) if m["type"] == "step"]) == 5


@pytest.mark.parametrize("method,per_step", [("c2kd", 4), ("shake", 2), ("review", 2)])
def test_overlapped_reduction_equals_blocking(data, tmp_path, method, per_step):
    # the gradient averages start during the backward pass, one per registry (c2kd: student,
    # teacher, 2 proxies; shake: student, shadow head; review: student, ABF modules); C2KD_DIST_OVERLAP=0 averages them after it,
    # blocking. Different samples per rank, 1 step per epoch: the results must be bitwise equal.
    single, _ = data
    runs = {}
    for mode in ("1", "0"):
        out = str(tmp_path / f"overlap{mode}")
        env = dict(mpi_env(), C2KD_DIST_OVERLAP=mode)
        r = subprocess.run([*MPI, "-x", "C2KD_DIST_OVERLAP", binary("train"), *BASE, "--method", method,
                            "--epochs", "3", "--data", single, "--out", out],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        n = 3 * per_step if mode == "1" else 0
        assert f"data parallel: {n} gradient all-reduces overlapped with the backward pass" in r.stderr, r.stderr
        runs[mode] = out
    assert u.metrics(runs["1"]) == u.metrics(runs["0"])
    ta, aa = tensors(os.path.join(runs["1"], "last.h5"))
    tb, ab = tensors(os.path.join(runs["0"], "last.h5"))
    assert sorted(ta) == sorted(tb) and aa == ab
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)


def test_resume_needs_the_same_world_size(data, tmp_path):
    single, _ = data
    out = str(tmp_path / "r")
    r = mpirun([binary("train"), *BASE, "--method", "none", "--epochs", "2", "--batch-size", "2",
                "--data", single, "--out", out, "--steps", "2"])
    assert r.returncode == 0, r.stdout + r.stderr
    r = run([binary("train"), "--resume", out])
    assert r.returncode == 1
    assert "started with 2 processes and is resumed with 1" in r.stderr
    r = mpirun([binary("train"), "--resume", out])
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.load(open(os.path.join(out, "result.json")))["complete"]


def test_resume_inside_an_epoch_equals_an_uninterrupted_run(data, tmp_path):
    # shuffled and augmented; 8 samples / 2 ranks / batch 2 = 2 steps per epoch; stopped after step 3
    # (inside epoch 2: rank 0 saves last.h5 there), resumed: rank r redraws the epoch's order and
    # takes its positions again, skipping the batch done
    single, _ = data
    args = ["--width", "4", "--batch-size", "2", "--image-size", "16", "--device", "cpu", "--threads", "1",
            "--seed", "5", "--method", "c2kd", "--teacher-init", "random", "--epochs", "3", "--data", single]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    r = mpirun([binary("train"), *args, "--out", full])
    assert r.returncode == 0, r.stdout + r.stderr
    r = mpirun([binary("train"), *args, "--out", cut, "--steps", "3"])
    assert r.returncode == 0, r.stdout + r.stderr
    with h5py.File(os.path.join(cut, "last.h5"), "r") as f:
        assert f.attrs["step"] == 3 and f.attrs["epoch"] == 1
    r = mpirun([binary("train"), "--resume", cut])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming" in r.stderr and "at epoch 2, step 3" in r.stderr
    assert u.metrics(full) == u.metrics(cut)
    ta, aa = tensors(os.path.join(full, "last.h5"))
    tb, ab = tensors(os.path.join(cut, "last.h5"))
    assert sorted(ta) == sorted(tb) and aa == ab
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)


def test_killed_rank_ends_the_run_then_resume_finishes(tmp_path):
    """A run stopped after 2 steps (last.h5 inside epoch 1), resumed under mpirun with rank 1
    stopping itself (SIGSTOP) before it starts: rank 0 waits for it, so the test kills rank 1
    while the run is certainly unfinished, whatever the machine's speed."""
    data = str(tmp_path / "data")
    u.make_dataset(data, counts={"train": 24, "val": 3, "test": 3})
    out = str(tmp_path / "r")
    args = [binary("train"), "--width", "8", "--batch-size", "2", "--image-size", "32", "--device", "cpu",
            "--threads", "1", "--method", "c2kd", "--teacher-init", "random", "--epochs", "3", "--data", data, "--out", out]
    r = mpirun([*args, "--steps", "2"])
    assert r.returncode == 0 and os.path.exists(os.path.join(out, "last.h5")), r.stdout + r.stderr
    assert not json.load(open(os.path.join(out, "result.json"))).get("complete")
    stop_rank1 = 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then kill -STOP $$; fi; exec "$@"'
    p = subprocess.Popen([*MPI, "sh", "-c", stop_rank1, "sh", binary("train"), "--resume", out],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mpi_env())
    try:
        stopped = None
        while stopped is None:
            assert p.poll() is None, "the run ended before rank 1 stopped"
            kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
            for pid in kids:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "T":
                            stopped = int(pid)
                except FileNotFoundError:
                    pass
            time.sleep(0.05)
        os.kill(stopped, signal.SIGKILL)
        so, se = p.communicate(timeout=60)
        assert p.returncode != 0
        assert "signal 9" in se or "Killed" in se or "killed" in (so + se), so + se
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    r = mpirun([binary("train"), "--resume", out])
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.load(open(os.path.join(out, "result.json")))["complete"]


# ---------------------------------------------------------------- DDP step for step against PyTorch

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def ckpt_arrays(path):
    """name -> array of every dataset of a checkpoint."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("method", ["c2kd", "none"])
def test_ddp_steps_match_torch(tmp_path, method):
    cfg = R.default_cfg(method=method, steps=5)  # global batch 8: 4 samples per rank
    stepcheck = os.path.join(os.path.dirname(BIN), "tests", "stepcheck")
    r = mpirun([stepcheck, "--out", tmp_path, *R.stepcheck_args(cfg)])
    assert r.returncode == 0, r.stdout + r.stderr
    for k in range(1, cfg["steps"] + 1):
        a, b = (ckpt_arrays(tmp_path / f"rank{q}" / f"ckpt_{k}.h5") for q in (0, 1))
        assert sorted(a) == sorted(b)
        params = [n for n in a if not n.endswith(BUFFERS)]  # parameters and momenta
        assert any(n.startswith("momentum/") for n in params) and len(params) > 60
        for n in params:
            assert a[n].tobytes() == b[n].tobytes(), f"step {k}: {n} differs between the ranks"
        # running statistics are per rank (each its own half's batch statistics), as in DDP
        assert any(a[n].tobytes() != b[n].tobytes() for n in a if n.endswith("running_mean"))
    rows = R.compare(str(tmp_path), cfg, world=2)
    bad = [f"{what}: {e:.3g} > {tol:g}" for what, e, tol in rows if e > tol]
    assert not bad, "\n".join(bad[:20])
    assert any(f"step 5 rank 1 grad student/" in w for w, _, _ in rows)
    if method == "c2kd":
        assert any("rank 1 selection mask" in w for w, _, _ in rows)
    # the comparison is not vacuous: contiguous halves (another sampling) do not match
    share = R.share
    try:
        R.share = lambda t, r, world, frames=1: t[r * len(t) // world:(r + 1) * len(t) // world]
        rows = R.compare(str(tmp_path), dict(cfg, steps=1), world=2)
    finally:
        R.share = share
    assert any(e > tol for w, e, tol in rows if " grad " in w or " z_student" in w)


# ---------------------------------------------------------------- --sync-bn

def _sync_bn_runs(tmp_path, method, runs, steps=2):
    """`steps` steps (of the 2 of one epoch of 16 samples, --no-shuffle --no-augment) from one
    initial state (the same --seed: identical initial weights; under mpirun rank 0's are
    broadcast) of each run in `runs` (name -> (world 1 or 2, batch, extra args)); returns
    name -> its last.h5 as a dict."""
    d = str(tmp_path / "data")
    u.make_dataset(d, counts={"train": 16, "val": 5, "test": 6})
    i = BASE.index("--batch-size")
    args = [*BASE[:i], *BASE[i + 2:], "--method", method, "--epochs", "1", "--steps", str(steps), "--data", d]
    out = {}
    for name, (world, batch, extra) in runs.items():
        cmd = [binary("train"), *args, "--batch-size", str(batch), *extra, "--out", str(tmp_path / name)]
        r = run(cmd) if world == 1 else mpirun(cmd)
        assert r.returncode == 0, r.stdout + r.stderr
        out[name] = ckpt_arrays(str(tmp_path / name / "last.h5"))
    return out


def _sync_bn_errors(a, b):
    """name -> max |a - b| / (1e-3 + max |a|) over the float arrays (weights, momenta, running statistics)."""
    assert sorted(a) == sorted(b)
    out = {}
    for n in a:
        if a[n].dtype.kind == "f":
            out[n] = float(np.max(np.abs(a[n].astype(np.float64) - b[n])) / (1e-3 + np.max(np.abs(a[n]))))
        else:
            assert np.array_equal(a[n], b[n]), n  # num_batches_tracked, counters
    return out


# 2 ranks × 4 with --sync-bn against one process × 8 on the same samples (rank r: positions i mod 2 = r
# of each global batch of 8). Not bitwise: the float32 sums run in another order (each rank's
# convolution weight gradients over its 4 samples, then the average of the 2 ranks; batch-norm sums
# per rank in double, then added), and batch norm over few values per channel (width 4, 16x16 inputs)
# amplifies that rounding ~20x per step. Measured (max over tensors of the error relative to the
# tensor's largest value): after 1 step <= 3e-5. The states are compared after ONE step: after the
# second, c2kd at --seed 7 with the authors' proxy initialisation has its step-2 loss terms equal
# to 1e-5 but the student's batch-norm momenta 19 % apart (seeds 1 and 8-12: <= 9e-4; one process
# with --threads 1 vs 2: 1.3e-4): the signature of a ReLU or max-pool decision taken within
# rounding of its kink going the other way (a whole gradient term), which stepcheck records for
# the float64 oracle and train cannot (so not proven here). The second
# step is checked through its loss terms (a forward pass from the states after step 1, within
# 1e-4 relative). Asserted on the states: 1e-3. Without --sync-bn the same comparison is off by
# O(1) (test_sync_bn_matters).
SYNC_BN_TOL = 1e-3
SYNC_BN_TERM_TOL = 1e-4


@pytest.mark.parametrize("method", ["none", "c2kd"])
def test_sync_bn_two_ranks_equal_one_process_double_batch(tmp_path, method):
    runs = {"one": (1, 8, []), "one_sync": (1, 8, ["--sync-bn"]), "two_sync": (2, 4, ["--sync-bn"])}
    # step 2: its loss terms (the forward pass from the states after step 1)
    _sync_bn_runs(tmp_path / "two_steps", method, runs)
    terms = {}
    for name in runs:
        recs = [m for m in u.metrics(str(tmp_path / "two_steps" / name)) if m.get("type") == "step"]
        assert [m["step"] for m in recs] == [1, 2], name
        terms[name] = {k: v for k, v in recs[1].items() if k.startswith(("ce_", "kl_", "nt_")) or k == "loss"}
    for name in ("one_sync", "two_sync"):
        assert sorted(terms[name]) == sorted(terms["one"])
        for k, v in terms["one"].items():
            assert abs(terms[name][k] - v) <= SYNC_BN_TERM_TOL * max(abs(v), 1e-2), (name, k, terms[name][k], v)
    # the states after step 1
    out = _sync_bn_runs(tmp_path, method, runs, steps=1)
    err = _sync_bn_errors(out["one"], out["two_sync"])
    assert any(n.startswith("momentum/") for n in err) and any(n.endswith("running_var") for n in err)
    bad = {n: e for n, e in err.items() if e > SYNC_BN_TOL}
    assert not bad, sorted(bad.items(), key=lambda kv: -kv[1])[:10]
    # one process: --sync-bn (the split batch-norm ops; statistics from plain instead of shifted
    # double sums) equals the fused ops within float32 rounding (measured: bitwise equal here)
    err = _sync_bn_errors(out["one"], out["one_sync"])
    assert max(err.values()) <= SYNC_BN_TOL, sorted(err.items(), key=lambda kv: -kv[1])[:5]


def test_sync_bn_matters(tmp_path):
    """Without --sync-bn (each rank normalises with its own half's statistics, as DDP) the same
    comparison fails by far: the test above is not vacuous."""
    out = _sync_bn_runs(tmp_path, "none", {"one": (1, 8, []), "two": (2, 4, [])})
    err = _sync_bn_errors(out["one"], out["two"])
    assert max(e for n, e in err.items() if n.endswith("running_var")) > 100 * SYNC_BN_TOL
