"""CPU backend ops (kernels/cpu/*.c) against PyTorch float64 / scipy / numpy.

Each op runs in build/bin/opcheck on float32 inputs; the reference computes in
float64 from the same float32 values. Tolerances: float32 ops with short sums
1e-5 relative (plus a small absolute term scaled by the output's magnitude);
convolutions and gemm-based ops 1e-4 of the output's scale (float32 sums of up
to ~1000 terms).
"""
import os
import tempfile

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from conftest import binary, run

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


def close(got, want, rtol=1e-5, scale_atol=1e-5):
    want = np.asarray(want, dtype=np.float64)
    atol = scale_atol * max(1e-30, float(np.max(np.abs(want)))) if want.size else 0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


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
    X, W = t64(x), t64(wt)
    Y = F.conv2d(X, W, stride=stride, padding=pad)
    dy = f32(*Y.shape)
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    out = opcheck("conv", {"x": x, "w": wt, "dy": dy}, ["y", "dx", "dw"], stride=stride, pad=pad)
    close(out["y"], Y.detach(), 1e-4, 1e-4)
    close(out["dx"], X.grad, 1e-4, 1e-4)
    close(out["dw"], W.grad, 1e-4, 1e-4)


def test_conv_threads_agree():
    """One thread and three threads give the same result (no races in im2col/col2im)."""
    x, wt = f32(5, 6, 15, 17), f32(7, 6, 3, 3)
    dy = f32(5, 7, 8, 9)
    a = opcheck("conv", {"x": x, "w": wt, "dy": dy}, ["y", "dx", "dw"], stride=2, pad=1, threads=1)
    b = opcheck("conv", {"x": x, "w": wt, "dy": dy}, ["y", "dx", "dw"], stride=2, pad=1, threads=3)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (16, 8), (2, 5, 1, 1)])
def test_bn_train(shape):
    x = f32(*shape, scale=2.0) + 0.5
    c = shape[1]
    g, b = f32(c) + 1, f32(c)
    rm, rv = f32(c), np.abs(f32(c)) + 0.5
    dy = f32(*shape)
    X, G, Bt = t64(x), t64(g), t64(b)
    RM, RV = torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64)
    Y = F.batch_norm(X, RM, RV, G, Bt, training=True, momentum=0.1, eps=1e-5)
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    out = opcheck("bn", {"x": x, "gamma": g, "beta": b, "rm": rm, "rv": rv, "dy": dy},
                  ["y", "rm", "rv", "mean", "invstd", "dx", "dgamma", "dbeta"], momentum=0.1, eps=1e-5)
    close(out["y"], Y.detach())
    close(out["rm"], RM)
    close(out["rv"], RV)
    dims = [0] + list(range(2, len(shape)))
    xd = x.astype(np.float64)
    close(out["mean"], xd.mean(axis=tuple(dims)))
    close(out["invstd"], 1 / np.sqrt(xd.var(axis=tuple(dims)) + 1e-5))
    # dx is a difference of terms of size |gamma*invstd*dy|: tolerance relative to that scale
    # (with 2 values per channel the exact dx is ~0 and only the rounding is left).
    dx_scale = float(np.max(np.abs(dy)) * np.max(np.abs(g) * out["invstd"]))
    np.testing.assert_allclose(out["dx"], X.grad.numpy(), rtol=1e-4, atol=1e-5 * dx_scale)
    close(out["dgamma"], G.grad, 1e-5, 1e-5)
    close(out["dbeta"], Bt.grad, 1e-5, 1e-5)


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
    dx_scale = float(np.max(np.abs(dy)) * np.max(np.abs(g) * fused["invstd"]))
    for k in BN_OUT:
        scale = dx_scale if k == "dx" else float(np.max(np.abs(fused[k])))
        np.testing.assert_allclose(split[k], fused[k], rtol=1e-5, atol=2e-6 * scale, err_msg=k)
    X, G, Bt = t64(x), t64(g), t64(b)
    RM, RV = torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64)
    Y = F.batch_norm(X, RM, RV, G, Bt, training=True, momentum=0.1, eps=1e-5)
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    close(split["y"], Y.detach())
    close(split["rm"], RM)
    close(split["rv"], RV)
    np.testing.assert_allclose(split["dx"], X.grad.numpy(), rtol=1e-4, atol=1e-5 * dx_scale)
    close(split["dgamma"], G.grad, 1e-5, 1e-5)
    close(split["dbeta"], Bt.grad, 1e-5, 1e-5)


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
    Y = F.batch_norm(t64(x), torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64),
                     t64(g), t64(b), training=False, eps=1e-5)
    out = opcheck("bn_eval", {"x": x, "gamma": g, "beta": b, "rm": rm, "rv": rv}, ["y"], eps=1e-5)
    close(out["y"], Y.detach())


