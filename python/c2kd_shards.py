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
import glob
import io
import json
import math
import os
import random
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

__all__ = ["ShardError", "ShardSplit", "ShardDataset", "recipe_standardized", "prep_spec", "prep_frame",
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


def _split_files(root, split):
    """The shard files of a split, as train's ld_data_open finds them."""
    index = os.path.join(root, "index.json")
    if not os.path.isdir(root):
        raise ShardError(f"{root}: not a folder")
    if not os.path.isfile(index):
        files = sorted(glob.glob(os.path.join(glob.escape(root), f"{split}-*.h5")))
        if not files:
            raise ShardError(f"{root}: no index.json and no {split}-*.h5 shard")
        return files, None
    try:
        with open(index, encoding="utf-8") as f:
            idx = json.load(f)
    except ValueError:
        raise ShardError(f"{index}: not valid JSON") from None
    splits = idx.get("splits") or {}
    sp = splits.get(split)
    if sp is None:
        alias = (idx.get("aliases") or {}).get(split)
        sp = splits.get(alias) if isinstance(alias, str) else None
    if not isinstance(sp, dict) or not isinstance(sp.get("shards"), list):
        known = ", ".join(sorted(splits)) or "none"
        raise ShardError(f"{index}: no split \"{split}\" (splits: {known})")
    files, counts = [], []
    for e in sp["shards"]:
        name = e.get("file") if isinstance(e, dict) else None
        if not isinstance(name, str) or "/" in name or not isinstance(e.get("count"), (int, float)):
            raise ShardError(f"{index}: bad shard entry in split \"{split}\"")
        files.append(os.path.join(root, name))
        counts.append(e["count"])
    return files, counts


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
        files, counts = _split_files(root, split)
        self.shards = []
        for k, p in enumerate(files):
            if not os.path.isfile(p):
                raise ShardError(f"{os.path.basename(p)}: missing (listed in index.json)")
            s = _Shard(p)
            if counts is not None and s.count != counts[k]:
                raise ShardError(f"{s.name}: {s.count} samples, index.json says {counts[k]:.0f}")
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
