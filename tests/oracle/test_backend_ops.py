"""CPU backend ops (kernels/cpu/*.c) against PyTorch float64 / scipy / numpy.

Each op runs in build/bin/opcheck on float32 inputs; the reference computes in
float64 from the same float32 values, and the same reference computed in
float32 (PyTorch / numpy on the same inputs) is the control: per output tensor,
max |ours - f64| / scale <= K x the control's + FLOOR (tests/oracle/tolerance.py,
docs/TESTING.md). Discrete results (ReLU, max-pool choices, argmax, keep masks)
and Kendall's tau (a ratio of pair counts) are compared exactly.
"""
import os
import tempfile

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

import tolerance as TOL
from conftest import binary, run

TOL.torch_float32_safe()

RNG = np.random.default_rng(1234)


def opcheck(op, inputs, outputs, **params):
    with tempfile.TemporaryDirectory() as d:
        for k, v in inputs.items():
            np.save(os.path.join(d, k + ".npy"), v)
        r = run([binary("opcheck"), op, d] + [f"{k}={v}" for k, v in params.items()])
        assert r.returncode == 0, r.stderr
        return {k: np.load(os.path.join(d, k + ".npy")) for k in outputs}


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).requires_grad_(True)


def tt(a, dt, grad=True):
    """A fresh tensor of dtype dt from a (copied: in-place updates stay in the tensor)."""
    t = torch.tensor(np.asarray(a), dtype=dt)
    return t.requires_grad_(True) if grad else t


def agree(out, ref, scale=None):
    """ref(dtype) -> {name: tensor or array}: run in float64 (the reference) and in
    float32 (the control); each output of opcheck judged by the tolerance rule.
    scale: name -> the tensor's scale where it is not its largest |f64| value."""
    r64, r32 = ({k: np.asarray(v.detach().numpy() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
                 for k, v in ref(dt).items()} for dt in (torch.float64, torch.float32))
    for k in r64:
        TOL.check(k, out[k], r32[k], r64[k], (scale or {}).get(k))


def exact(got, want):
    np.testing.assert_array_equal(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64))


# ---------------------------------------------------------------- convolution

CONV_CASES = [
    # n, c, h, w, k, kh, stride, pad
    (2, 3, 23, 19, 8, 7, 2, 3),   # ResNet conv1
    (2, 8, 13, 11, 16, 3, 2, 1),  # downsampling 3x3
    (3, 8, 9, 10, 8, 3, 1, 1),    # 3x3 stride 1 (small planes: grouped path)
    (2, 8, 9, 9, 16, 1, 2, 0),    # downsample 1x1 s2
    (4, 16, 1, 1, 16, 1, 1, 0),   # proxy 1x1 on pooled features (direct, grouped)
    (1, 4, 70, 60, 8, 1, 1, 0),   # 1x1 s1 big plane (direct, per sample)
    (2, 2, 64, 60, 4, 3, 1, 1),   # big plane: per-sample path with im2col
    (2, 1, 40, 90, 4, 7, 2, 3),   # one input channel (audio conv1)
    (2, 3, 10, 12, 5, 3, 3, 2),   # stride 3, pad 2
    # ResNet-50 Bottleneck shapes at batch 16 on small planes: the batch is cut
    # into one group per thread (8 + 8 samples side by side in one gemm)
    (16, 32, 8, 8, 64, 1, 1, 0),  # conv1/conv3 1x1 s1 (direct, grouped)
    (16, 32, 8, 8, 64, 1, 2, 0),  # downsample 1x1 s2 (grouped, im2col)
    (7, 4, 33, 33, 6, 3, 1, 1),   # groups of 2, the last one a single sample
]