# ---------------------------------------------------------------- activations, pools, linear, element-wise

def test_relu_and_leaky():
    x = f32(3, 1000)
    x[0, :10] = 0.0
    dy = f32(3, 1000)
    X = t64(x)
    Y = torch.relu(X)
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    out = opcheck("relu", {"x": x, "dy": dy}, ["y", "dx"])
    close(out["y"], Y.detach(), 0, 0)
    close(out["dx"], X.grad, 0, 0)
    X = t64(x)
    Y = F.leaky_relu(X, 0.1)
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    out = opcheck("leaky", {"x": x, "dy": dy}, ["y", "dx"], slope=0.1)
    close(out["y"], Y.detach())
    close(out["dx"], X.grad)


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
    X = torch.from_numpy(x).requires_grad_(True)  # float32 in torch: same tie-breaking kernel
    Y = F.max_pool2d(X, k, stride, pad)
    dy = f32(*Y.shape)
    Y.backward(torch.from_numpy(dy))
    out = opcheck("maxpool", {"x": x, "dy": dy}, ["y", "dx"], k=k, stride=stride, pad=pad)
    close(out["y"], Y.detach(), 0, 0)
    close(out["dx"], X.grad, 1e-6, 1e-6)


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
    close(out["y"][~np.isnan(out["y"])], Y.detach().numpy()[~np.isnan(out["y"])], 0, 0)
    close(out["dx"], X.grad, 1e-6, 1e-6)


def test_avgpool():
    x = f32(3, 5, 4, 6)
    X = t64(x)
    Y = X.mean(dim=(2, 3))
    dy = f32(3, 5)
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    out = opcheck("avgpool", {"x": x, "dy": dy}, ["y", "dx"])
    close(out["y"], Y.detach())
    close(out["dx"], X.grad)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias):
    x, w, bb, dy = f32(7, 33), f32(10, 33), f32(10), f32(7, 10)
    X, W, Bb = t64(x), t64(w), t64(bb)
    Y = F.linear(X, W, Bb if bias else None)
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    inp = {"x": x, "w": w, "dy": dy}
    if bias:
        inp["bias"] = bb
    out = opcheck("linear", inp, ["y", "dx", "dw"] + (["db"] if bias else []))
    close(out["y"], Y.detach(), 1e-4, 1e-5)
    close(out["dx"], X.grad, 1e-4, 1e-5)
    close(out["dw"], W.grad, 1e-4, 1e-5)
    if bias:
        close(out["db"], Bb.grad, 1e-5, 1e-6)


def test_elementwise():
    a, c = f32(100001), f32(100001)
    out = opcheck("ew", {"a": a, "c": c}, ["add", "axpy", "scale"], alpha=-0.75)
    np.testing.assert_array_equal(out["add"], a + c)
    close(out["axpy"], c.astype(np.float64) - 0.75 * a, 1e-6, 1e-7)
    close(out["scale"], -0.75 * a.astype(np.float64), 1e-6, 0)


# ---------------------------------------------------------------- ReviewKD's ops

RESIZE_CASES = [
    # h, w -> oh, ow: up, down, non-integer ratios, from and to 1x1, non-square
    (7, 7, 14, 14), (14, 14, 7, 7), (9, 17, 33, 65), (33, 65, 9, 17), (1, 1, 4, 3), (5, 6, 1, 1),
    (4, 4, 4, 4), (13, 7, 5, 11),
]


