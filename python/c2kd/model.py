"""Checkpoints of `train` (docs/FORMAT.md, "Checkpoints") as torchvision ResNets.

A checkpoint holds each network as a group of PyTorch state_dict names (torchvision's
ResNet layout) and its shapes in the root attribute `config`. load_model builds
torchvision's ResNet-18/50 with the run's base width (torchvision fixes 64; the stem and
the four stages are rebuilt with torchvision's own blocks and _make_layer for another
width, so every state_dict name and shape stays torchvision's), the input channels of the
network's modality (audio: 1; visual frames stacked on channels: 3F; folded into the
batch: 3) and the classes, and loads the weights strictly.

Frames folded into the batch (config visual_mode "fold", F frames per sample) are run
through the network one by one and their pooled features averaged before `fc`, as train's
networks do: the model then takes [B, F, 3, S, S] (what ShardDataset yields).
"""
import json

import h5py
import numpy as np
import torch
import torchvision
from torch import nn

__all__ = ["read_checkpoint", "load_model", "C2KDResNet", "predict", "state_dict"]


def _text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray):
        return _text(v[()] if v.shape == () else v.tolist())
    return str(v)


def read_checkpoint(ckpt):
    """(config, identity) of a checkpoint: its `config` attribute (the networks' shapes,
    modalities, method) and its data identity (the `recipe` attribute: dataset, classes,
    frames_per_sample, ...; {} when absent), both parsed JSON."""
    with h5py.File(ckpt, "r") as f:
        if "config" not in f.attrs:
            raise ValueError(f"{ckpt}: no config attribute (not a checkpoint of train)")
        config = json.loads(_text(f.attrs["config"]))
        ident = json.loads(_text(f.attrs["recipe"])) if "recipe" in f.attrs else {}
    return config, ident


def state_dict(ckpt, network="student"):
    """The group `network` of a checkpoint as a PyTorch state_dict (float32 tensors;
    num_batches_tracked an int64 scalar tensor)."""
    out = {}
    with h5py.File(ckpt, "r") as f:
        if network not in f:
            raise KeyError(f"{ckpt}: no group {network}/ (groups: {', '.join(sorted(f.keys()))})")
        g = f[network]
        for k in g:
            v = g[k][()]
            out[k] = torch.as_tensor(np.asarray(v))  # as_tensor: the scalar num_batches_tracked too
    return out


class C2KDResNet(torchvision.models.ResNet):
    """torchvision's ResNet with train's base width, input channels and frame folding."""

    def __init__(self, depth, width, in_channels, num_classes, frames=1):
        if depth not in (18, 50):
            raise ValueError(f"depth {depth}: 18 or 50")
        block = torchvision.models.resnet.BasicBlock if depth == 18 else torchvision.models.resnet.Bottleneck
        layers = [2, 2, 2, 2] if depth == 18 else [3, 4, 6, 3]
        super().__init__(block, layers, num_classes=num_classes)
        # another base width: the same modules at width, 2, 4, 8 x width (names unchanged)
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)
        self.frames = int(frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fold = x.dim() == 5  # [B, F, 3, S, S]: frames folded into the batch
        frames = x.shape[1] if fold else 1
        if fold:
            x = x.flatten(0, 1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        if fold:  # the frames' features averaged per sample
            x = x.reshape(-1, frames, x.shape[1]).mean(1)
        return self.fc(x)


def _network_config(config, network):
    if network not in ("student", "teacher"):
        raise ValueError(f"network {network!r}: 'student' or 'teacher'")
    if network == "student" and config.get("pretrain"):
        raise ValueError("the checkpoint is a --pretrain run's: it holds the teacher only (network='teacher')")
    modality = config[network]
    depth = config[f"{network}_depth"]
    F = int(config["frames"])
    fold = modality == "visual" and config["visual_mode"] == "fold"
    in_channels = 1 if modality == "audio" else (3 if fold else 3 * F)
    return modality, depth, in_channels, (F if fold else 1)


def load_model(ckpt, network="student", map_location="cpu"):
    """The network `network` ("student" or "teacher") of checkpoint ckpt (e.g. RUN/best.h5)
    as a torchvision ResNet (C2KDResNet) in eval mode, weights loaded strictly.

    Input: audio [B, 1, bins, T]; visual [B, 3F, S, S] (stack) or [B, F, 3, S, S] (fold),
    as ShardDataset prepares them. Output: logits [B, classes]. The model also carries
    `config` (the checkpoint's), `classes` (names, when the checkpoint records them),
    `modality` and `network`."""
    config, ident = read_checkpoint(ckpt)
    modality, depth, in_ch, F = _network_config(config, network)
    model = C2KDResNet(depth, int(config["width"]), in_ch, int(config["n_classes"]), F)
    sd = state_dict(ckpt, network)
    if "bn1.num_batches_tracked" not in sd:  # optional in files written by PyTorch converters
        sd.update({k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")})
    model.load_state_dict(sd, strict=True)
    model.config, model.modality, model.network = config, modality, network
    model.classes = list(ident.get("classes", []))
    return model.to(map_location).eval()


def predict(model, data, split="test", batch_size=64, num_workers=0):
    """Runs model (from load_model) on a split of an ingested folder, prepared as train's
    evaluation prepares it: dict(ids, labels, logits [N, C] float32, probs [N, C] float64,
    pred [N]) in split order."""
    from c2kd_shards import ShardDataset

    c = model.config
    ds = ShardDataset(data, split, image_size=int(c["image_size"]), visual_mode=c["visual_mode"],
                      audio=model.modality == "audio", visual=model.modality == "visual")
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    device = next(model.parameters()).device
    logits, labels, index = [], [], []
    with torch.no_grad():
        for b in loader:
            logits.append(model(b[model.modality].to(device)).cpu())
            labels.append(b["label"])
            index.append(b["index"])
    z = torch.cat(logits)
    idx = torch.cat(index).numpy()
    split_ = ds.data
    ids = []
    for i in idx:
        k, j = split_.locate(int(i))
        ids.append(str(split_.shards[k].ids[j]))
    probs = torch.softmax(z.double(), 1).numpy()
    return {"ids": ids, "labels": torch.cat(labels).numpy(), "logits": z.numpy(), "probs": probs,
            "pred": z.argmax(1).numpy()}
