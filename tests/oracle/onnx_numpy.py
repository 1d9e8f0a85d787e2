"""A small ONNX interpreter in numpy (float64) for the operators torch.onnx.export writes
for the networks of c2kd.load_model: an independent check that an exported .onnx file
computes the network (no onnxruntime in Debian). The graph is read with the `onnx`
module (python3-onnx); every operator is written here from the ONNX operator spec."""
import numpy as np
from onnx import numpy_helper


def _attrs(node):
    out = {}
    for a in node.attribute:
        if a.type == a.INT:
            out[a.name] = a.i
        elif a.type == a.INTS:
            out[a.name] = list(a.ints)
        elif a.type == a.FLOAT:
            out[a.name] = a.f
        elif a.type == a.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
    return out


def _pad(x, pads, value=0.0):
    n = x.ndim - 2
    width = [(0, 0), (0, 0)] + [(pads[i], pads[i + n]) for i in range(n)]
    return np.pad(x, width, constant_values=value)


def _windows(x, k, s):
    """x [N, C, H, W] -> [N, C, Ho, Wo, kh, kw] (strided views)."""
    N, C, H, W = x.shape
    Ho, Wo = (H - k[0]) // s[0] + 1, (W - k[1]) // s[1] + 1
    st = x.strides
    return np.lib.stride_tricks.as_strided(x, (N, C, Ho, Wo, k[0], k[1]),
                                           (st[0], st[1], st[2] * s[0], st[3] * s[1], st[2], st[3]))


def conv(x, w, b, a):
    assert a.get("group", 1) == 1 and a.get("dilations", [1, 1]) == [1, 1]
    k = w.shape[2:]
    xp = np.ascontiguousarray(_pad(x, a.get("pads", [0, 0, 0, 0])))
    win = _windows(xp, k, a.get("strides", [1, 1]))  # N C Ho Wo kh kw
    y = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
    return y + b[None, :, None, None] if b is not None else y


def maxpool(x, a):
    xp = np.ascontiguousarray(_pad(x, a.get("pads", [0, 0, 0, 0]), -np.inf))
    return _windows(xp, a["kernel_shape"], a.get("strides", [1, 1])).max(axis=(4, 5))


def run(model, x):
    """Runs the graph of an onnx ModelProto on input x (numpy); returns the first output."""
    g = model.graph
    env = {t.name: numpy_helper.to_array(t).astype(np.float64) if numpy_helper.to_array(t).dtype.kind == "f"
           else numpy_helper.to_array(t) for t in g.initializer}
    env[g.input[0].name] = np.asarray(x, np.float64)
    for n in g.node:
        a = _attrs(n)
        i = [env[v] if v else None for v in n.input]
        op = n.op_type
        if op == "Conv":
            y = conv(i[0], i[1], i[2] if len(i) > 2 else None, a)
        elif op == "BatchNormalization":
            xx, sc, bi, mu, var = i
            sh = (1, -1) + (1,) * (xx.ndim - 2)
            y = (xx - mu.reshape(sh)) / np.sqrt(var.reshape(sh) + a.get("epsilon", 1e-5)) * sc.reshape(sh) + bi.reshape(sh)
        elif op == "Relu":
            y = np.maximum(i[0], 0)
        elif op == "MaxPool":
            y = maxpool(i[0], a)
        elif op == "Add":
            y = i[0] + i[1]
        elif op == "GlobalAveragePool":
            y = i[0].mean(axis=tuple(range(2, i[0].ndim)), keepdims=True)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            y = i[0].reshape(int(np.prod(i[0].shape[:ax])), -1)
        elif op == "Gemm":
            A = i[0].T if a.get("transA", 0) else i[0]
            B = i[1].T if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * A @ B + (a.get("beta", 1.0) * i[2] if len(i) > 2 else 0)
        elif op == "Constant":
            y = a["value"]
        elif op == "Shape":
            y = np.array(i[0].shape, np.int64)
        elif op == "Gather":
            y = np.take(i[0], i[1], axis=a.get("axis", 0))
        elif op == "Unsqueeze":
            y = i[0]
            for ax in sorted(int(v) for v in np.atleast_1d(i[1] if len(i) > 1 else a["axes"])):
                y = np.expand_dims(y, ax)
        elif op == "Concat":
            y = np.concatenate([np.atleast_1d(v) for v in i], axis=a["axis"])
        elif op == "Reshape":
            shape = [int(v) for v in i[1]]
            shape = [i[0].shape[k] if v == 0 else v for k, v in enumerate(shape)]
            y = i[0].reshape(shape)
        elif op == "ReduceMean":
            axes = a.get("axes", list(i[1]) if len(i) > 1 and i[1] is not None else None)
            y = i[0].mean(axis=tuple(axes), keepdims=bool(a.get("keepdims", 1)))
        elif op == "Cast":
            y = i[0]
        else:
            raise NotImplementedError(f"ONNX operator {op} (node {n.name}) not in the reference interpreter")
        env[n.output[0]] = y
    return env[g.output[0].name]