@pytest.mark.parametrize("n,c,h,w,k,kh,stride,pad", CONV_CASES)
def test_conv(n, c, h, w, k, kh, stride, pad):
    x, wt = f32(n, c, h, w), f32(k, c, kh, kh, scale=0.2)
    dy = f32(n, k, (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kh) // stride + 1)

    def ref(dt):
        X, W = tt(x, dt), tt(wt, dt)
        Y = F.conv2d(X, W, stride=stride, padding=pad)
        Y.backward(tt(dy, dt, False))
        return {"y": Y, "dx": X.grad, "dw": W.grad}
    out = opcheck("conv", {"x": x, "w": wt, "dy": dy}, ["y", "dx", "dw"], stride=stride, pad=pad)
    agree(out, ref)


def test_conv_threads_agree():
    """One thread and three threads both give the reference's result (no races in im2col/col2im)."""
    x, wt = f32(5, 6, 15, 17), f32(7, 6, 3, 3)
    dy = f32(5, 7, 8, 9)

    def ref(dt):
        X, W = tt(x, dt), tt(wt, dt)
        Y = F.conv2d(X, W, stride=2, padding=1)
        Y.backward(tt(dy, dt, False))
        return {"y": Y, "dx": X.grad, "dw": W.grad}
    for threads in (1, 3):
        agree(opcheck("conv", {"x": x, "w": wt, "dy": dy}, ["y", "dx", "dw"], stride=2, pad=1, threads=threads), ref)


# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (16, 8), (2, 5, 1, 1)])
def test_bn_train(shape):
    x = f32(*shape, scale=2.0) + 0.5
    c = shape[1]
    g, b = f32(c) + 1, f32(c)
    rm, rv = f32(c), np.abs(f32(c)) + 0.5
    dy = f32(*shape)
    out = opcheck("bn", {"x": x, "gamma": g, "beta": b, "rm": rm, "rv": rv, "dy": dy},
                  ["y", "rm", "rv", "mean", "invstd", "dx", "dgamma", "dbeta"], momentum=0.1, eps=1e-5)
    agree(out, bn_ref(x, g, b, rm, rv, dy), {"dx": bn_dx_scale(dy, g, out)})


def bn_ref(x, g, b, rm, rv, dy):
    """F.batch_norm in train mode, its statistics and gradients, in a dtype."""
    def ref(dt):
        X, G, Bt = tt(x, dt), tt(g, dt), tt(b, dt)
        RM, RV = tt(rm, dt, False), tt(rv, dt, False)
        Y = F.batch_norm(X, RM, RV, G, Bt, training=True, momentum=0.1, eps=1e-5)
        Y.backward(tt(dy, dt, False))
        dims = [0] + list(range(2, x.ndim))
        xd = X.detach()
        return {"y": Y, "rm": RM, "rv": RV, "mean": xd.mean(dim=dims),
                "invstd": 1 / torch.sqrt(xd.var(dim=dims, unbiased=False) + 1e-5),
                "dx": X.grad, "dgamma": G.grad, "dbeta": Bt.grad}
    return ref


def bn_dx_scale(dy, g, out):
    """dx is a difference of terms of size |gamma*invstd*dy|: its scale (with 2 values
    per channel the exact dx is ~0 and only the rounding is left)."""
    return float(np.max(np.abs(dy)) * np.max(np.abs(g) * out["invstd"]))


BN_OUT = ["y", "rm", "rv", "mean", "invstd", "dx", "dgamma", "dbeta"]


@pytest.mark.parametrize("shape,parts", [((4, 3, 5, 6), 1), ((4, 3, 5, 6), 2), ((7, 8), 3), ((16, 8), 4),
                                         ((2, 5, 1, 1), 2)])
def test_bn_split_matches_fused_and_torch(shape, parts):
    """The split ops of --sync-bn (kernels/kernels.h: bn_stats_partial ... bn_bwd_apply) with the batch cut
    into `parts` pieces (as ranks; (7, 8) in 3 uneven pieces) and their sums added: equal to the
    fused ops on the whole batch within float32 rounding (the fused forward sums x - x0, the split
    one x: the statistics may differ in the last bits; the backward is the same arithmetic), and to
    PyTorch's float64 batch norm within test_bn_train's tolerances."""
    x = f32(*shape, scale=2.0) + 0.5
    c = shape[1]
    g, b = f32(c) + 1, f32(c)
    rm, rv = f32(c), np.abs(f32(c)) + 0.5
    dy = f32(*shape)
    ins = {"x": x, "gamma": g, "beta": b, "rm": rm, "rv": rv, "dy": dy}
    fused = opcheck("bn", ins, BN_OUT, momentum=0.1, eps=1e-5)
    split = opcheck("bn_split", ins, BN_OUT, momentum=0.1, eps=1e-5, parts=parts)
    ref = bn_ref(x, g, b, rm, rv, dy)
    for out in (fused, split):
        agree(out, ref, {"dx": bn_dx_scale(dy, g, fused)})


def test_bn_split_bad_parts_fails():
    x = f32(2, 3)
    ins = {"x": x, "gamma": f32(3), "beta": f32(3), "rm": f32(3), "rv": f32(3) ** 2, "dy": f32(2, 3)}
    with tempfile.TemporaryDirectory() as d:
        for k, v in ins.items():
            np.save(os.path.join(d, k + ".npy"), v)
        r = run([binary("opcheck"), "bn_split", d, "parts=3"])
    assert r.returncode == 1 and "parts" in r.stderr


def test_bn_eval():
    x = f32(3, 4, 5, 5)
    g, b, rm, rv = f32(4) + 1, f32(4), f32(4), np.abs(f32(4)) + 0.1
    out = opcheck("bn_eval", {"x": x, "gamma": g, "beta": b, "rm": rm, "rv": rv}, ["y"], eps=1e-5)
    agree(out, lambda dt: {"y": F.batch_norm(tt(x, dt), tt(rm, dt, False), tt(rv, dt, False), tt(g, dt), tt(b, dt),
                                             training=False, eps=1e-5)})


# ---------------------------------------------------------------- activations, pools, linear, element-wise

def test_relu_and_leaky():
    x = f32(3, 1000)
    x[0, :10] = 0.0
    dy = f32(3, 1000)
    X = t64(x)
    Y = torch.relu(X)
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    out = opcheck("relu", {"x": x, "dy": dy}, ["y", "dx"])
    exact(out["y"], Y.detach())
    exact(out["dx"], X.grad)

    def ref(dt):
        X = tt(x, dt)
        Y = F.leaky_relu(X, 0.1)
        Y.backward(tt(dy, dt, False))
        return {"y": Y, "dx": X.grad}
    agree(opcheck("leaky", {"x": x, "dy": dy}, ["y", "dx"], slope=0.1), ref)


def test_relu_large_threaded():
    x, dy = f32(300000), f32(300000)
    out = opcheck("relu", {"x": x, "dy": dy}, ["y", "dx"])
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0))
    np.testing.assert_array_equal(out["dx"], np.where(x > 0, dy, 0))


