"""c2kd_shards: a Python reader of the shards written by `ingest` (docs/FORMAT.md).

It yields the samples `train`'s loader prepares (train/loader*.c, the CPU backend's
prep_spec/prep_frames), so that a PyTorch program can train on the same folders:

- spectrogram: float16 (or float32) -> float32 [1, bins, T], standardised per clip
  ((x - mean) / (std + 1e-9), population std, in float64) unless the recipe says the
  shards are already standardised (a key "normalize" = "clip" anywhere in it);
- frames: JPEG -> RGB -> bilinear resize (PyTorch's align_corners=False arithmetic, the
  same float32 operations as the C code, no antialiasing) of the whole image
  (evaluation) or of a RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) with a horizontal
  flip (training) to image_size x image_size -> ImageNet normalisation; [F, 3, S, S]
  (frames folded into the batch) or [3F, S, S] (stacked on channels).

Needs numpy, h5py and PIL. torch is optional: with it, ShardDataset is a
torch.utils.data.Dataset returning tensors; without it, a plain class returning numpy.
HDF5 files are opened lazily, per process (DataLoader workers each open their own).
"""
import bisect
import io
import json
import math
import os
import random
import stat
import struct
import zlib

import h5py
import numpy as np
from PIL import Image

try:  # optional
    import torch
    from torch.utils.data import Dataset as _DatasetBase
except ImportError:  # pragma: no cover - exercised by the test that hides torch
    torch = None
    _DatasetBase = object

FORMAT = "c2kd-shard"
VERSION = 2  # 2: per-sample CRC-32 checksums, checked on every read as train does
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

__all__ = ["ShardError", "ShardSplit", "ShardDataset", "open_folder", "shard_digest", "folder_digest", "recipe_standardized", "prep_spec", "prep_frame",
           "random_resized_crop", "IMAGENET_MEAN", "IMAGENET_STD"]


class ShardError(Exception):
    """A folder, split, shard or sample that cannot be read; the message names the file and the reason."""


def _str(v):
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def recipe_standardized(recipe):
    """True when the recipe (JSON text or parsed) says the spectrograms are already
    standardised per clip: a key "normalize" (or "normalise") with value "clip", true
    or 1 at any depth (as train's ld_recipe_standardized)."""
    if isinstance(recipe, (str, bytes)):
        try:
            recipe = json.loads(recipe)
        except ValueError:
            return False

    def find(j):
        items = j.items() if isinstance(j, dict) else ((None, v) for v in j) if isinstance(j, list) else ()
        for k, v in items:
            if k in ("normalize", "normalise"):
                if v == "clip" or v is True or (isinstance(v, (int, float)) and not isinstance(v, bool) and v == 1):
                    return True
            if isinstance(v, (dict, list)) and find(v):
                return True
        return False

    return find(recipe)


def prep_spec(raw, standardize):
    """One stored spectrogram [bins, T] (float16 or float32) -> float32 [1, bins, T],
    standardised as train does (float64 mean and population std, + 1e-9)."""
    x = np.asarray(raw)
    x32 = x.astype(np.float32)
    if not standardize or x32.size == 0:
        return x32[None]
    n = x32.size
    mean = np.sum(x32, dtype=np.float64) / n
    c = np.subtract(x32, mean, dtype=np.float64).ravel()
    sd = math.sqrt(float(np.einsum("i,i->", c, c)) / n)  # not np.dot: BLAS threads cost more than they save
    if x.dtype == np.float32:  # train standardises float32 shards on the host: a division
        np.divide(c, sd + 1e-9, out=c)
    else:  # float16 shards: prep_spec multiplies by the inverse
        np.multiply(c, 1.0 / (sd + 1e-9), out=c)
    return c.astype(np.float32).reshape((1,) + x.shape)


