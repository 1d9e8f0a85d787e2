"""PyTorch reference of train/system.c (float64): the same networks built from
the same HDF5 checkpoint, the same batches, the same losses and SGD steps.

Independent of the C code: torchvision-layout ResNet written here with torch.nn
(torchvision is not in Debian), losses from torch.nn.functional and the method
doc (../shared/docs/c2kd-method.md), Kendall's tau-b from scipy.

compare(run_dir, cfg) reads what tests/tools/stepcheck wrote into run_dir
(init.h5, batch.h5, step_K.h5, eval.h5), replays it and returns a list of
(what, error, tolerance) rows; python3 c2kd_ref.py RUN_DIR --method ... prints them.

The reference computes its own float64 values throughout; only the discrete
decisions that float32 takes within rounding of a kink (a ReLU input or a
max-pool window gap within KINK_BAND of the tensor's largest |x|) are taken
from C's record (class Kinks), because there float64 could pick the other
linear piece and differ from C by a whole gradient term instead of by rounding.
"""
import argparse
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import kendalltau

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
import tolerance as T  # noqa: E402


class Kinks:
    """The float32 C side's discrete decisions near a kink, applied to the reference.

    A ReLU passes its gradient or not by the sign of its input, a max-pool
    routes its gradient to one window element. Where float32 and float64
    disagree on such a decision (an input within rounding of zero, two window
    values within rounding of each other) the gradients differ by a whole
    entry, not by rounding. tests/tools/stepcheck records, for every
    activation of the step's forward pass, the elements within a band of the
    kink (|x| <= band * max |x|; band 1e-4 by default) with C's float32 input
    (ReLU, LeakyReLU) or C's chosen window element (max-pool) into
    step_K.h5:kink/<group>/<name>. While loaded, relu()/leaky()/maxpool()
    take exactly those decisions (forward and backward: the reference computes
    the float64 function of the same linear piece as C), so what remains is
    rounding. Checks (rows of compare()): every activation was recorded, the
    float64 inputs at the recorded elements lie within half the band of C's,
    and no element within half the band in float64 went unrecorded (so no
    decision that float32 could have taken otherwise is left to chance)."""

    def __init__(self):
        self.dec = {}
        self.active = False

    def load(self, step_file, check=True):
        """Takes the decisions of step_file (an open h5py.File) until clear().
        check=False: only takes them (the float32 control), without the checks."""
        self.dec = {}
        self.active = True
        self.check = check
        self.used = set()
        self.stats = {"recorded": 0, "overridden": 0, "relu": 0, "maxpool": 0, "dev": 0.0,
                      "uncovered": 0, "missing": []}

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "kind" in obj.attrs:
                kind = obj.attrs["kind"]
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                d = {k: float(obj.attrs[k]) for k in ("count", "scale", "band")}
                d["kind"] = kind
                for k in obj.keys():
                    d[k] = np.asarray(obj[k])
                self.dec[name] = d

        if "kink" in step_file:
            step_file["kink"].visititems(visit)

    def clear(self):
        self.active = False

    def _get(self, name, kind, count):
        if not self.active:
            return None
        d = self.dec.get(name)
        if d is None or d["kind"] != kind or int(d["count"]) != count:
            self.stats["missing"].append(name)
            return None
        self.used.add(name)
        self.stats["recorded"] += len(d["index" if kind != "maxpool" else "out"])
        return d

    def act_mask(self, x, name, kind):
        """x > 0 with C's decisions at the recorded elements."""
        xd = x.detach()
        pos = xd > 0
        d = self._get(name, kind, x.numel())
        if d is None:
            return pos
        idx = torch.from_numpy(d["index"].astype(np.int64))
        cpos = torch.from_numpy(d["value"] > 0)
        flat = pos.flatten()  # a fresh bool tensor (x > 0): safe to overwrite
        xf = xd.flatten()
        n = int((flat[idx] != cpos).sum())
        self.stats["overridden"] += n
        self.stats["relu"] += n
        scale = d["scale"]
        if not self.check:
            flat[idx] = cpos
            return flat.view_as(pos)
        if len(idx):
            dev = float((xf[idx] - torch.from_numpy(d["value"].astype(np.float64))).abs().max())
            self.stats["dev"] = max(self.stats["dev"], dev / max(scale * d["band"], 1e-300))
        near = xf.abs() <= 0.5 * d["band"] * scale
        near[idx] = False
        self.stats["uncovered"] += int(near.sum())
        flat[idx] = cpos
        return flat.view_as(pos)

    def pool_index(self, x, ind, name):
        """MaxPool2d(3, 2, 1) argmax indices with C's choices at the recorded windows."""
        d = self._get(name, "maxpool", ind.numel())
        if d is None:
            return ind
        out = torch.from_numpy(d["out"].astype(np.int64))
        arg = torch.from_numpy(d["arg"].astype(np.int64))
        flat = ind.flatten()
        n = int((flat[out] != arg).sum())
        self.stats["overridden"] += n
        self.stats["maxpool"] += n
        flat[out] = arg
        if not self.check:
            return flat.view_as(ind)
        tol = d["band"] * d["scale"]
        xd = x.detach()
        # the float64 windows (padding -inf, as in MaxPool2d): top two values of each
        win = F.unfold(F.pad(xd, (1, 1, 1, 1), value=-math.inf), 3, stride=2)
        top2 = win.view(xd.shape[0], xd.shape[1], 9, -1).topk(2, dim=2).values  # [N, C, 2, L]
        top, gap = top2[:, :, 0].flatten(), (top2[:, :, 0] - top2[:, :, 1]).flatten()
        if len(out):
            # C's choice is a float64 maximum up to half the band
            xp = xd.flatten(2).gather(2, flat.view_as(ind).flatten(2)).flatten()
            dev = float((top[out] - xp[out]).abs().max())
            self.stats["dev"] = max(self.stats["dev"], dev / max(tol, 1e-300))
        near = gap <= 0.5 * tol
        near[out] = False
        self.stats["uncovered"] += int(near.sum())
        return flat.view_as(ind)


