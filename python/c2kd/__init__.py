"""c2kd: the Python side of the c2kd pipeline (docs in python/README.md).

- ShardDataset, ShardSplit, ShardError: read the shards `ingest` writes, prepared as
  `train`'s loader prepares them (module c2kd_shards, re-exported here).
- load_model(ckpt, network="student"): a checkpoint of `train` as a torchvision ResNet
  with its weights (needs torch and torchvision).
- export(ckpt, "model.pt" | "model.onnx"): TorchScript or ONNX through torch.
- predict(model, data, split): the model's probabilities on a split, as `train --eval`.
- python -m c2kd.tb RUN / python -m c2kd.csv RUN: a run's metrics.jsonl as TensorBoard
  event files / CSV.
"""
from c2kd_shards import ShardDataset, ShardError, ShardSplit  # noqa: F401

__version__ = "0.1"

__all__ = ["ShardDataset", "ShardSplit", "ShardError", "load_model", "read_checkpoint", "export", "predict",
           "__version__"]


def __getattr__(name):  # torch is imported only when a model is asked for
    if name in ("load_model", "read_checkpoint", "predict", "C2KDResNet"):
        from c2kd import model
        return getattr(model, name)
    if name in ("export", "example_input"):
        from c2kd import export_model
        return getattr(export_model, name)
    raise AttributeError(f"module 'c2kd' has no attribute {name!r}")