def _bilinear_index(n_out, n_in):
    """PyTorch's source indices for align_corners=False (as the C prep_frames)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    lam = np.minimum(src - i0, 1.0).astype(np.float32)
    i1 = i0 + (i0 < n_in - 1)
    return i0, i1, lam


def prep_frame(img, size, crop=None):
    """RGB uint8 [H, W, 3] -> float32 [3, size, size]: crop (x, y, w, h, flip) or the
    whole image, bilinear resize, flip, ImageNet normalisation. The float32 operations
    are those of train's CPU prep_frames, in the same order."""
    h_img, w_img = img.shape[:2]
    x, y, w, h, flip = crop if crop is not None else (0, 0, w_img, h_img, 0)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > w_img or y + h > h_img:
        raise ValueError(f"crop ({x},{y} {w}x{h}) outside the {w_img}x{h_img} image")
    y0, y1, ly = _bilinear_index(size, h)
    x0, x1, lx = _bilinear_index(size, w)
    if flip:  # output column size-1-ox gets the value of column ox
        x0, x1, lx = x0[::-1], x1[::-1], lx[::-1]
    one = np.float32(1)
    # The horizontal pass once per distinct source row, then the vertical one: the float32
    # operations of the C loop, in its order (top/bot = (1-lx)*p[x0] + lx*p[x1],
    # v = (1-ly)*top + ly*bot, (v/255 - mean)/std), channel-first.
    rows, inv = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    src = np.take(img, y + rows, axis=0).transpose(2, 0, 1)  # [3, R, W] uint8
    a = np.take(src, x + x0, axis=2).astype(np.float32)  # [3, R, S]
    b = np.take(src, x + x1, axis=2).astype(np.float32)
    a *= one - lx
    b *= lx
    a += b
    top = np.take(a, inv[:size], axis=1)  # [3, S, S]
    bot = np.take(a, inv[size:], axis=1)
    top *= (one - ly)[:, None]
    bot *= ly[:, None]
    top += bot
    top /= np.float32(255)
    top -= IMAGENET_MEAN[:, None, None]
    top /= IMAGENET_STD[:, None, None]
    return top


def random_resized_crop(rng, width, height, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's RandomResizedCrop.get_params (10 attempts, then the centre crop
    fallback) with a random.Random: (x, y, w, h)."""
    area = width * height
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(lr[0], lr[1]))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            y = rng.randint(0, height - h)
            x = rng.randint(0, width - w)
            return x, y, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _record_crc(s, j, jpegs):
    """CRC-32 of sample j's record as docs/FORMAT.md defines it (version 2)."""
    c = zlib.crc32(s.ids[j].encode("utf-8") + b"\0")
    c = zlib.crc32(np.array([s.labels[j]], "<i4").tobytes(), c)
    c = zlib.crc32(s.segments[j].tobytes(), c)
    c = zlib.crc32(s.frame_times[j].tobytes(), c)
    c = zlib.crc32(np.array([len(b) for b in jpegs], "<u8").tobytes(), c)
    for b in jpegs:
        c = zlib.crc32(b, c)
    return c


def _check_strings(f, ver, name):
    """Version 2 stores every string fixed-length: a variable-length one (read through
    libhdf5's global heap, unsafe on damaged files) is refused before it is read."""
    if ver < 2:
        return
    objs = [(f"attribute {k}", f.attrs.get_id(k).dtype) for k in f.attrs]
    if "id" in f:
        objs.append(("dataset id", f["id"].dtype))
    for what, dt in objs:
        info = h5py.check_string_dtype(dt)
        if info is not None and info.length is None:
            raise ShardError(f"{name}: {what}: variable-length string not accepted in format version {ver}")