KINKS = Kinks()


def relu(x, name):
    pos = KINKS.act_mask(x, name, "relu")
    return torch.where(pos, x, torch.zeros_like(x))


def leaky(x, slope, name):
    pos = KINKS.act_mask(x, name, "leaky")
    return torch.where(pos, x, x * slope)


def maxpool(x, name):
    """MaxPool2d(3, 2, 1) as a gather of the chosen window elements (so that the
    gradient goes where C's does)."""
    with torch.no_grad():
        _, ind = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        ind = KINKS.pool_index(x, ind, name)
    return x.flatten(2).gather(2, ind.flatten(2)).view_as(ind)


class BasicBlock(nn.Module):
    expansion = 1

    tag = ""  # activation names (set_tags)
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = relu(self.bn1(self.conv1(x)), self.tag + ".relu1")
        out = self.bn2(self.conv2(out))
        sc = x if self.downsample is None else self.downsample(x)
        return relu(out + sc, self.tag + ".relu")


class Bottleneck(nn.Module):
    expansion = 4

    tag = ""  # activation names (set_tags)
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = relu(self.bn1(self.conv1(x)), self.tag + ".relu1")
        out = relu(self.bn2(self.conv2(out)), self.tag + ".relu2")
        out = self.bn3(self.conv3(out))
        sc = x if self.downsample is None else self.downsample(x)
        return relu(out + sc, self.tag + ".relu")


def frame_pool(t, frames):
    """(B*F, C, h, w) -> (B, C): mean over frames and space together."""
    bf, c, h, w = t.shape
    return t.view(bf // frames, frames, c, h, w).mean(dim=(1, 3, 4))


def set_tags(net, group):
    """Names of the activations as stepcheck writes them: GROUP/relu, GROUP/maxpool,
    GROUP/layerL.J.reluI, GROUP/layerL.J.relu, GROUP/act (proxy)."""
    for name, mod in net.named_modules():
        mod.tag = group + ("/" + name if name else "")


class ResNet(nn.Module):
    """torchvision layout; forward returns (logits, layer3 output)."""

    tag = ""  # activation names (set_tags)
    def __init__(self, depth, in_c, width, classes, frames=1):
        super().__init__()
        block, layers = (BasicBlock, [2, 2, 2, 2]) if depth == 18 else (Bottleneck, [3, 4, 6, 3])
        self.frames = frames
        self.conv1 = nn.Conv2d(in_c, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.inplanes = width
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.fc = nn.Linear(width * 8 * block.expansion, classes)
        self.l3_channels = width * 4 * block.expansion

    def _make_layer(self, block, planes, n, stride):
        mods = []
        for i in range(n):
            mods.append(block(self.inplanes, planes, stride if i == 0 else 1))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*mods)

    def forward(self, x):
        x = maxpool(relu(self.bn1(self.conv1(x)), self.tag + "/relu"), self.tag + "/maxpool")
        l1 = self.layer1(x)
        x = self.layer2(l1)
        l3 = self.layer3(x)
        l4 = self.layer4(l3)
        self.stages = (x, l3, l4)  # layer2..4 outputs (SHAKE's shadow head reads them)
        self.feats = (l1, x, l3, l4)  # layer1..4 outputs (ReviewKD)
        self.pooled = frame_pool(l4, self.frames)
        return self.fc(self.pooled), l3


class Proxy(nn.Module):
    """layer3 output -> pool -> (fa: 1x1 conv, BN, LeakyReLU(0.1); cfa: conv, BN, conv, BN, ReLU; none) -> fc."""

    tag = ""  # activation names (set_tags)
    def __init__(self, kind, channels, classes, frames=1):
        super().__init__()
        self.kind = kind
        self.frames = frames
        if kind == "fa":
            self.conv = nn.Conv2d(channels, channels, 1, bias=False)
            self.bn = nn.BatchNorm2d(channels)
        elif kind == "cfa":
            self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, classes)

    def forward(self, feat):
        p = frame_pool(feat, self.frames)
        x = p[:, :, None, None]
        if self.kind == "fa":
            x = leaky(self.bn(self.conv(x)), 0.1, self.tag + "/act")
        elif self.kind == "cfa":
            x = relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))), self.tag + "/act")
        return self.fc(x.flatten(1))