@pytest.mark.parametrize("h,w,oh,ow", RESIZE_CASES)
def test_resize_bilinear(h, w, oh, ow):
    x, dy = f32(2, 3, h, w), f32(2, 3, oh, ow)
    X = t64(x)
    Y = F.interpolate(X, size=(oh, ow), mode="bilinear", align_corners=False)
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    out = opcheck("resize", {"x": x, "dy": dy}, ["y", "dx"])
    close(out["y"], Y.detach(), 1e-5, 1e-6)
    close(out["dx"], X.grad, 1e-5, 1e-6)


@pytest.mark.parametrize("h,w,k", [(7, 7, 4), (9, 17, 4), (9, 17, 2), (5, 3, 1), (14, 14, 2), (6, 10, 4), (4, 4, 4)])
def test_adaptive_avgpool(h, w, k):
    x, dy = f32(2, 3, h, w), f32(2, 3, k, k)
    X = t64(x)
    Y = F.adaptive_avg_pool2d(X, (k, k))
    Y.backward(torch.from_numpy(dy.astype(np.float64)))
    out = opcheck("adapool", {"x": x, "dy": dy}, ["y", "dx"])
    close(out["y"], Y.detach(), 1e-5, 1e-6)
    close(out["dx"], X.grad, 1e-5, 1e-6)


def test_attention_fusion():
    """ReviewKD's ABF fusion: a = sigmoid(z + bias), r = u a0 + v a1 (reviewkd.py 33-38)."""
    n, c, h, w = 3, 5, 4, 6
    u, v, z, bias, dr = f32(n, c, h, w), f32(n, c, h, w), f32(n, 2, h, w), f32(2), f32(n, c, h, w)
    U, V, Z, Bb = t64(u), t64(v), t64(z), t64(bias)
    A = torch.sigmoid(Z + Bb.view(1, 2, 1, 1))
    R = U * A[:, 0:1] + V * A[:, 1:2]
    A.retain_grad()
    R.backward(torch.from_numpy(dr.astype(np.float64)))
    out = opcheck("att", {"u": u, "v": v, "z": z, "bias": bias, "dr": dr}, ["a", "r", "du", "dv", "dz", "dbias"])
    close(out["a"], A.detach())
    close(out["r"], R.detach())
    close(out["du"], U.grad)
    close(out["dv"], V.grad)
    close(out["dz"], Z.grad)
    close(out["dbias"], Bb.grad)


def test_mse_accumulates():
    x, t, dz0 = f32(4, 7, 3), f32(4, 7, 3), f32(4, 7, 3)
    X = t64(x)
    L = 0.75 * F.mse_loss(X, torch.from_numpy(t.astype(np.float64)))
    L.backward()
    out = opcheck("mse", {"x": x, "t": t, "dz0": dz0}, ["loss", "dz"], weight=0.75, loss0=0.25)
    close(out["loss"], [0.25 + float(L)])
    close(out["dz"], dz0.astype(np.float64) + X.grad.numpy())


def test_sgd():
    p, g, m = f32(5000), f32(5000), f32(5000)
    P, M = torch.tensor(p, dtype=torch.float64, requires_grad=True), torch.tensor(m, dtype=torch.float64)
    opt = torch.optim.SGD([P], lr=0.05, momentum=0.9)
    P.grad = torch.tensor(g, dtype=torch.float64)
    opt.state[P]["momentum_buffer"] = M.clone()
    opt.step()
    out = opcheck("sgd", {"p": p, "g": g, "m": m}, ["p", "m"], lr=0.05, momentum=0.9)
    close(out["m"], opt.state[P]["momentum_buffer"], 1e-6, 1e-7)
    close(out["p"], P.detach(), 1e-6, 1e-7)


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


def check_loss(out, L, S, weight, dz0):
    L.backward()
    close(out["loss"], [LOSS0 + weight * L.item()], 1e-5, 0)
    close(out["dz"], dz0 + weight * S.grad.numpy(), 1e-5, 1e-6)