@pytest.mark.parametrize("shape,k,stride,pad", [((2, 3, 11, 12), 3, 2, 1), ((1, 2, 8, 8), 2, 2, 0),
                                                ((2, 2, 7, 9), 3, 1, 1)])
def test_maxpool(shape, k, stride, pad):
    x = f32(*shape)
    x[:, :, 2:5, 2:5] = 0.25   # ties: the gradient goes to the first maximum, as in PyTorch
    x[0, 0] = -1.0             # a whole plane of ties
    dy = f32(*F.max_pool2d(torch.from_numpy(x), k, stride, pad).shape)

    def ref(dt):  # the tied values are exact in both dtypes: the same first maximum wins
        X = tt(x, dt)
        Y = F.max_pool2d(X, k, stride, pad)
        Y.backward(tt(dy, dt, False))
        return {"y": Y, "dx": X.grad}
    out = opcheck("maxpool", {"x": x, "dy": dy}, ["y", "dx"], k=k, stride=stride, pad=pad)
    exact(out["y"], ref(torch.float64)["y"].detach())
    agree(out, ref)


def test_maxpool_nan():
    """A NaN wins its window (torch: val > max || isnan(val)); the gradient goes to the last NaN scanned."""
    x = f32(2, 2, 9, 9)
    x[1, 1, 3, 3] = np.nan
    x[1, 1, 3, 4] = np.nan
    X = torch.from_numpy(x).requires_grad_(True)
    Y = F.max_pool2d(X, 3, 2, 1)
    dy = f32(*Y.shape)
    Y.backward(torch.from_numpy(dy))
    out = opcheck("maxpool", {"x": x, "dy": dy}, ["y", "dx"], k=3, stride=2, pad=1)
    np.testing.assert_array_equal(np.isnan(out["y"]), np.isnan(Y.detach().numpy()))
    exact(out["y"][~np.isnan(out["y"])], Y.detach().numpy()[~np.isnan(out["y"])])
    # the gradient: sums of up to 4 dy per element, float32 in both (torch is the reference here)
    X64 = tt(x, torch.float64)
    F.max_pool2d(X64, 3, 2, 1).backward(tt(dy, torch.float64, False))
    TOL.check("dx", out["dx"], X.grad.numpy(), X64.grad.numpy())


