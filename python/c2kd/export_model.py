"""export(ckpt, path): a checkpoint's network as TorchScript (.pt) or ONNX (.onnx).

Both go through torch only: TorchScript by torch.jit.script of the model load_model
builds, ONNX by torch.onnx.export (opset 13, the batch dimension dynamic, batch norm in
evaluation mode). Writing ONNX needs no other package; checking the file
(onnx.checker) needs the `onnx` module, used when importable.

    python -m c2kd.export_model RUN/best.h5 model.pt [--network teacher]
"""
import argparse
import os
import sys

import torch

from c2kd.model import load_model

__all__ = ["export", "example_input"]


def example_input(model, batch=2):
    """A zero input of the model's shape (from its checkpoint's config)."""
    c = model.config
    if model.modality == "audio":
        return torch.zeros(batch, 1, int(c["spec_bins"]), int(c["spec_frames"]))
    S, F = int(c["image_size"]), int(c["frames"])
    if c["visual_mode"] == "fold":
        return torch.zeros(batch, F, 3, S, S)
    return torch.zeros(batch, 3 * F, S, S)


def export(ckpt, path, network="student", opset=13):
    """Writes the network of ckpt to path: ".pt" TorchScript (torch.jit.load(path)),
    ".onnx" ONNX with input "input" and output "logits" (batch dimension "batch").
    Returns path. Written under a temporary name and renamed."""
    model = load_model(ckpt, network)
    ext = os.path.splitext(path)[1].lower()
    tmp = path + ".tmp"
    try:
        if ext == ".pt":
            torch.jit.save(torch.jit.script(model), tmp)
        elif ext == ".onnx":
            x = example_input(model)
            torch.onnx.export(model, x, tmp, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                              training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
            try:
                import onnx
            except ImportError:
                onnx = None
            if onnx is not None:
                onnx.checker.check_model(onnx.load(tmp))
        else:
            raise ValueError(f"{path}: the name must end in .pt (TorchScript) or .onnx")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m c2kd.export_model", description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", help="a checkpoint of train, e.g. RUN/best.h5")
    ap.add_argument("out", help="model.pt (TorchScript) or model.onnx")
    ap.add_argument("--network", default="student", choices=("student", "teacher"))
    a = ap.parse_args(argv)
    try:
        export(a.ckpt, a.out, a.network)
    except (OSError, KeyError, ValueError) as e:
        print(f"c2kd.export_model: {a.ckpt}: {e}", file=sys.stderr)
        return 1
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