def test_ce():
    z, y, dz0, wgt = loss_case(0.7)
    Z = t64(z)
    L = F.cross_entropy(Z, torch.from_numpy(y).long())
    out = opcheck("ce", {"z": z, "y": y, "dz0": dz0}, ["loss", "dz"], weight=wgt, loss0=LOSS0)
    check_loss(out, L, Z, wgt, dz0)


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_kl(temp):
    t, s, dz0 = f32(B, C, scale=3), f32(B, C, scale=3), f32(B, C)
    T, S = t64(t), t64(s)
    L = F.kl_div(F.log_softmax(S / temp, 1), F.softmax(T.detach() / temp, 1), reduction="batchmean")
    out = opcheck("kl", {"t": t, "s": s, "dz0": dz0}, ["loss", "dz"], temp=temp, weight=2.0, loss0=LOSS0)
    check_loss(out, L, S, 2.0, dz0)
    assert T.grad is None


@pytest.mark.parametrize("keep_mode", ["some", "none", "all"])
def test_nt_kl(keep_mode):
    t, s, dz0 = f32(B, C, scale=3), f32(B, C, scale=3), f32(B, C)
    y = RNG.integers(0, C, B).astype(np.int32)
    keep = {"some": (RNG.random(B) > 0.5), "none": np.zeros(B, bool), "all": np.ones(B, bool)}[keep_mode]
    keep = keep.astype(np.float32)
    T, S = t64(t), t64(s)
    # As c2kd-method.md: target logit multiplied by 0, softmax over all C, kept rows summed, / full B.
    m = 1 - F.one_hot(torch.from_numpy(y).long(), C).double()
    a = F.softmax(T.detach() * m, 1)
    q = F.log_softmax(S * m, 1)
    per = (a * (torch.log(a) - q)).sum(1)
    L = (per * torch.from_numpy(keep).double()).sum() / B
    out = opcheck("nt_kl", {"t": t, "s": s, "y": y, "keep": keep, "dz0": dz0}, ["loss", "dz"], weight=1.5,
                  loss0=LOSS0)
    check_loss(out, L, S, 1.5, dz0)


@pytest.mark.parametrize("temp,gamma", [(1.0, 1.5), (2.0, 1.0)])
def test_nkd(temp, gamma):
    t, s, dz0 = f32(B, C, scale=3), f32(B, C, scale=3), f32(B, C)
    y = RNG.integers(0, C, B).astype(np.int32)
    T, S = t64(t), t64(s)
    Y = torch.from_numpy(y).long()
    # NKD (Yang et al.): -sg(T_y) log S_y - gamma temp^2 sum_{i != y} N(T_i/temp) log N(S_i/temp), batch mean.
    ty = F.softmax(T.detach(), 1).gather(1, Y[:, None])[:, 0]
    ls_y = F.log_softmax(S, 1).gather(1, Y[:, None])[:, 0]
    mask = torch.ones(B, C, dtype=torch.bool)
    mask[torch.arange(B), Y] = False
    tn = T.detach()[mask].reshape(B, C - 1)
    sn = S[mask].reshape(B, C - 1)
    non = (F.softmax(tn / temp, 1) * F.log_softmax(sn / temp, 1)).sum(1)
    L = (-ty * ls_y).mean() - gamma * temp ** 2 * non.mean()
    out = opcheck("nkd", {"t": t, "s": s, "y": y, "dz0": dz0}, ["loss", "dz"], temp=temp, gamma=gamma, weight=0.8,
                  loss0=LOSS0)
    check_loss(out, L, S, 0.8, dz0)


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
    xd = x[1:].astype(np.float64)
    want = (xd - xd.mean(1, keepdims=True)) / (xd.std(1, keepdims=True) + 1e-9)
    close(out["out"], want, 1e-5, 1e-6)


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
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64)[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64)[:, None, None]
    for i, (off, sw, sh, x, y, w, h, flip) in enumerate(crops):
        img = imgs[0] if off == 0 else imgs[1]
        crop = torch.from_numpy(img[y:y + h, x:x + w].astype(np.float64)).permute(2, 0, 1)[None]
        r = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=False, antialias=False)[0]
        if flip:
            r = r.flip(2)
        want = (r / 255 - mean) / std
        close(out["out"][i], want, 1e-5, 1e-5)


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