def test_avgpool():
    x = f32(3, 5, 4, 6)
    dy = f32(3, 5)

    def ref(dt):
        X = tt(x, dt)
        Y = X.mean(dim=(2, 3))
        Y.backward(tt(dy, dt, False))
        return {"y": Y, "dx": X.grad}
    agree(opcheck("avgpool", {"x": x, "dy": dy}, ["y", "dx"]), ref)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias):
    x, w, bb, dy = f32(7, 33), f32(10, 33), f32(10), f32(7, 10)

    def ref(dt):
        X, W, Bb = tt(x, dt), tt(w, dt), tt(bb, dt)
        Y = F.linear(X, W, Bb if bias else None)
        Y.backward(tt(dy, dt, False))
        return {"y": Y, "dx": X.grad, "dw": W.grad, **({"db": Bb.grad} if bias else {})}
    inp = {"x": x, "w": w, "dy": dy}
    if bias:
        inp["bias"] = bb
    agree(opcheck("linear", inp, ["y", "dx", "dw"] + (["db"] if bias else [])), ref)


def test_elementwise():
    a, c = f32(100001), f32(100001)
    out = opcheck("ew", {"a": a, "c": c}, ["add", "axpy", "scale"], alpha=-0.75)
    np.testing.assert_array_equal(out["add"], a + c)
    agree(out, lambda dt: {"axpy": tt(c, dt, False) - 0.75 * tt(a, dt, False), "scale": -0.75 * tt(a, dt, False)})


# ---------------------------------------------------------------- ReviewKD's ops

RESIZE_CASES = [
    # h, w -> oh, ow: up, down, non-integer ratios, from and to 1x1, non-square
    (7, 7, 14, 14), (14, 14, 7, 7), (9, 17, 33, 65), (33, 65, 9, 17), (1, 1, 4, 3), (5, 6, 1, 1),
    (4, 4, 4, 4), (13, 7, 5, 11),
]


@pytest.mark.parametrize("h,w,oh,ow", RESIZE_CASES)
def test_resize_bilinear(h, w, oh, ow):
    x, dy = f32(2, 3, h, w), f32(2, 3, oh, ow)

    def ref(dt):
        X = tt(x, dt)
        Y = F.interpolate(X, size=(oh, ow), mode="bilinear", align_corners=False)
        Y.backward(tt(dy, dt, False))
        return {"y": Y, "dx": X.grad}
    agree(opcheck("resize", {"x": x, "dy": dy}, ["y", "dx"]), ref)