class Shadow(nn.Module):
    """SHAKE's shadow head (lliai/SHAKE shake/models/util.py, class Shake) on the
    teacher's last three stages (docs/METHODS.md): fuseK = Sequential(conv, BN)
    + ReLU; x = F5(F3(F1(g2) + F2(g3)) + F4(g4)); pool; the teacher's fc."""

    tag = ""  # activation names (set_tags)
    def __init__(self, c2, c3, c4, frames=1):
        super().__init__()
        self.frames = frames

        def fuse(cin, cout, k, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))

        self.fuse1 = fuse(c2, c3, 3, 2)
        self.fuse2 = fuse(c3, c3, 1, 1)
        self.fuse3 = fuse(c3, c4, 3, 2)
        self.fuse4 = fuse(c4, c4, 1, 1)
        self.fuse5 = fuse(c4, c4, 3, 1)

    def forward(self, g, weight, bias):
        def f(k, x):
            return relu(getattr(self, f"fuse{k}")(x), f"{self.tag}/fuse{k}.relu")
        x = f(5, f(3, f(1, g[0]) + f(2, g[1])) + f(4, g[2]))
        return F.linear(frame_pool(x, self.frames), weight, bias)


class ABF(nn.Module):
    """ReviewKD's attention-based fusion (dvlab-research/ReviewKD, CIFAR-100/model/reviewkd.py,
    class ABF), with the cross-modal choices of docs/METHODS.md: both resizes bilinear
    (align_corners=False) to full (h, w) sizes."""

    def __init__(self, cin, mid, cout, fuse):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid))
        self.conv2 = nn.Sequential(nn.Conv2d(mid, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid, 2, 1), nn.Sigmoid()) if fuse else None

    def forward(self, x, y, shape, out_shape):
        x = self.conv1(x)
        if self.att_conv is not None:
            y = F.interpolate(y, size=shape, mode="bilinear", align_corners=False)
            z = self.att_conv(torch.cat([x, y], 1))
            x = x * z[:, 0:1] + y * z[:, 1:2]
        if tuple(x.shape[-2:]) != tuple(out_shape):
            x = F.interpolate(x, size=out_shape, mode="bilinear", align_corners=False)
        return self.conv2(x), x


class Review(nn.Module):
    """ReviewKD's student side (reviewkd.py, class ReviewKD): abfs[0] on the top level (the
    pooled vector, no fusion), abfs[k] on level 4 - k; returns the outputs bottom-up."""

    def __init__(self, in_ch, out_ch, mid):
        super().__init__()
        n = len(in_ch)
        self.abfs = nn.ModuleList([ABF(in_ch[n - 1 - k], mid, out_ch[n - 1 - k], k > 0) for k in range(n)])

    def forward(self, feats, tshapes):
        x = feats[::-1]
        n = len(x)
        out, res = self.abfs[0](x[0], None, x[0].shape[-2:], tshapes[n - 1])
        outs = [out]
        for k in range(1, n):
            out, res = self.abfs[k](x[k], res, x[k].shape[-2:], tshapes[n - 1 - k])
            outs.insert(0, out)
        return outs


def hcl_level(fs, ft):
    """reviewkd.py hcl for one level (the height decides which pyramid levels are used)."""
    h = fs.shape[2]
    loss = F.mse_loss(fs, ft)
    cnt, tot = 1.0, 1.0
    for k in (4, 2, 1):
        if k >= h:
            continue
        cnt /= 2.0
        loss = loss + F.mse_loss(F.adaptive_avg_pool2d(fs, (k, k)), F.adaptive_avg_pool2d(ft, (k, k))) * cnt
        tot += cnt
    return loss / tot


