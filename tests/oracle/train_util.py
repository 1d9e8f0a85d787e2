"""Helpers of the train command's oracle tests: tiny shards written with h5py
and PIL only (the shard format of docs/FORMAT.md), and independent
re-implementations of the loader's evaluation transform."""
import io
import json
import os
import struct
import zlib

import h5py
import numpy as np
from PIL import Image

DEFAULT_RECIPE = {"spectro": {"sample_rate": 16000, "window": 512, "overlap": 353, "normalize": "none"},
                  "frames": {"count": 1, "short_side": 0, "quality": 90}}


def metrics(run_dir):
    """RUN/metrics.jsonl as a list of records, wall-clock measures removed (runs compared record by record)."""
    out = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            for k in ("seconds", "time", "samples_per_second"):
                j.pop(k, None)
            out.append(j)
    return out


def eval_losses_apart(records):
    """(records without the evaluation losses "val_loss_*" / "test_loss_*", those losses in
    order): runs whose evaluation batches differ (one process against ranks sharing the
    split) compute each sample's float32 logits in other batches, so their mean losses
    agree to float32 rounding only, while every count-based figure is exact."""
    rest, losses = [], []
    for r in records:
        r = dict(r)
        for k in [k for k in r if k.startswith(("val_loss_", "test_loss_"))]:
            losses.append(r.pop(k))
        rest.append(r)
    return rest, losses


def class_image(label, sample, w, h, rng):
    """An RGB image whose colour and stripes depend on the class (learnable)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    img[..., label % 3] = 160 + 60 * np.sin(x * (label + 1) * 0.4)
    img[..., (label + 1) % 3] = 80 + 40 * np.cos(y * 0.3 * (label + 2))
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(img, quality=90):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def record_crc(sid, label, segment, frame_time, frames):
    """crc32/record of docs/FORMAT.md (version 2)."""
    b = sid.encode() + b"\0" + struct.pack("<i", int(label)) + np.asarray(segment, "<f4").tobytes()
    b += np.asarray(frame_time, "<f4").tobytes() + b"".join(struct.pack("<Q", len(j)) for j in frames)
    return zlib.crc32(b + b"".join(frames))


def fixed_strings(values):
    """Values as one fixed-length UTF-8 string array (the strings of format version 2)."""
    enc = [v.encode("utf-8") for v in values]
    return np.array(enc, dtype=h5py.string_dtype("utf-8", max([1] + [len(b) for b in enc])))


def put_str(f, name, value, version):
    """A string attribute: variable-length in version 1, fixed-length in version 2 (docs/FORMAT.md)."""
    if version >= 2:
        b = value.encode("utf-8")
        f.attrs.create(name, b, dtype=h5py.string_dtype("utf-8", max(1, len(b))))
    else:
        f.attrs[name] = value


def write_shard(path, split, ids, labels, specs, jpegs, classes, F, recipe, dataset="tiny", dtype=np.float16,
                version=1):
    """jpegs: list over samples of lists of F JPEG byte strings. version 2 adds the CRC-32 checksums."""
    n = len(ids)
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        put_str(f, "format", "c2kd-shard", version)
        f.attrs["version"] = version
        put_str(f, "dataset", dataset, version)
        put_str(f, "split", split, version)
        f.attrs["classes"] = fixed_strings(classes) if version >= 2 else np.array(classes, dtype=h5py.string_dtype())
        f.attrs["frames_per_sample"] = F
        put_str(f, "recipe", json.dumps(recipe), version)
        put_str(f, "tool_version", "test", version)
        put_str(f, "spec_dtype", np.dtype(dtype).name, version)
        f.create_dataset("id", data=fixed_strings(ids) if version >= 2 else np.array(ids, dtype=h5py.string_dtype()))
        f.create_dataset("label", data=np.asarray(labels, np.int32))
        bins, T = specs.shape[1:]
        f.create_dataset("audio/spec", data=specs.astype(dtype) if n else np.zeros((0, bins, T), dtype),
                         chunks=(1, bins, T) if n else None, maxshape=(None, bins, T))
        flat = [b for per in jpegs for b in per]
        offs = np.zeros(len(flat) + 1, np.uint64)
        offs[1:] = np.cumsum([len(b) for b in flat]) if flat else []
        f.create_dataset("video/jpeg", data=np.frombuffer(b"".join(flat), np.uint8) if flat else np.zeros(0, np.uint8))
        f.create_dataset("video/offset", data=offs)
        f.create_dataset("segment", data=np.tile(np.array([0, 1], np.float32), (n, 1)).reshape(n, 2))
        f.create_dataset("frame_time", data=np.zeros((n, F), np.float32))
        if version >= 2:
            put_str(f, "checksum", "crc32", version)
            stored = specs.astype(dtype) if n else np.zeros((0, bins, T), dtype)
            f.create_dataset("crc32/spec", data=np.array([zlib.crc32(np.ascontiguousarray(stored[i]).astype(
                stored.dtype.newbyteorder("<")).tobytes()) for i in range(n)], np.uint32))
            f.create_dataset("crc32/record", data=np.array([record_crc(ids[i], labels[i], [0, 1], np.zeros(F),
                                                                       jpegs[i]) for i in range(n)], np.uint32))
    os.replace(tmp, path)


def shard_digest(path):
    """(digest, ids, version) of a shard as docs/FORMAT.md defines the digest: CRC-32 then
    Adler-32 (zlib) over, per sample, its id + NUL and crc32/record + crc32/spec (version 2)
    or the label (version 1), 4 bytes little endian each."""
    with h5py.File(path, "r") as f:
        ids = [x.decode() if isinstance(x, bytes) else x for x in f["id"][:]]
        ver = int(f.attrs["version"])
        if ver >= 2:
            tails = [struct.pack("<II", int(a), int(b)) for a, b in zip(f["crc32/record"][:], f["crc32/spec"][:])]
        else:
            tails = [struct.pack("<i", int(v)) for v in f["label"][:]]
    stream = b"".join(i.encode() + b"\0" + t for i, t in zip(ids, tails))
    return f"{zlib.crc32(stream):08x}{zlib.adler32(stream):08x}", ids, ver


def folder_digest(index):
    """index.json's "digest" (docs/FORMAT.md): over split names, shard files and digests, aliases."""
    parts = []
    for name, sp in index["splits"].items():
        parts.append(name)
        for e in sp["shards"]:
            parts += [e["file"], e["digest"]]
    for k, v in (index.get("aliases") or {}).items():
        parts += [k, v]
    stream = b"".join(p.encode() + b"\0" for p in parts)
    return f"{zlib.crc32(stream):08x}{zlib.adler32(stream):08x}"