@pytest.mark.parametrize("h,w,k", [(7, 7, 4), (9, 17, 4), (9, 17, 2), (5, 3, 1), (14, 14, 2), (6, 10, 4), (4, 4, 4)])
def test_adaptive_avgpool(h, w, k):
    x, dy = f32(2, 3, h, w), f32(2, 3, k, k)

    def ref(dt):
        X = tt(x, dt)
        Y = F.adaptive_avg_pool2d(X, (k, k))
        Y.backward(tt(dy, dt, False))
        return {"y": Y, "dx": X.grad}
    agree(opcheck("adapool", {"x": x, "dy": dy}, ["y", "dx"]), ref)


def test_attention_fusion():
    """ReviewKD's ABF fusion: a = sigmoid(z + bias), r = u a0 + v a1 (reviewkd.py 33-38)."""
    n, c, h, w = 3, 5, 4, 6
    u, v, z, bias, dr = f32(n, c, h, w), f32(n, c, h, w), f32(n, 2, h, w), f32(2), f32(n, c, h, w)

    def ref(dt):
        U, V, Z, Bb = tt(u, dt), tt(v, dt), tt(z, dt), tt(bias, dt)
        A = torch.sigmoid(Z + Bb.view(1, 2, 1, 1))
        R = U * A[:, 0:1] + V * A[:, 1:2]
        R.backward(tt(dr, dt, False))
        return {"a": A, "r": R, "du": U.grad, "dv": V.grad, "dz": Z.grad, "dbias": Bb.grad}
    agree(opcheck("att", {"u": u, "v": v, "z": z, "bias": bias, "dr": dr}, ["a", "r", "du", "dv", "dz", "dbias"]), ref)


def test_mse_accumulates():
    x, t, dz0 = f32(4, 7, 3), f32(4, 7, 3), f32(4, 7, 3)

    def ref(dt):
        X = tt(x, dt)
        L = 0.75 * F.mse_loss(X, tt(t, dt, False))
        L.backward()
        return {"loss": (0.25 + L).reshape(1), "dz": tt(dz0, dt, False) + X.grad}
    agree(opcheck("mse", {"x": x, "t": t, "dz0": dz0}, ["loss", "dz"], weight=0.75, loss0=0.25), ref)


def test_sgd():
    p, g, m = f32(5000), f32(5000), f32(5000)

    def ref(dt):
        P = tt(p, dt)
        opt = torch.optim.SGD([P], lr=0.05, momentum=0.9)
        P.grad = tt(g, dt, False)
        opt.state[P]["momentum_buffer"] = tt(m, dt, False)
        opt.step()
        return {"m": opt.state[P]["momentum_buffer"], "p": P}
    agree(opcheck("sgd", {"p": p, "g": g, "m": m}, ["p", "m"], lr=0.05, momentum=0.9), ref)


def test_argmax_first_max():
    z = f32(6, 9)
    z[2, 3] = z[2, 7] = 10.0
    out = opcheck("argmax", {"z": z}, ["pred"])
    np.testing.assert_array_equal(out["pred"], np.argmax(z, axis=1))
    assert out["pred"][2] == 3


# ---------------------------------------------------------------- losses (independent torch formulas)

B, C = 8, 11
LOSS0 = 0.5


def loss_case(weight):
    z = f32(B, C, scale=3)
    y = RNG.integers(0, C, B).astype(np.int32)
    dz0 = f32(B, C)
    return z, y, dz0, weight


def check_loss(out, loss, weight, dz0):
    """loss(dt) -> (L, S): the loss and the leaf whose gradient opcheck adds to dz0."""
    def ref(dt):
        L, S = loss(dt)
        L.backward()
        return {"loss": (LOSS0 + weight * L).reshape(1), "dz": tt(dz0, dt, False) + weight * S.grad}
    agree(out, ref)


