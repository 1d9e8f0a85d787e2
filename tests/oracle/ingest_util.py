"""Helpers of the ingest/store oracle tests: independent parsers of the native annotation
files (csv module, str.split) and an h5py-only reader of the shards."""
import csv
import json
import os
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, "tools", "gen_dataset.py")


def generate(layout, out, classes=3, per_class=3, seconds=3, bad=True, size="96x64", seed=0):
    args = [sys.executable, GEN, "--layout", layout, "--out", str(out), "--classes", str(classes),
            "--per-class", str(per_class), "--seconds", str(seconds), "--size", size, "--fps", "10",
            "--seed", str(seed), "--jobs", "2"]
    if bad:
        args.append("--bad")
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def ave_rows(root):
    """[(split, id, label, start, end)] with the documented id rule (repeats get ~2, ~3)."""
    rows, seen = [], {}
    for split in ("train", "val", "test"):
        with open(os.path.join(root, f"{split}Set.txt"), encoding="utf-8") as f:
            for line in f.read().splitlines():
                if not line.strip():
                    continue
                cat, vid, _q, st, en = line.split("&")
                base = f"{vid}_{st}_{en}"
                seen[base] = seen.get(base, 0) + 1
                rid = base if seen[base] == 1 else f"{base}~{seen[base]}"
                rows.append((split, rid, cat, float(st), float(en)))
    return rows


def ave_classes(rows):
    order = []
    for split in ("test", "train", "val"):
        for r in rows:
            if r[0] == split and r[2] not in order:
                order.append(r[2])
    return order


def cremad_rows(root):
    rows = []
    for split in ("train", "test"):
        with open(os.path.join(root, f"{split}.csv"), newline="", encoding="utf-8-sig") as f:
            for rec in csv.reader(f):
                if rec:
                    rows.append((split, rec[0], rec[1]))
    return rows


def vgg_rows(root, tiny=True):
    rows = []
    for split in ("train", "test"):
        name = f"{split}_tiny.csv" if tiny else f"{split}.csv"
        with open(os.path.join(root, name), newline="", encoding="utf-8-sig") as f:
            for rec in csv.reader(f):
                if rec:
                    rows.append((rec[3], f"{rec[0]}_{rec[1]}", rec[2]))
    return rows


def read_manifest(path):
    classes, items = None, []
    with open(path, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if not line:
                continue
            if line.startswith("#classes"):
                classes = line.split("\t")[1:]
                continue
            p = line.split("\t")
            if p[0] == "id" and p[1] == "audio":
                continue
            items.append(dict(id=p[0], audio=p[1], video=p[2], label=p[3], split=p[4], start=p[5], end=p[6]))
    return classes, items


def read_out(out):
    """Everything in an ingest output folder, read with h5py and json only."""
    with open(os.path.join(out, "index.json")) as f:
        index = json.load(f)
    samples = {}
    for split, sp in index["splits"].items():
        for sh in sp["shards"]:
            with h5py.File(os.path.join(out, sh["file"]), "r") as h:
                # version 2: fixed-length UTF-8 strings, which h5py returns as bytes
                assert h.attrs["format"].decode() == "c2kd-shard"
                assert h.attrs["split"].decode() == split
                classes = [c.decode() for c in h.attrs["classes"]]
                F = int(h.attrs["frames_per_sample"])
                ids = [x.decode() if isinstance(x, bytes) else x for x in h["id"][:]]
                off = h["video/offset"][:]
                jpeg = h["video/jpeg"][:]
                for i, sid in enumerate(ids):
                    samples[sid] = dict(
                        split=split, shard=sh["file"], label=int(h["label"][i]), cls=classes[int(h["label"][i])],
                        spec=h["audio/spec"][i], segment=h["segment"][i], frame_time=h["frame_time"][i],
                        jpegs=[bytes(jpeg[off[i * F + k]:off[i * F + k + 1]]) for k in range(F)])
    failures = []
    with open(os.path.join(out, "failures.tsv"), encoding="utf-8") as f:
        for line in f.read().splitlines():
            i, s, r = line.split("\t")
            if i != "#note":  # notes (docs/FORMAT.md) fail no row
                failures.append((i, s, r))
    return index, samples, failures


def read_notes(out):
    """The '#note' lines of an ingest output's failures.tsv (their text)."""
    with open(os.path.join(out, "failures.tsv"), encoding="utf-8") as f:
        return [line.split("\t")[2] for line in f.read().splitlines() if line.startswith("#note\t")]


def decode_jpeg(data):
    import io

    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