class _Shard:
    """Metadata of one shard (read once, small) and its lazily opened file."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.file = None
        try:
            f = h5py.File(path, "r")
        except (OSError, ValueError) as e:
            raise ShardError(f"{self.name}: cannot open ({e})") from None
        with f:
            a = f.attrs
            try:
                ver = int(a.get("version", 0))
            except (TypeError, ValueError):
                ver = 0
            if 1 <= ver <= VERSION:
                _check_strings(f, ver, self.name)
            if _str(a.get("format", "")) != FORMAT:
                raise ShardError(f"{self.name}: not a {FORMAT} file (attribute format)")
            if ver < 1 or ver > VERSION:
                raise ShardError(f"{self.name}: unsupported format version {ver}")
            try:
                self.F = int(a["frames_per_sample"])
                self.classes = [_str(c) for c in a["classes"]]
                self.recipe = _str(a["recipe"])
                self.split = _str(a["split"])
                self.dataset = _str(a.get("dataset", ""))
                self.labels = f["label"][:].astype(np.int64)
                self.ids = [_str(x) for x in f["id"][:]]
                self.offsets = f["video/offset"][:].astype(np.int64)
                spec = f["audio/spec"]
                self.version = ver
                if ver >= 2:
                    self.crc_spec = f["crc32/spec"][:].astype(np.uint32)
                    self.crc_record = f["crc32/record"][:].astype(np.uint32)
                    self.segments = f["segment"][:].astype("<f4")
                    self.frame_times = f["frame_time"][:].astype("<f4")
                self.spec_dtype = spec.dtype
                self.spec_shape = tuple(spec.shape[1:])
                n = spec.shape[0]
            except KeyError as e:
                raise ShardError(f"{self.name}: missing {e}") from None
        if not (len(self.labels) == len(self.ids) == n and len(self.offsets) == n * self.F + 1):
            raise ShardError(f"{self.name}: datasets disagree on the number of samples")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ShardError(f"{self.name}: label out of the range of classes")
        self.count = n

    def meta_key(self):
        return self.classes, self.F, self.spec_shape, self.spec_dtype

    def open(self):
        if self.file is None:
            self.file = h5py.File(self.path, "r")
            self.spec = self.file["audio/spec"]
            self.jpeg = self.file["video/jpeg"]
        return self

    def close(self):
        if self.file is not None:
            self.file.close()
        self.file = None

    def __getstate__(self):  # pickled to spawned workers without the open file
        s = dict(self.__dict__)
        s["file"] = None
        s.pop("spec", None)
        s.pop("jpeg", None)
        return s


INDEX_VERSION = 2  # index.json: shard digests, ids, versions and the folder digest
INDEX_MAX = 64 << 20  # largest index.json read (bytes)


def _digest(stream):
    return f"{zlib.crc32(stream):08x}{zlib.adler32(stream):08x}"


def shard_digest(shard):
    """A shard's digest (docs/FORMAT.md, "index.json"): CRC-32 then Adler-32 over, per sample,
    its id + NUL and crc32/record + crc32/spec (version 2) or its label (version 1), 4 bytes
    little endian each."""
    if shard.version >= 2:
        tails = (struct.pack("<II", int(a), int(b)) for a, b in zip(shard.crc_record, shard.crc_spec))
    else:
        tails = (struct.pack("<i", int(v)) for v in shard.labels)
    return _digest(b"".join(i.encode("utf-8") + b"\0" + t for i, t in zip(shard.ids, tails)))


def folder_digest(index):
    """index.json's "digest": over each split's name, its shards' files and digests, then the aliases."""
    parts = []
    for name, sp in index["splits"].items():
        parts.append(name)
        parts += [x for e in sp["shards"] for x in (e["file"], e["digest"])]
    for k, v in (index.get("aliases") or {}).items():
        parts += [k, v]
    return _digest(b"".join(str(p).encode("utf-8") + b"\0" for p in parts))


def _not_regular(path, mode):
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "not a plain file")
    return f"{path}: not a regular file ({kind})"