def test_ce():
    z, y, dz0, wgt = loss_case(0.7)

    def loss(dt):
        Z = tt(z, dt)
        return F.cross_entropy(Z, torch.from_numpy(y).long()), Z
    out = opcheck("ce", {"z": z, "y": y, "dz0": dz0}, ["loss", "dz"], weight=wgt, loss0=LOSS0)
    check_loss(out, loss, wgt, dz0)


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_kl(temp):
    t, s, dz0 = f32(B, C, scale=3), f32(B, C, scale=3), f32(B, C)

    def loss(dt):
        T, S = tt(t, dt), tt(s, dt)
        L = F.kl_div(F.log_softmax(S / temp, 1), F.softmax(T.detach() / temp, 1), reduction="batchmean")
        return L, S
    out = opcheck("kl", {"t": t, "s": s, "dz0": dz0}, ["loss", "dz"], temp=temp, weight=2.0, loss0=LOSS0)
    check_loss(out, loss, 2.0, dz0)


@pytest.mark.parametrize("keep_mode", ["some", "none", "all"])
def test_nt_kl(keep_mode):
    t, s, dz0 = f32(B, C, scale=3), f32(B, C, scale=3), f32(B, C)
    y = RNG.integers(0, C, B).astype(np.int32)
    keep = {"some": (RNG.random(B) > 0.5), "none": np.zeros(B, bool), "all": np.ones(B, bool)}[keep_mode]
    keep = keep.astype(np.float32)

    def loss(dt):
        T, S = tt(t, dt), tt(s, dt)
        # As c2kd-method.md: target logit multiplied by 0, softmax over all C, kept rows summed, / full B.
        m = 1 - F.one_hot(torch.from_numpy(y).long(), C).to(dt)
        a = F.softmax(T.detach() * m, 1)
        q = F.log_softmax(S * m, 1)
        per = (a * (torch.log(a) - q)).sum(1)
        return (per * tt(keep, dt, False)).sum() / B, S
    out = opcheck("nt_kl", {"t": t, "s": s, "y": y, "keep": keep, "dz0": dz0}, ["loss", "dz"], weight=1.5,
                  loss0=LOSS0)
    check_loss(out, loss, 1.5, dz0)


@pytest.mark.parametrize("temp,gamma", [(1.0, 1.5), (2.0, 1.0)])
def test_nkd(temp, gamma):
    t, s, dz0 = f32(B, C, scale=3), f32(B, C, scale=3), f32(B, C)
    y = RNG.integers(0, C, B).astype(np.int32)
    Y = torch.from_numpy(y).long()

    def loss(dt):
        T, S = tt(t, dt), tt(s, dt)
        # NKD (Yang et al.): -sg(T_y) log S_y - gamma temp^2 sum_{i != y} N(T_i/temp) log N(S_i/temp), batch mean.
        ty = F.softmax(T.detach(), 1).gather(1, Y[:, None])[:, 0]
        ls_y = F.log_softmax(S, 1).gather(1, Y[:, None])[:, 0]
        mask = torch.ones(B, C, dtype=torch.bool)
        mask[torch.arange(B), Y] = False
        tn = T.detach()[mask].reshape(B, C - 1)
        sn = S[mask].reshape(B, C - 1)
        non = (F.softmax(tn / temp, 1) * F.log_softmax(sn / temp, 1)).sum(1)
        return (-ty * ls_y).mean() - gamma * temp ** 2 * non.mean(), S
    out = opcheck("nkd", {"t": t, "s": s, "y": y, "dz0": dz0}, ["loss", "dz"], temp=temp, gamma=gamma, weight=0.8,
                  loss0=LOSS0)
    check_loss(out, loss, 0.8, dz0)


def test_loss_bad_label_fails():
    z = f32(2, 3)
    r = None
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "z.npy"), z)
        np.save(os.path.join(d, "y.npy"), np.array([0, 3], np.int32))
        r = run([binary("opcheck"), "ce", d])
    assert r.returncode == 1 and "label 3 out of range" in r.stderr


# ---------------------------------------------------------------- Kendall tau-b