def write_index(root, index):
    """Completes index (its "splits" -> {"shards": [{"file"}...]} and static fields) from the
    shards in root, as `store index` would (index_version 2: counts, versions, digests, ids,
    totals, folder digest), and writes root/index.json. Returns the index."""
    total = 0
    for sp in index["splits"].values():
        n = 0
        for e in sp["shards"]:
            d, ids, ver = shard_digest(os.path.join(root, e["file"]))
            e.update(count=len(ids), version=ver, digest=d, ids=[ids[0], ids[-1]] if ids else [])
            n += len(ids)
        sp["count"] = n
        total += n
    index["count"] = total
    index["index_version"] = 2
    index["digest"] = folder_digest(index)
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    if not os.path.exists(os.path.join(root, "failures.tsv")):
        open(os.path.join(root, "failures.tsv"), "w").close()
    return index


def make_dataset(root, counts=None, classes=("dog", "cat", "car"), F=1, bins=9, T=12, sizes=((40, 30), (33, 47)),
                 recipe=None, seed=0, shard_size=7, index=True, dtype=np.float16, version=1, drop=()):
    """Writes shards for each split in counts ({"train": 20, "val": 6, "test": 6})
    and index.json. Returns {split: [(id, label, spec, [jpeg...]) ...]} in shard order.
    version 2: with checksums. drop: ids left out of the shards (but not of the draws)."""
    counts = counts or {"train": 20, "val": 6, "test": 6}
    recipe = DEFAULT_RECIPE if recipe is None else recipe
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    out, idx = {}, {"format": "c2kd-shard", "version": version, "classes": list(classes), "recipe": recipe,
                    "frames_per_sample": F, "spec_shape": [bins, T], "spec_dtype": np.dtype(dtype).name,
                    "splits": {}}
    for split, n in counts.items():
        samples = []
        for i in range(n):
            label = int(rng.integers(len(classes))) if i >= len(classes) else i
            spec = rng.normal(0, 1, (bins, T)) + 2.0 * label * np.sin(np.arange(bins) * (label + 1))[:, None]
            spec = (spec * 3 + 1).astype(dtype)
            frames = []
            for k in range(F):
                w, h = sizes[(i + k) % len(sizes)]
                frames.append(jpeg_bytes(class_image(label, i, w, h, rng)))
            samples.append((f"{split}{i:04d}", label, spec, frames))
        out[split] = samples
        shards = []
        for s0 in range(0, max(n, 1), shard_size):
            part = [p for p in samples[s0:s0 + shard_size] if p[0] not in drop]
            name = f"{split}-{len(shards):05d}.h5"
            write_shard(os.path.join(root, name), split, [p[0] for p in part], [p[1] for p in part],
                        np.stack([p[2] for p in part]) if part else np.zeros((0, bins, T), dtype),
                        [p[3] for p in part], list(classes), F, recipe, dtype=dtype, version=version)
            shards.append({"file": name, "count": len(part)})
        idx["splits"][split] = {"count": n, "shards": shards}
    if index:
        write_index(root, idx)
    return out