def _read_index(root):
    index = os.path.join(root, "index.json")
    if not os.path.isdir(root):
        raise ShardError(f"{root}: not a folder")
    if not os.path.lexists(index):
        raise ShardError(f"{root}: no index.json: an unfinished ingest output (finish it: rerun `ingest` with the "
                         f"same options; a folder written with --part: run the missing parts, or `store index "
                         f"{root}` once all are done)")
    try:  # non-blocking open and fstat: a FIFO or a device is refused, not waited on or read without end
        fd = os.open(index, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ShardError(f"{index}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ShardError(_not_regular(index, st.st_mode))
        if st.st_size > INDEX_MAX:
            raise ShardError(f"{index}: {st.st_size} bytes, more than the {INDEX_MAX} an index may hold")
        text = f.read(INDEX_MAX + 1)
    if len(text) > INDEX_MAX:
        raise ShardError(f"{index}: more than the {INDEX_MAX} bytes an index may hold")
    try:
        idx = json.loads(text.decode("utf-8"))
    except ValueError:
        raise ShardError(f"{index}: not valid JSON") from None
    if not isinstance(idx, dict):
        raise ShardError(f"{index}: not valid JSON (an object)")
    return idx


def _is_count(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 and v == int(v)


def _tiling_problem(sp, M):
    """An index written from an ingest plan (it states "shard_items" M): shard k of a split of
    N manifest rows covers rows [k*M, min((k+1)*M, N)), each row a sample or a failure."""
    if not _is_count(M) or M < 1:
        return "\"shard_items\" is not a positive integer"
    N = sp.get("items")
    if not _is_count(N):
        return "a split's \"items\" (its manifest rows) is missing or not a count"
    bad = "the shards do not cover the split's manifest rows in order (an entry missing, moved or edited)"
    failed = 0
    for k, e in enumerate(sp["shards"]):
        lo = k * M
        hi = min(lo + M, N)
        it, fl = e.get("items"), e.get("failed")
        if not isinstance(it, list) or it != [lo, hi] or not _is_count(fl) or lo >= N or e["count"] + fl != hi - lo:
            return bad
        failed += fl
    if len(sp["shards"]) * M < N:
        return bad
    if not _is_count(sp.get("failed")) or sp["failed"] != failed:
        return "a split's \"failed\" is not the sum of its shards'"
    return None


def _index_problem(idx):
    """The reason the index's own fields are malformed (as store/st_folder.c), None when fine."""
    if idx["index_version"] != INDEX_VERSION:
        return "unsupported index_version (this reader: 2)"
    splits, classes = idx.get("splits"), idx.get("classes")
    if not isinstance(splits, dict) or not splits:
        return "no \"splits\" object (or no split in it)"
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "\"classes\" is not a non-empty array of strings"
    fps, shape = idx.get("frames_per_sample"), idx.get("spec_shape")
    if not _is_count(fps) or fps > 64:
        return "\"frames_per_sample\" is not an integer in [0, 64]"
    if not isinstance(shape, list) or len(shape) != 2 or not all(_is_count(x) for x in shape):
        return "\"spec_shape\" is not two integers"
    if idx.get("spec_dtype") not in ("float16", "float32"):
        return "\"spec_dtype\" is not float16 or float32"
    if not isinstance(idx.get("recipe"), dict):
        return "\"recipe\" is not an object"
    total = 0
    for sp in splits.values():
        if not isinstance(sp, dict) or not isinstance(sp.get("shards"), list):
            return "a split is not an object with a \"shards\" array"
        n = 0
        for e in sp["shards"]:
            f = e.get("file") if isinstance(e, dict) else None
            if not isinstance(f, str) or not f or f[0] == "." or "/" in f or not f.lower().endswith(".h5"):
                return "a shard entry without a plain *.h5 file name"
            if not _is_count(e.get("count")):
                return "a shard's count is not a non-negative integer"
            if e.get("version") not in (1, 2) or isinstance(e.get("version"), bool):
                return "a shard's format version is not 1 or 2"
            d = e.get("digest")
            if not isinstance(d, str) or len(d) != 16 or any(c not in "0123456789abcdef" for c in d):
                return "a shard's digest is not 16 hex digits"
            ids = e.get("ids")
            if not isinstance(ids, list) or len(ids) != (2 if e["count"] > 0 else 0) or \
                    not all(isinstance(x, str) for x in ids):
                return "a shard's ids are not [first, last] (or [] when it holds no sample)"
            n += e["count"]
        if not _is_count(sp.get("count")) or sp["count"] != n:
            return "a split's count is not the sum of its shards' counts"
        why = _tiling_problem(sp, idx["shard_items"]) if "shard_items" in idx else None
        if why:
            return why
        total += n
    if not _is_count(idx.get("count")) or idx["count"] != total:
        return "\"count\" is not the sum of the splits' counts"
    aliases = idx.get("aliases", {})
    if not isinstance(aliases, dict):
        return "\"aliases\" is not an object"
    for k, v in aliases.items():
        if k != "val" or not isinstance(v, str) or v in ("train", "val") or v not in splits or "val" in splits:
            return "an alias other than val -> an existing split that is not train (and no split val)"
    return None


def _shard_matches(idx, split, e, s):
    """The shard against its index entry and the index's metadata (as store/st_folder.c)."""
    n = s.count
    if s.split != split:
        return f"holds split \"{s.split}\", listed under \"{split}\" in index.json"
    if n != e["count"]:
        return f"{n} samples, index.json says {e['count']:.0f}"
    if s.version != e["version"]:
        return f"format version {s.version}, index.json says {e['version']} (a changed version is refused)"
    if n and [s.ids[0], s.ids[-1]] != e["ids"]:
        return (f"holds ids \"{s.ids[0]}\" to \"{s.ids[-1]}\", index.json says \"{e['ids'][0]}\" to "
                f"\"{e['ids'][1]}\" (another shard's content)")
    d = shard_digest(s)
    if d != e["digest"]:
        return f"content digest {d}, index.json says {e['digest']} (a shard replaced or changed)"
    if s.classes != idx["classes"]:
        return "its classes differ from index.json's"
    if s.F != idx["frames_per_sample"]:
        return f"{s.F} frames per sample, index.json says {idx['frames_per_sample']}"
    if list(s.spec_shape) != idx["spec_shape"] or s.spec_dtype.name != idx["spec_dtype"]:
        return f"spectrogram {list(s.spec_shape)} {s.spec_dtype.name}, index.json says {idx['spec_shape']} " \
               f"{idx['spec_dtype']}"
    try:
        same = json.loads(s.recipe) == idx["recipe"]
    except ValueError:
        same = False
    if not same:
        return "its recipe differs from index.json's"
    return None


def open_folder(root):
    """Checks an ingest output folder as one whole, as train does at open (docs/FORMAT.md,
    "index.json"): every listed shard present, a regular file, listed once, its content
    unique and as listed (split, count, version, ids, digest, classes, frames, spectrogram,
    recipe), ids unique across the folder, the totals and the folder digest as stated,
    aliases only val -> a split that is not train, no unlisted shard. Returns (index,
    {split: [_Shard, ...]}); anything else raises ShardError with one line."""
    idx = _read_index(root)
    if "index_version" not in idx:
        raise ShardError(f"{os.path.join(root, 'index.json')}: written before index version 2 (no shard digests): "
                         f"run `store index {root}` to re-index it from its shards")
    why = _index_problem(idx)
    if why:
        raise ShardError(f"{os.path.join(root, 'index.json')}: {why}")
    files, digests, by_split, owner = {}, {}, {}, {}
    for split, sp in idx["splits"].items():
        by_split[split] = []
        for e in sp["shards"]:
            name = e["file"]
            if name in files:
                raise ShardError(f"index.json: {name} is listed twice (under {files[name]} and {split})")
            files[name] = split
            if e["count"] > 0:
                if e["digest"] in digests:
                    raise ShardError(f"index.json: {digests[e['digest']]} and {name} have one digest (one content "
                                     f"listed twice)")
                digests[e["digest"]] = name
            p = os.path.join(root, name)
            if not os.path.lexists(p):
                raise ShardError(f"{name}: missing (listed in index.json)")
            try:
                mode = os.stat(p).st_mode
            except OSError as e:
                raise ShardError(f"{name}: {e.strerror} (listed in index.json)") from None
            if not stat.S_ISREG(mode):
                raise ShardError(f"index.json lists: {_not_regular(p, mode)}")
            s = _Shard(p)
            why = _shard_matches(idx, split, e, s)
            if why:
                raise ShardError(f"{name}: {why}")
            seen = set()
            for i in s.ids:
                if i in seen:
                    raise ShardError(f"{name}: id \"{i}\" is there twice (ids must be unique in the folder)")
                seen.add(i)
                if i in owner:
                    raise ShardError(f"id \"{i}\" is in both {owner[i]} and {name} (ids must be unique in the folder)")
                owner[i] = name
            by_split[split].append(s)
    for name in sorted(os.listdir(root)):
        if not name.startswith(".") and name.lower().endswith(".h5") and name not in files:
            raise ShardError(f"{name}: a shard that index.json does not list (another run's? remove it, or rerun "
                             f"`ingest` / `store index DIR`)")
    if idx.get("digest") != folder_digest(idx):
        raise ShardError(f"index.json: \"digest\" is not the digest of its shards (edited by hand? run `store index "
                         f"{root}` to re-index)")
    return idx, by_split


def _split_shards(root, split):
    """The shards of a split, after the whole folder is checked (open_folder)."""
    idx, by_split = open_folder(root)
    name = split if split in by_split else (idx.get("aliases") or {}).get(split)
    if name not in by_split:
        known = ", ".join(sorted(by_split)) or "none"
        raise ShardError(f"{os.path.join(root, 'index.json')}: no split \"{split}\" (splits: {known})")
    return by_split[name]


class ShardSplit:
    """One split of an ingested folder: global sample index -> (shard, row) as train does,
    raw reads, and samples prepared as train's loader prepares them.

    image_size: side of the prepared frames (train --image-size, 224).
    train: False -> evaluation transform (resize of the whole image; train --no-augment);
           True  -> RandomResizedCrop + horizontal flip drawn with Python's random.
    visual_mode: "stack" -> frames [3F, S, S]; "fold" -> [F, 3, S, S]; "auto" -> fold when F > 1
           (as train --visual-mode).
    audio, visual: which modalities to prepare.
    seed: None -> each process draws its own augmentation; an int -> the draws of sample i
           depend only on (seed, epoch, i) (set_epoch), whatever the workers.
    """

    def __init__(self, root, split, image_size=224, train=False, visual_mode="auto", audio=True, visual=True,
                 seed=None):
        if visual_mode not in ("auto", "stack", "fold"):
            raise ValueError(f"visual_mode: {visual_mode!r} is not auto, stack or fold")
        if image_size < 1:
            raise ValueError("image_size must be >= 1")
        self.root, self.split_name = root, split
        self.shards = []
        for s in _split_shards(root, split):
            if self.shards:
                self._check_compatible(self.shards[0], s)
            self.shards.append(s)
        if not self.shards:
            raise ShardError(f"{root}: split \"{split}\" has no shard")
        self.first = [0]
        for s in self.shards:
            self.first.append(self.first[-1] + s.count)
        m = self.shards[0]
        self.classes, self.F, self.spec_shape, self.recipe = m.classes, m.F, m.spec_shape, m.recipe
        self.standardize = not recipe_standardized(m.recipe)
        self.image_size, self.train, self.audio, self.visual = image_size, train, audio, visual
        self.fold = visual_mode == "fold" or (visual_mode == "auto" and self.F > 1)
        self.seed, self.epoch = seed, 0
        self._pid, self._rng = None, None

    @staticmethod
    def _check_compatible(a, b):
        why = None
        if a.classes != b.classes:
            why = "another class list"
        elif a.F != b.F:
            why = f"{b.F} frames per sample against {a.F}"
        elif a.spec_shape != b.spec_shape:
            why = f"spectrogram {b.spec_shape} against {a.spec_shape}"
        elif a.spec_dtype != b.spec_dtype:
            why = "spectrogram type differs (float16/float32)"
        elif a.recipe != b.recipe and json.loads(a.recipe or "null") != json.loads(b.recipe or "null"):
            why = "another recipe"
        if why:
            raise ShardError(f"{b.name}: differs from the split's first shard: {why}")

    def __len__(self):
        return self.first[-1]

    def set_epoch(self, epoch):
        """With a seed, the augmentation of each epoch differs (call before each epoch)."""
        self.epoch = int(epoch)

    def locate(self, i):
        """Split sample i -> (shard k, row j), never an empty shard (as st_locate)."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range ({len(self)} samples)")
        k = bisect.bisect_right(self.first, i) - 1
        return k, i - self.first[k]

    def _shard(self, k):
        if self._pid != os.getpid():  # a new process (DataLoader worker): its own handles
            for s in self.shards:
                s.file = None  # inherited handles are not used (nor closed) in a child
            self._pid, self._rng = os.getpid(), None
        return self.shards[k].open()

    def read(self, i):
        """The stored sample i: dict(id, label, spec (stored dtype [bins, T]), jpegs (F bytes))."""
        k, j = self.locate(i)
        s = self._shard(k)
        out = {"id": s.ids[j], "label": int(s.labels[j]), "shard": s.name, "row": j}
        if self.audio:
            out["spec"] = s.spec[j]
            if s.version >= 2:
                self._check(s, j, "spectrogram", zlib.crc32(out["spec"].astype(s.spec_dtype.newbyteorder("<")).tobytes()),
                            s.crc_spec[j])
        if self.visual:
            off = s.offsets[j * s.F:(j + 1) * s.F + 1]
            buf = s.jpeg[off[0]:off[-1]].tobytes()
            out["jpegs"] = [buf[off[f] - off[0]:off[f + 1] - off[0]] for f in range(s.F)]
            if s.version >= 2:
                self._check(s, j, "JPEG bytes or fields", _record_crc(s, j, out["jpegs"]), s.crc_record[j])
        return out

    @staticmethod
    def _check(s, j, what, got, want):
        if int(got) != int(want):
            raise ShardError(f"checksum mismatch: sample {s.ids[j]} (row {j}) of {s.name}: {what}")

    def _sample_rng(self, i):
        if self.seed is not None:
            return random.Random(f"c2kd:{self.seed}:{self.epoch}:{i}")
        if self._rng is None or self._pid != os.getpid():
            self._pid, self._rng = os.getpid(), random.Random()
        return self._rng

    def decode(self, jpeg, where=""):
        try:
            with Image.open(io.BytesIO(jpeg)) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as e:
            raise ShardError(f"{where}: not a readable JPEG ({e})") from None

    def sample(self, i):
        """Prepared sample i: dict(index, label, audio float32 [1, bins, T], visual float32
        [F, 3, S, S] (fold) or [3F, S, S] (stack))."""
        r = self.read(i)
        out = {"index": i, "label": r["label"]}
        if self.audio:
            out["audio"] = prep_spec(r["spec"], self.standardize)
        if self.visual:
            rng = self._sample_rng(i) if self.train else None
            frames = []
            for f, jp in enumerate(r["jpegs"]):
                img = self.decode(jp, f"{r['shard']}: sample {r['id']}: frame {f}")
                crop = None
                if rng is not None:
                    x, y, w, h = random_resized_crop(rng, img.shape[1], img.shape[0])
                    crop = (x, y, w, h, rng.random() < 0.5)
                frames.append(prep_frame(img, self.image_size, crop))
            v = np.stack(frames)
            out["visual"] = v if self.fold else v.reshape(3 * self.F, self.image_size, self.image_size)
        return out

    def batches(self, batch_size, shuffle=False, drop_last=False, rng=None):
        """Numpy batches (dict of stacked arrays) in shard order or a random.Random permutation;
        train drops the last partial training batch (drop_last=True) and keeps it in evaluation."""
        order = list(range(len(self)))
        if shuffle:
            (rng or random.Random()).shuffle(order)
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for b in range(0, stop, batch_size):
            items = [self.sample(i) for i in order[b:b + batch_size]]
            yield {k: np.stack([np.asarray(it[k]) for it in items]) for k in items[0]}

    def close(self):
        if self._pid == os.getpid():
            for s in self.shards:
                s.close()

    def __getstate__(self):
        s = dict(self.__dict__)
        s["_pid"], s["_rng"] = None, None
        return s


class ShardDataset(_DatasetBase):
    """Map-style dataset over a split (see ShardSplit for the options). With torch it is a
    torch.utils.data.Dataset whose items are dicts of tensors: "audio" float32 [1, bins, T],
    "visual" float32 [F, 3, S, S] or [3F, S, S], "label" int64, "index" int64; without torch,
    the same as numpy. Safe with DataLoader workers (each opens its own HDF5 handles)."""

    def __init__(self, root, split, **kw):
        self.data = ShardSplit(root, split, **kw)
        self.classes = self.data.classes

    def __len__(self):
        return len(self.data)

    def set_epoch(self, epoch):
        self.data.set_epoch(epoch)

    def __getitem__(self, i):
        s = self.data.sample(int(i))
        if torch is None:
            return s
        out = {"label": torch.tensor(s["label"], dtype=torch.int64), "index": torch.tensor(s["index"])}
        for k in ("audio", "visual"):
            if k in s:
                out[k] = torch.from_numpy(s[k])
        return out