def test_kendall_vs_scipy():
    rows_a, rows_c = [], []
    Cn = 50
    for i in range(12):
        a, c = f32(Cn), f32(Cn)
        if i % 3 == 1:    # heavy ties (rounded values)
            a, c = np.round(a * 2) / 2, np.round(c)
        if i % 3 == 2:    # correlated
            c = a + 0.3 * c
        if i == 9:
            c = -a
        rows_a.append(a)
        rows_c.append(c)
    rows_a.append(np.ones(Cn, np.float32))  # constant row: NaN, not kept
    rows_c.append(f32(Cn))
    a, c = np.array(rows_a, np.float32), np.array(rows_c, np.float32)
    out = opcheck("kendall", {"a": a, "c": c}, ["tau", "keep"], omega=0.0)
    want = np.array([scipy.stats.kendalltau(a[i], c[i], variant="b")[0] for i in range(len(a))])
    np.testing.assert_allclose(out["tau"], want, rtol=1e-6, atol=1e-7)
    assert np.isnan(out["tau"][-1])
    np.testing.assert_array_equal(out["keep"], (np.nan_to_num(want, nan=-2) > 0).astype(np.float32))
    out = opcheck("kendall", {"a": a, "c": c}, ["tau", "keep"], omega=0.2)
    np.testing.assert_array_equal(out["keep"], (np.nan_to_num(want, nan=-2) > 0.2).astype(np.float32))


# ---------------------------------------------------------------- input preparation

def test_prep_spec():
    x = (RNG.standard_normal((3, 257 * 20)) * 3 + 1).astype(np.float16)
    x[0, :5] = [0, -0.0, 6.0e-8, 65504, -3e-5]  # zero, negative zero, subnormal, max, negative subnormal-ish
    out = opcheck("spec", {"half": x}, ["out"], standardize=0)
    np.testing.assert_array_equal(out["out"], x.astype(np.float32))
    out = opcheck("spec", {"half": x[1:]}, ["out"], standardize=1)

    def ref(dt):
        xd = tt(x[1:].astype(np.float32), dt, False)
        return {"out": (xd - xd.mean(1, keepdim=True)) / (xd.std(1, unbiased=False, keepdim=True) + 1e-9)}
    agree(out, ref)


def test_prep_frames():
    imgs = [RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8), RNG.integers(0, 256, (60, 41, 3), dtype=np.uint8)]
    src = np.concatenate([i.ravel() for i in imgs])
    off1 = imgs[0].size
    # offset, src_w, src_h, x, y, w, h, flip: downscale, upscale, whole image, flipped
    crops = np.array([[0, 53, 37, 5, 3, 40, 30, 0],
                      [off1, 41, 60, 10, 20, 9, 13, 1],
                      [0, 53, 37, 0, 0, 53, 37, 1],
                      [off1, 41, 60, 0, 0, 41, 60, 0]], np.int64)
    oh, ow = 24, 20
    out = opcheck("frames", {"src": src, "crops": crops}, ["out"], oh=oh, ow=ow)

    def ref(dt):
        mean = torch.tensor([0.485, 0.456, 0.406], dtype=dt)[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225], dtype=dt)[:, None, None]
        res = {}
        for i, (off, sw, sh, x, y, w, h, flip) in enumerate(crops):
            img = imgs[0] if off == 0 else imgs[1]
            crop = tt(img[y:y + h, x:x + w], dt, False).permute(2, 0, 1)[None]
            r = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=False, antialias=False)[0]
            if flip:
                r = r.flip(2)
            res[i] = (r / 255 - mean) / std
        return res
    agree({i: out["out"][i] for i in range(len(crops))}, ref)


def test_prep_frames_bad_crop_fails():
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "src.npy"), np.zeros(10 * 10 * 3, np.uint8))
        np.save(os.path.join(d, "crops.npy"), np.array([[0, 10, 10, 5, 5, 6, 3, 0]], np.int64))
        r = run([binary("opcheck"), "frames", d, "oh=4", "ow=4"])
    assert r.returncode == 1 and "outside" in r.stderr


def test_bad_thread_count_fails():
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "z.npy"), f32(2, 3))
        r = run([binary("opcheck"), "argmax", d, "threads=100000"])
    assert r.returncode == 1 and "thread" in r.stderr