def decode(jpeg):
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def resize_bilinear(img, S):
    """torch.nn.functional.interpolate(bilinear, align_corners=False, antialias=False) of HWC uint8 -> CHW float."""
    import torch
    t = torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(t, size=(S, S), mode="bilinear", align_corners=False)[0].numpy()


MEAN = np.array([0.485, 0.456, 0.406])[:, None, None]
STD = np.array([0.229, 0.224, 0.225])[:, None, None]


def eval_frame(jpeg, S, crop=None):
    """The evaluation transform (crop = (x, y, w, h, flip) for training)."""
    img = decode(jpeg)
    flip = 0
    if crop is not None:
        x, y, w, h, flip = crop
        img = img[y:y + h, x:x + w]
    out = resize_bilinear(img, S)
    if flip:
        out = out[:, :, ::-1]
    return (out / 255.0 - MEAN) / STD


def standardize(spec):
    x = spec.astype(np.float64)
    return (x - x.mean()) / (x.std() + 1e-9)


def corrupt_sample(root, split, sid, what):
    """Flips one byte of sample sid's spectrogram ("spec") or of its first JPEG
    ("jpeg") inside its shard, in place, keeping the stored checksums."""
    for name in sorted(os.listdir(root)):
        if not (name.startswith(split + "-") and name.endswith(".h5")):
            continue
        path = os.path.join(root, name)
        with h5py.File(path, "r+") as f:
            ids = [x.decode() if isinstance(x, bytes) else x for x in f["id"][:]]
            if sid not in ids:
                continue
            i = ids.index(sid)
            if what == "spec":
                d = f["audio/spec"]
                v = d[i]
                v.view(np.uint8).reshape(-1)[5] ^= 0x40
                d[i] = v
            else:
                F = int(f.attrs["frames_per_sample"])
                off = int(f["video/offset"][i * F])
                d = f["video/jpeg"]
                d[off + 40] = d[off + 40] ^ 0x40
            return path
    raise KeyError(sid)


def break_jpeg_header(root, split, sid, how):
    """Makes the first JPEG of sample sid one whose header does not parse
    (same length, in place), and rewrites the sample's crc32/record so that
    only the JPEG is bad (docs/FORMAT.md): how = "height0" (SOF height 0),
    "huge" (SOF 65535 x 65535), "dqt" (a flipped byte in the DQT marker's
    length), "soi" (the SOI marker flipped). Returns the shard's file name."""
    for name in sorted(os.listdir(root)):
        if not (name.startswith(split + "-") and name.endswith(".h5")):
            continue
        path = os.path.join(root, name)
        with h5py.File(path, "r+") as f:
            ids = [x.decode() if isinstance(x, bytes) else x for x in f["id"][:]]
            if sid not in ids:
                continue
            i = ids.index(sid)
            F = int(f.attrs["frames_per_sample"])
            offs = f["video/offset"][i * F:(i + 1) * F + 1].astype(np.int64)
            d = f["video/jpeg"]
            frames = [bytes(d[offs[k]:offs[k + 1]]) for k in range(F)]
            jp = bytearray(frames[0])
            marker = {"height0": b"\xff\xc0", "huge": b"\xff\xc0", "dqt": b"\xff\xdb", "soi": b"\xff\xd8"}[how]
            at = jp.index(marker)
            if how == "height0":
                jp[at + 5:at + 7] = b"\0\0"
            elif how == "huge":
                jp[at + 5:at + 9] = b"\xff\xff\xff\xff"
            elif how == "dqt":
                jp[at + 2] ^= 0x40
            else:
                jp[at + 1] ^= 0x40
            frames[0] = bytes(jp)
            d[offs[0]:offs[1]] = np.frombuffer(frames[0], np.uint8)
            if "crc32/record" in f:
                seg, ft = f["segment"][i], f["frame_time"][i]
                f["crc32/record"][i] = record_crc(sid, int(f["label"][i]), seg, ft, frames)
        redigest(root, name)
        return name
    raise KeyError(sid)


def redigest(root, name):
    """Rewrites index.json's digest of shard `name` (and the folder digest) from the shard
    as it is now: the folder then says this shard was written so (a bad sample whose
    checksums match, as a writer with a fault would leave it), and only the sample is bad."""
    path = os.path.join(root, "index.json")
    with open(path) as f:
        index = json.load(f)
    for sp in index["splits"].values():
        for e in sp["shards"]:
            if e["file"] == name:
                e["digest"] = shard_digest(os.path.join(root, name))[0]
    index["digest"] = folder_digest(index)
    with open(path, "w") as f:
        json.dump(index, f, indent=1)