def review_levels(net):
    """The five levels of a network's last forward (frames averaged): layer1..4, pooled as 1x1."""
    f = net.frames
    out = [t.view(t.shape[0] // f, f, *t.shape[1:]).mean(1) for t in net.feats]
    return out + [net.pooled[:, :, None, None]]


def shake_norm(v):
    """SHAKE's logit normalisation (loops.py): layer norm over the classes, no affine, x 3.1415."""
    return F.layer_norm(v, (v.shape[1],), None, None, 1e-7) * 3.1415


# ---------------------------------------------------------------- losses (method doc)

def kl(t, s, temp=1.0):
    """KL(softmax(t/temp) || softmax(s/temp)), batch mean, t detached."""
    return F.kl_div(F.log_softmax(s / temp, 1), F.softmax(t.detach() / temp, 1), reduction="batchmean")


def nt_kl(src, dst, y, keep):
    m = F.one_hot(y, src.shape[1]).to(src.dtype)
    a = F.softmax(src.detach() * (1 - m), 1)
    b = F.log_softmax(dst * (1 - m), 1)
    per = (a * (torch.log(a) - b)).sum(1)
    return (per * keep).sum() / src.shape[0]


def nkd(t, s, y, temp, gamma):
    """NKD authors' loss (without CE)."""
    n, c = s.shape
    lab = y.view(-1, 1)
    s_i = F.log_softmax(s, 1)
    t_i = F.softmax(t.detach(), 1)
    loss_t = -(torch.gather(t_i, 1, lab).detach() * torch.gather(s_i, 1, lab)).mean()
    mask = torch.ones_like(s).scatter_(1, lab, 0).bool()
    s_n = s[mask].reshape(n, -1)
    t_n = t.detach()[mask].reshape(n, -1)
    loss_non = (F.softmax(t_n / temp, 1) * F.log_softmax(s_n / temp, 1)).sum(1).mean()
    return loss_t - gamma * temp ** 2 * loss_non


def kendall_keep(a, b, omega):
    a = a.detach().numpy()
    b = b.detach().numpy()
    tau = np.array([kendalltau(a[i], b[i]).correlation for i in range(a.shape[0])], dtype=np.float64)
    keep = np.where(np.isnan(tau), False, tau > omega)
    return tau, keep


# ---------------------------------------------------------------- the system

class System:
    def __init__(self, cfg, dtype=torch.float64):
        self.cfg = cfg
        self.dtype = dtype
        c = cfg
        fold = c["fold"]
        frames = c["frames"]
        vis_in = 3 if fold else 3 * frames
        vis_f = frames if fold else 1

        def net(mod, role):
            return ResNet(c[role + "_depth"], 1 if mod == "audio" else vis_in, c["width"], c["classes"],
                          1 if mod == "audio" else vis_f)

        self.nets = {}
        self.fmod = {}
        method = c["method"]
        if method == "pretrain":
            self.nets["teacher"] = net(c["teacher"], "teacher")
        else:
            self.nets["student"] = net(c["student"], "student")
            if method != "none":
                self.nets["teacher"] = net(c["teacher"], "teacher")
            if method == "c2kd":
                for g in ("student", "teacher"):
                    n = self.nets[g]
                    self.nets[g + "_proxy"] = Proxy(c["proxy"], n.l3_channels, c["classes"], n.frames)
            if method == "shake":
                t = self.nets["teacher"]
                ch = [t.l3_channels // 2, t.l3_channels, t.l3_channels * 2]
                self.nets["shadow"] = Shadow(*ch, t.frames)
            if method == "review":
                t, st = self.nets["teacher"], self.nets["student"]
                cs = [st.l3_channels // 4, st.l3_channels // 2, st.l3_channels, st.l3_channels * 2, st.l3_channels * 2]
                ct = [t.l3_channels // 4, t.l3_channels // 2, t.l3_channels, t.l3_channels * 2, t.l3_channels * 2]
                self.nets["review"] = Review(cs, ct, min(8 * c["width"], cs[-1]))
        for g, m in self.nets.items():
            m.to(dtype)
            set_tags(m, g)

    def load(self, path):
        with h5py.File(path, "r") as f:
            for g, m in self.nets.items():
                sd = {k: torch.from_numpy(np.asarray(f[g][k])) for k in f[g].keys()}
                m.load_state_dict(sd, strict=True)

    def trained_params(self):
        """(name, parameter) of everything the optimiser updates."""
        c = self.cfg
        out = []
        for g, m in self.nets.items():
            for k, p in m.named_parameters():
                if g == "teacher" and c["method"] != "pretrain":
                    if c["method"] in ("kd", "nkd", "shake", "review") or c["teacher_update"] == "frozen":
                        continue
                    if c["teacher_update"] == "top" and not (k.startswith("layer4.") or k.startswith("fc.")):
                        continue
                out.append((g + "/" + k, p))
        return out

    def step_losses(self, xa, xv, y, keep=None):
        """Forward in train mode; returns (terms dict, outputs dict). keep: c2kd's
        selection mask to use instead of the one from this forward's own tau (the
        float32 control takes float64's, a discrete decision like the kinks)."""
        c = self.cfg
        x = {"audio": xa, "visual": xv}
        method = c["method"]
        terms, outs = {}, {}
        teacher_train = method == "pretrain" or (method == "c2kd" and c["teacher_update"] != "frozen")
        if "teacher" in self.nets:
            t = self.nets["teacher"]
            t.train(teacher_train)
            if teacher_train:
                zt, l3t = t(x[c["teacher"]])
            else:
                with torch.no_grad():
                    zt, l3t = t(x[c["teacher"]])
            outs["z_teacher"] = zt
        if "student" in self.nets:
            self.nets["student"].train()
            zs, l3s = self.nets["student"](x[c["student"]])
            outs["z_student"] = zs
        if method == "pretrain":
            terms["ce_teacher"] = F.cross_entropy(zt, y)
        elif method == "none":
            terms["ce_student"] = F.cross_entropy(zs, y)
        elif method == "kd":
            T = c["kd_temp"]
            terms["ce_student"] = F.cross_entropy(zs, y)
            terms["kd"] = T * T * kl(zt, zs, T)
        elif method == "nkd":
            terms["ce_student"] = F.cross_entropy(zs, y)
            terms["nkd"] = nkd(zt, zs, y, c["nkd_temp"], c["nkd_gamma"])
        elif method == "shake":
            t = self.nets["teacher"]
            sh = self.nets["shadow"]
            sh.train()
            h = sh([g.detach() for g in t.stages], t.fc.weight.detach(), t.fc.bias.detach())
            outs["h_shadow"] = h
            T = c["kd_temp"]
            ns, nz, nh = shake_norm(zs), shake_norm(zt), shake_norm(h)
            terms["ce_student"] = F.cross_entropy(ns, y)
            terms["kl_student_to_shadow"] = T * T * kl(ns, nh, T)  # DistillKL(pred, logit_s.detach())
            terms["kl_shadow_to_student"] = T * T * kl(nh, ns, T)  # DistillKL(logit_s, pred.detach())
            terms["ce_shadow"] = F.cross_entropy(nh, y)
            terms["mse_shadow_teacher"] = F.mse_loss(nh, nz.detach())
        elif method == "review":
            rv = self.nets["review"]
            rv.train()
            ft = [f.detach() for f in review_levels(self.nets["teacher"])]
            os_ = rv(review_levels(self.nets["student"]), [tuple(f.shape[-2:]) for f in ft])
            terms["ce_student"] = F.cross_entropy(zs, y)
            for name, a, b in zip(("hcl_layer1", "hcl_layer2", "hcl_layer3", "hcl_layer4", "hcl_pool"), os_, ft):
                terms[name] = hcl_level(a, b)
        else:
            for g in ("student_proxy", "teacher_proxy"):
                self.nets[g].train()
            feat_t = l3t if c["teacher_update"] == "full" else l3t.detach()
            pt = self.nets["teacher_proxy"](feat_t)
            ps = self.nets["student_proxy"](l3s)
            outs["p_teacher"], outs["p_student"] = pt, ps
            tau, own = kendall_keep(pt, ps, c["omega"])
            keep = own if keep is None else keep
            outs["tau"], outs["keep"] = tau, keep
            kp = torch.from_numpy(keep.astype(np.float64)).to(pt.dtype)
            l1, l2, l3 = c["lambda1"], c["lambda2"], c["lambda3"]
            terms["ce_teacher"] = F.cross_entropy(zt, y)
            terms["kl_teacher_to_proxy"] = l1 * kl(zt, pt)
            terms["kl_proxy_to_teacher"] = l1 * kl(pt, zt)
            terms["nt_teacher_proxy"] = l3 * nt_kl(ps, pt, y, kp)
            terms["ce_student"] = F.cross_entropy(zs, y)
            terms["kl_student_to_proxy"] = l2 * kl(zs, ps)
            terms["kl_proxy_to_student"] = l2 * kl(ps, zs)
            terms["nt_student_proxy"] = l3 * nt_kl(pt, ps, y, kp)
        return terms, outs

    def state(self):
        """name -> numpy array of every parameter and float buffer."""
        out = {}
        for g, m in self.nets.items():
            for k, v in m.state_dict().items():
                if not k.endswith("num_batches_tracked"):
                    out[g + "/" + k] = v.detach().numpy().copy()
        return out


def default_cfg(**kw):
    cfg = dict(method="c2kd", student="visual", teacher="audio", depth=18, width=8, classes=5, batch=8,
               bins=64, time=100, image=64, frames=1, fold=False, proxy="fa", teacher_update="full",
               omega=0.0, steps=5, lr=0.05, lambda1=1.0, lambda2=1.0, lambda3=1.0, kd_temp=4.0,
               nkd_gamma=1.5, nkd_temp=1.0, momentum=0.9, seed=1)
    cfg.update(kw)
    # depth: both networks; student_depth / teacher_depth override it
    cfg.setdefault("student_depth", cfg["depth"])
    cfg.setdefault("teacher_depth", cfg["depth"])
    cfg["teacher"] = "audio" if cfg["student"] == "visual" else "visual"
    return cfg


def stepcheck_args(cfg):
    """Command-line options of tests/tools/stepcheck for cfg."""
    a = ["--method", cfg["method"], "--student", cfg["student"],
         "--student-depth", cfg["student_depth"], "--teacher-depth", cfg["teacher_depth"],
         "--width", cfg["width"], "--classes", cfg["classes"], "--batch", cfg["batch"],
         "--bins", cfg["bins"], "--time", cfg["time"], "--image", cfg["image"],
         "--frames", cfg["frames"], "--proxy", cfg["proxy"], "--teacher-update", cfg["teacher_update"],
         "--omega", cfg["omega"], "--steps", cfg["steps"], "--lr", cfg["lr"], "--seed", cfg["seed"],
         "--kink-band", KINK_BAND]
    if cfg["fold"]:
        a.append("--fold")
    return [str(v) for v in a]


def relerr(c, r, floor=1e-12):
    """max |c - r| / max(max |r|, floor)."""
    c = np.asarray(c, dtype=np.float64).ravel()
    r = np.asarray(r, dtype=np.float64).ravel()
    scale = max(float(np.max(np.abs(r))) if r.size else 0.0, floor)
    return float(np.max(np.abs(c - r))) / scale if r.size else 0.0


def maxabs(a):
    a = np.asarray(a)
    return float(np.max(np.abs(a))) if a.size else 0.0


# Tolerances: the rule of tests/oracle/tolerance.py (docs/TESTING.md): C's error
# against float64 at most K x the error of PyTorch float32 (the same networks,
# the same recorded kink decisions and selection mask) + FLOOR, per tensor,
# relative to the tensor's scale. The scale floors below only say what "the
# tensor's scale" is for tensors that are ~0 in exact arithmetic.
TERM_FLOOR = 1e-2   # a loss term's scale: max(|term|, this)
GRAD_FLOOR = 1e-4   # gradients, momenta, updates: max(max |ref|, this x the network's largest)
VALUE_FLOOR = 1e-2  # parameters and running statistics: max(max |ref|, this)
KINK_BAND = 1e-4    # stepcheck records decisions within this x max |x| of a kink (Kinks)


def load_state(sysm, opt, params, path):
    """Weights, running statistics and momenta of a C checkpoint into the reference."""
    with h5py.File(path, "r") as f:
        for g, m in sysm.nets.items():
            sd = {k: torch.from_numpy(np.asarray(f[g][k])) for k in f[g].keys()}
            m.load_state_dict(sd, strict=True)
        for n, p in params:
            opt.state[p]["momentum_buffer"] = torch.from_numpy(np.asarray(f["momentum/" + n])).to(sysm.dtype).clone()


def rank_dirs(run_dir, world):
    """Where each rank's files are: run_dir itself for one process, run_dir/rank<r> under mpirun."""
    return [run_dir] if world == 1 else [f"{run_dir}/rank{r}" for r in range(world)]


def share(t, r, world, frames=1):
    """Rank r's samples i (i mod world == r) of a batch tensor whose rows are samples x frames."""
    if world == 1:
        return t
    v = t.reshape(t.shape[0] // frames, frames, *t.shape[1:])[r::world]
    return v.reshape(-1, *t.shape[1:])


def _np(v):
    return v.detach().numpy().copy() if isinstance(v, torch.Tensor) else v


def replay(run_dir, cfg, world, dtype, keeps=None):
    """The reference's steps of run_dir in dtype (see compare). Returns (steps, evals):
    steps[k] = dict(terms, total, outs[rank], grads, start, st[rank], mom, nbt, kinks[rank]),
    evals[rank] = {group: eval-mode logits}. keeps[k][rank]: c2kd's selection masks to use."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sysm = System(cfg, dtype)
    params = sysm.trained_params()
    pnames = {n for n, _ in params}
    opt = torch.optim.SGD([p for _, p in params], lr=cfg["lr"], momentum=cfg["momentum"])
    dirs = rank_dirs(run_dir, world)
    vf = cfg["frames"] if cfg["fold"] else 1
    with h5py.File(f"{run_dir}/batch.h5", "r") as fb:
        A = np.asarray(fb["audio"])
        V = np.asarray(fb["visual"])
        Y = np.asarray(fb["labels"]).astype(np.int64)
    steps = []
    for k in range(cfg["steps"]):
        tag = f"step {k + 1}"
        terms_r, outs_r, grads_r, bufs_r, kinks_r = [], [], [], [], []
        for r, d in enumerate(dirs):
            load_state(sysm, opt, params, f"{run_dir}/init.h5" if k == 0 else f"{d}/ckpt_{k}.h5")
            xa = torch.from_numpy(share(A[k], r, world)).to(dtype)
            xv = torch.from_numpy(share(V[k], r, world, vf)).to(dtype)
            y = torch.from_numpy(share(Y[k], r, world))
            rtag = tag if world == 1 else f"{tag} rank {r}"
            with h5py.File(f"{d}/step_{k + 1}.h5", "r") as f:
                KINKS.load(f, check=keeps is None)
            try:
                terms, outs = sysm.step_losses(xa, xv, y, None if keeps is None else keeps[k][r])
            finally:
                KINKS.clear()
            opt.zero_grad(set_to_none=False)
            sum(terms.values()).backward()
            grads_r.append({n: (p.grad.detach().numpy().astype(np.float64) if p.grad is not None
                                else np.zeros(p.shape)) for n, p in params})
            terms_r.append({n: float(v) for n, v in terms.items()})
            outs_r.append({n: _np(v) for n, v in outs.items()})
            bufs_r.append({n: v for n, v in sysm.state().items() if n not in pnames})
            kinks_r.append(kink_rows(rtag))
        # DDP: the gradients and the loss terms averaged over ranks
        grads = {n: sum(g[n] for g in grads_r) / world for n in grads_r[0]}
        terms = {n: sum(t[n] for t in terms_r) / world for n in terms_r[0]}
        for n, p in params:
            p.grad = torch.from_numpy(grads[n].copy()).to(dtype)
        start = {n: p.detach().numpy().astype(np.float64) for n, p in params}  # = the C state (loaded)
        opt.step()
        st = sysm.state()
        sts = []
        for r in range(len(dirs)):
            st_r = dict(st)
            st_r.update(bufs_r[r])
            sts.append({n: v.astype(np.float64) for n, v in st_r.items()})
        mom = {n: opt.state[p]["momentum_buffer"].numpy().astype(np.float64) for n, p in params}
        nbt = {g: sorted({int(v) for kk, v in m.state_dict().items() if kk.endswith("num_batches_tracked")})
               for g, m in sysm.nets.items()}
        steps.append(dict(terms=terms, total=sum(terms.values()), outs=outs_r, grads=grads, start=start,
                          st=sts, mom=mom, nbt=nbt, kinks=kinks_r))
    # Evaluation-mode forward of batch 0 (each rank's share) from the final state.
    evals = []
    for r, d in enumerate(dirs):
        load_state(sysm, opt, params, f"{d}/ckpt_{cfg['steps']}.h5")
        ev = {}
        with torch.no_grad():
            x = {"audio": torch.from_numpy(share(A[0], r, world)).to(dtype),
                 "visual": torch.from_numpy(share(V[0], r, world, vf)).to(dtype)}
            for g in ("student", "teacher"):
                if g in sysm.nets:
                    m = sysm.nets[g]
                    m.eval()
                    ev[g] = m(x[cfg[g]])[0].numpy().astype(np.float64)
        evals.append(ev)
    return steps, evals


def compare(run_dir, cfg, world=1):
    """Replays run_dir in float64 and in float32 and returns rows (what, error, tolerance).

    Every step starts from the state the C side saved after the previous step
    (ckpt_{K-1}.h5, momenta included; init.h5 for step 1): free-running float32
    and float64 trajectories separate after a few steps whatever the
    implementation (a ReLU or max-pool decision flips and the gradient of an
    early layer changes by percents), so each step is compared from the same
    starting point, which also proves that the checkpoint holds the whole
    optimiser state. Within a step, decisions at a kink are C's (Kinks):
    rows report how many were recorded and how many of them float64 would
    have taken otherwise, and fail if an activation lacks its record or a
    float64 near-kink element was not recorded.

    The float32 replay (PyTorch float32, oneDNN off: tolerance.torch_float32_safe)
    takes the same kink decisions and float64's selection mask, so it differs
    from float64 by rounding only: each tensor's tolerance is K x its error +
    FLOOR (tests/oracle/tolerance.py). Selection mask, kept fraction and tau are
    exact comparisons (discrete, or rational in the ranks).

    world > 1: a stepcheck run under mpirun -np world, replayed with
    DistributedDataParallel's semantics: each rank's share of the batch
    (samples i mod world == r) through the networks in train mode with its
    own batch-norm statistics (and its own running statistics, from its own
    checkpoint), its loss and gradients; the gradients (and the loss terms)
    averaged over ranks; one SGD step. Every rank's files are compared: its
    forward outputs, the averaged terms and gradients, the parameters and
    momenta after the step, its running statistics."""
    T.torch_float32_safe()
    s64, e64 = replay(run_dir, cfg, world, torch.float64)
    keeps = [[o.get("keep") for o in st["outs"]] for st in s64]
    s32, e32 = replay(run_dir, cfg, world, torch.float32, keeps)
    rows = []
    dirs = rank_dirs(run_dir, world)
    for k in range(cfg["steps"]):
        for r, d in enumerate(dirs):
            rtag = f"step {k + 1}" if world == 1 else f"step {k + 1} rank {r}"
            rows += s64[k]["kinks"][r]
            rows += step_rows(f"{d}/step_{k + 1}.h5", rtag, s64[k], s32[k], r)
            rows += state_rows(f"{d}/ckpt_{k + 1}.h5", rtag, s64[k], s32[k], r)
    for r, d in enumerate(dirs):
        with h5py.File(f"{d}/eval.h5", "r") as f:
            for g in ("student", "teacher"):
                if g in e64[r] and f"z_{g}" in f:
                    rows.append(T.row(f"eval z_{g}" + ("" if world == 1 else f" rank {r}"), f[f"z_{g}"][()],
                                      e32[r][g], e64[r][g]))
    return rows


def gfloor(gr):
    """Per network: GRAD_FLOOR x its largest gradient (a gradient that is 0 in exact
    arithmetic, like a BN bias followed by another BN, is float32 noise on the C side)."""
    top = {}
    for n, g in gr.items():
        grp = n.split("/")[0]
        top[grp] = max(top.get(grp, 0.0), maxabs(g))
    return {n: max(GRAD_FLOOR * top[n.split("/")[0]], 1e-30) for n in gr}


def kink_rows(tag):
    """The rows of the kink decisions of the forward pass just run (KINKS.stats)."""
    ks = KINKS.stats
    unused = sorted(set(KINKS.dec) - KINKS.used)
    return [
        (f"{tag} kink decisions recorded by C: {ks['recorded']}, taken from C where float64 "
         f"differs: {ks['overridden']} (relu {ks['relu']}, maxpool {ks['maxpool']})", 0.0, 0.0),
        (f"{tag} kink: activations without C's record {ks['missing']}, records without an "
         f"activation {unused}", float(len(ks["missing"]) + len(unused)), 0.0),
        (f"{tag} kink: float64 minus C's float32 at the recorded elements (in bands)", ks["dev"], 0.5),
        (f"{tag} kink: elements within half the band in float64 that C did not record", float(ks["uncovered"]), 0.0),
    ]


def step_rows(path, tag, a, b, r):
    """C's step_K.h5 (terms, rank r's outputs, gradients) against the float64
    replay a, each tolerance from the float32 replay b (tolerance.row)."""
    rows = []
    with h5py.File(path, "r") as f:
        cterms = dict(f["terms"].attrs)
        if set(cterms) != set(a["terms"]):
            rows.append((f"{tag} term names {sorted(cterms)} vs {sorted(a['terms'])}", 1.0, 0.0))
        outs, outs32 = a["outs"][r], b["outs"][r]
        heads = [n for n in ("z_student", "z_teacher", "p_student", "p_teacher", "h_shadow") if n in outs]
        # the loss terms are smooth functions of every rank's forward outputs (and, for
        # review, of the features upstream of them): their control error bounds the terms'
        e_in = max(T.err(o32[n], o[n]) for o, o32 in zip(a["outs"], b["outs"]) for n in heads)
        for n, rv in a["terms"].items():
            rows.append(T.row(f"{tag} term {n}", float(cterms.get(n, math.nan)), b["terms"][n], rv,
                              max(abs(rv), TERM_FLOOR), e_in))
        rows.append(T.row(f"{tag} total loss", float(f.attrs["loss"]), b["total"], a["total"],
                          max(abs(a["total"]), TERM_FLOOR), e_in))
        for n in heads:
            rows.append(T.row(f"{tag} {n}", f[n][()], outs32[n], outs[n]))
        if "keep" in outs:
            ck = np.asarray(f["keep"]) > 0.5
            rows.append((f"{tag} selection mask {ck.astype(int).tolist()} vs {outs['keep'].astype(int).tolist()}",
                         float(np.sum(ck != outs["keep"])), 0.0))
            kept = float(np.mean(np.concatenate([o["keep"] for o in a["outs"]])))
            rows.append((f"{tag} kept fraction", abs(float(f.attrs["kept"]) - kept), 1e-6))
            t_ref = np.nan_to_num(outs["tau"], nan=-9)
            t_c = np.nan_to_num(np.asarray(f["tau"], dtype=np.float64), nan=-9)
            rows.append((f"{tag} tau", float(np.max(np.abs(t_c - t_ref))), 1e-5))
        fl = gfloor(a["grads"])
        for n, g in a["grads"].items():
            rows.append(T.row(f"{tag} grad {n}", f["grad/" + n][()], b["grads"][n], g, max(maxabs(g), fl[n])))
    return rows


def state_rows(path, tag, a, b, r):
    """C's ckpt_K.h5 (parameters, SGD updates, momenta, running statistics of rank r)
    against the float64 replay a, each tolerance from the float32 replay b."""
    rows = []
    st, st32 = a["st"][r], b["st"][r]
    with h5py.File(path, "r") as f:
        upd = {n: st[n] - a["start"][n] for n in a["start"]}
        ufl = gfloor(upd)
        mfl = gfloor(a["mom"])
        for n, v in st.items():
            if n in upd:  # the SGD update, C's (after - before) against the reference's
                rows.append(T.row(f"{tag} update {n}", np.asarray(f[n], dtype=np.float64) - a["start"][n],
                                  st32[n] - b["start"][n], upd[n], max(maxabs(upd[n]), ufl[n])))
            rows.append(T.row(f"{tag} value {n}", f[n][()], st32[n], v, max(maxabs(v), VALUE_FLOOR)))
        for n, v in a["mom"].items():
            rows.append(T.row(f"{tag} momentum {n}", f["momentum/" + n][()], b["mom"][n], v, max(maxabs(v), mfl[n])))
        for g, ref in a["nbt"].items():
            nbt = sorted({int(f[g][k][()]) for k in f[g].keys() if k.endswith("num_batches_tracked")})
            rows.append((f"{tag} {g} num_batches_tracked {nbt} vs {ref}", float(nbt != ref), 0.0))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--method", default="c2kd")
    ap.add_argument("--student", default="visual")
    ap.add_argument("--fold", action="store_true")
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--proxy", default="fa")
    ap.add_argument("--teacher-update", default="full")
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--student-depth", type=int)
    ap.add_argument("--teacher-depth", type=int)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--all", action="store_true", help="print every row, not only the worst")
    a = ap.parse_args()
    cfg = default_cfg(method=a.method, student=a.student, fold=a.fold, frames=a.frames, proxy=a.proxy,
                      teacher_update=a.teacher_update, depth=a.depth, steps=a.steps,
                      student_depth=a.student_depth or a.depth, teacher_depth=a.teacher_depth or a.depth)
    rows = compare(a.run_dir, cfg)
    for what, e, tol in rows:
        if a.all or e > tol or "kink decisions" in what:
            print(f"{'FAIL' if e > tol else 'ok  '} {e:.3g} (tol {tol:g}) {what}")
    print(f"{sum(e > tol for _, e, tol in rows)} failures in {len(rows)} comparisons")


if __name__ == "__main__":
    main()
