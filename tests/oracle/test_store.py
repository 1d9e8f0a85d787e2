"""store: checksums, refused layouts, bounded sizes, index.json checks and a full disk, on shards
written by `ingest` from a generated dataset and altered with h5py (independent of store's reader);
checksums recomputed with Python's zlib from the h5py-read data (docs/FORMAT.md, "Checksums")."""
import json
import os
import resource
import shutil
import struct
import subprocess
import zlib

import h5py
import numpy as np
import pytest

from conftest import binary, run
from ingest_util import generate

SECONDS = 3


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    base = tmp_path_factory.mktemp("store")
    root = base / "ave"
    generate("ave", root, classes=2, per_class=3, seconds=SECONDS, bad=False)
    out = base / "out"
    r = run([binary("ingest"), "--dataset", "ave", "--root", root, "--out", out, "--jobs", "2",
             "--shard-items", "3", "--set", f"duration={SECONDS}", "--quiet"])
    assert r.returncode == 0, r.stderr
    assert run([binary("store"), "verify", out]).returncode == 0
    return dict(root=root, out=out)


def shards(out):
    return sorted(f for f in os.listdir(out) if f.endswith(".h5"))


def copy(ingested, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(ingested["out"], dst)
    return dst


def reindex(d):
    """After a shard's format version was changed on purpose: a downgrade is refused until
    `store index` records it (the index names each shard's version)."""
    r = verify(d)
    assert r.returncode == 1 and "format version 1, index.json says 2" in r.stdout, r.stdout
    r = run([binary("store"), "index", d])
    assert r.returncode == 0, r.stderr


def ids_of(h):
    return [x.decode() if isinstance(x, bytes) else x for x in h["id"][:]]


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def limited(mb):
    """preexec_fn: an address-space limit, so that a size trusted from a file would fail to allocate
    (none under AddressSanitizer, which reserves terabytes of shadow address space; the messages are
    still checked there)."""
    with open(binary("store"), "rb") as b:
        if b"__asan_init" in b.read():
            return None

    def f():
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    return f


def verify(d, **kw):
    return subprocess.run([binary("store"), "verify", str(d)], capture_output=True, text=True, **kw)


# ---------------------------------------------------------------- checksums

def test_checksums_are_the_documented_crc32(ingested):
    n = 0
    for name in shards(ingested["out"]):
        with h5py.File(ingested["out"] / name, "r") as h:
            assert h.attrs["version"] == 2 and h.attrs["checksum"].decode() == "crc32"
            F = int(h.attrs["frames_per_sample"])
            off, jpeg = h["video/offset"][:], h["video/jpeg"][:]
            for i, sid in enumerate(ids_of(h)):
                spec = h["audio/spec"][i]
                assert spec.dtype == np.float16
                assert h["crc32/spec"][i] == zlib.crc32(spec.astype("<f2").tobytes())
                lens = [int(off[i * F + k + 1] - off[i * F + k]) for k in range(F)]
                head = (sid.encode() + b"\0" + struct.pack("<i", int(h["label"][i]))
                        + h["segment"][i].astype("<f4").tobytes() + h["frame_time"][i].astype("<f4").tobytes()
                        + b"".join(struct.pack("<Q", x) for x in lens))
                body = jpeg[off[i * F]:off[(i + 1) * F]].tobytes()
                assert h["crc32/record"][i] == zlib.crc32(head + body), sid
                n += 1
    assert n == 6


def corruption_sites(path):
    """(sample id, what, file offset) in the middle of every sample's spectrogram chunk and JPEG bytes."""
    sites = []
    with h5py.File(path, "r") as h:
        F = int(h.attrs["frames_per_sample"])
        off = h["video/offset"][:]
        jbase = h["video/jpeg"].id.get_offset()
        spec = h["audio/spec"]
        for i, sid in enumerate(ids_of(h)):
            ci = spec.id.get_chunk_info_by_coord((i, 0, 0))
            sites.append((sid, "spectrogram", ci.byte_offset + ci.size // 2 + 1))
            sites.append((sid, "JPEG", jbase + (int(off[i * F]) + int(off[(i + 1) * F])) // 2))
    return sites


def test_byte_corruptions_in_data_are_caught_by_verify_and_by_a_read(ingested, tmp_path):
    sites = [(name, *site) for name in shards(ingested["out"]) for site in corruption_sites(ingested["out"] / name)]
    assert len(sites) == 12     # 6 samples, each in its spectrogram and in its JPEG bytes
    for k, (name, sid, what, offset) in enumerate(sites):
        d = copy(ingested, tmp_path, f"c{k}")
        flip(d / name, offset)
        r = verify(d)
        assert r.returncode == 1, (what, r.stdout)
        bad = [line for line in r.stdout.splitlines() if "checksum mismatch" in line]
        assert len(bad) == 1 and sid in bad[0] and name in bad[0], (what, r.stdout)
        assert ("spectrogram" in bad[0]) == (what == "spectrogram"), bad[0]
        e = run([binary("store"), "export", d, sid, "-o", tmp_path / f"x{k}"])
        assert e.returncode == 1 and "checksum mismatch" in e.stderr and sid in e.stderr, e.stderr
        others = [s for _, s, _, _ in sites if s != sid]
        assert run([binary("store"), "export", d, others[0], "-o", tmp_path / f"y{k}"]).returncode == 0


def test_version_1_shards_are_read_and_said_to_have_no_checksums(ingested, tmp_path):
    d = copy(ingested, tmp_path)
    name = shards(d)[0]
    with h5py.File(d / name, "r+") as h:
        del h["crc32"]
        h.attrs["version"] = 1
        sid = ids_of(h)[0]
    reindex(d)
    r = verify(d)
    assert r.returncode == 0, r.stdout
    assert f"{name}: format version 1: no checksums" in r.stdout
    assert "1 shard(s) without checksums" in r.stdout
    assert run([binary("store"), "export", d, sid, "-o", tmp_path / "x"]).returncode == 0
    with h5py.File(d / name, "r+") as h:
        h.attrs["version"] = 3
    r = verify(d)
    assert r.returncode == 1 and "unsupported format version 3" in r.stdout


# ---------------------------------------------------------------- layouts

def rewrite(path, ds, **kw):
    """Replaces dataset ds by the same values created with h5py options kw (dtype, chunks, filters)."""
    with h5py.File(path, "r+") as h:
        data = h[ds][...]
        del h[ds]
        dtype = kw.pop("dtype", data.dtype)
        h.create_dataset(ds, data=data.astype(dtype), **kw)


LAYOUTS = {
    "big-endian float32": ("audio/spec", dict(dtype=">f4", chunks=True, maxshape=(None, None, None)), "audio/spec"),
    "shuffle + gzip": ("audio/spec", dict(shuffle=True, compression="gzip", chunks=True), "filter"),
    "float64 spec": ("audio/spec", dict(dtype="<f8", chunks=True), "audio/spec"),
    "contiguous spec": ("audio/spec", dict(), "one sample per chunk"),
    "chunked jpeg": ("video/jpeg", dict(chunks=(1000,)), "video/jpeg"),
    "gzip jpeg": ("video/jpeg", dict(compression="gzip"), "video/jpeg"),
    "int64 label": ("label", dict(dtype="<i8"), "dataset label"),
    "float label": ("label", dict(dtype="<f4"), "dataset label"),
    "int16 jpeg": ("video/jpeg", dict(dtype="<i2"), "video/jpeg"),
    "int32 offset": ("video/offset", dict(dtype="<i4"), "video/offset"),
}


@pytest.mark.parametrize("case", list(LAYOUTS))
def test_layouts_the_reader_cannot_take_are_refused(ingested, tmp_path, case):
    ds, opts, word = LAYOUTS[case]
    d = copy(ingested, tmp_path)
    name = shards(d)[0]
    rewrite(d / name, ds, **dict(opts))
    with h5py.File(d / name, "r") as h:
        sid = ids_of(h)[0]
    r = verify(d)
    assert r.returncode == 1, r.stdout
    line = [x for x in r.stdout.splitlines() if x.startswith(f"store: {name}:")]
    assert line and word in line[0], r.stdout
    e = run([binary("store"), "export", d, sid, "-o", tmp_path / "x"])
    assert e.returncode == 1 and name in e.stderr and word in e.stderr, e.stderr
    assert not os.path.exists(tmp_path / "x.npy")


def test_the_writers_own_float32_layout_is_taken(ingested, tmp_path):
    d = copy(ingested, tmp_path)
    for name in shards(d):  # every shard: one folder holds one spectrogram type
        with h5py.File(d / name, "r") as h:
            shape = h["audio/spec"].shape
        rewrite(d / name, "audio/spec", dtype="<f4", chunks=(1,) + shape[1:], maxshape=(None,) + shape[1:])
        with h5py.File(d / name, "r+") as h:   # the float32 bytes have their own checksum
            del h["crc32"]
            h.attrs["version"] = 1
    name = shards(d)[0]
    with h5py.File(d / name, "r") as h:
        spec, sid = h["audio/spec"][0], ids_of(h)[0]
    with open(d / "plan.json") as f:
        plan = json.load(f)
    plan["index"]["spec_dtype"] = "float32"
    with open(d / "plan.json", "w") as f:
        json.dump(plan, f)
    reindex(d)
    assert verify(d).returncode == 0
    assert run([binary("store"), "export", d, sid, "-o", tmp_path / "x"]).returncode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), spec)


# ---------------------------------------------------------------- sizes declared in a file

def test_a_huge_declared_spectrogram_is_refused_not_allocated(ingested, tmp_path):
    d = copy(ingested, tmp_path)
    name = shards(d)[0]
    with h5py.File(d / name, "r+") as h:
        del h["audio/spec"]
        h.create_dataset("audio/spec", shape=(12, 30000, 30000), dtype="<f2", chunks=(1, 30000, 30000))
    assert os.path.getsize(d / name) < 2 << 20
    r = verify(d, preexec_fn=limited(1024))
    assert r.returncode == 1 and "values per sample" in r.stdout, r.stdout + r.stderr


def test_a_shape_other_than_the_recipes_is_refused(ingested, tmp_path):
    d = copy(ingested, tmp_path)
    name = shards(d)[0]
    with h5py.File(d / name, "r+") as h:
        data = h["audio/spec"][...]
        del h["audio/spec"]
        n, b, t = data.shape
        h.create_dataset("audio/spec", data=data[:, :, :t - 1], chunks=(1, b, t - 1))
    r = verify(d)
    assert r.returncode == 1 and "the recipe says" in r.stdout, r.stdout


def test_more_samples_than_the_file_can_hold_are_refused(ingested, tmp_path):
    d = copy(ingested, tmp_path)
    name = shards(d)[0]
    with h5py.File(d / name, "r+") as h:
        _, b, t = h["audio/spec"].shape
        del h["audio/spec"]
        h.create_dataset("audio/spec", shape=(10 ** 9, b, t), dtype="<f2", chunks=(1, b, t))
    r = verify(d, preexec_fn=limited(1024))
    assert r.returncode == 1 and "do not fit in a file" in r.stdout, r.stdout + r.stderr


def test_jpeg_bytes_declared_but_not_stored_are_refused(ingested, tmp_path):
    d = copy(ingested, tmp_path)
    name = shards(d)[0]
    with h5py.File(d / name, "r+") as h:
        del h["video/jpeg"]
        h.create_dataset("video/jpeg", shape=(10 ** 12,), dtype="u1")
        h["video/offset"][-1] = 10 ** 12
    r = verify(d, preexec_fn=limited(1024))
    assert r.returncode == 1 and "stores none" in r.stdout, r.stdout + r.stderr


def test_a_jpeg_header_declaring_30000x30000_pixels_is_a_fault_not_an_allocation(ingested, tmp_path):
    d = copy(ingested, tmp_path)
    name = shards(d)[0]
    with h5py.File(d / name, "r") as h:
        base, sid = h["video/jpeg"].id.get_offset(), ids_of(h)[0]
        first = h["video/jpeg"][:int(h["video/offset"][1])].tobytes()
    sof = first.find(b"\xff\xc0")
    assert sof > 0
    with open(d / name, "r+b") as f:   # SOF0: length(2) precision(1) height(2) width(2)
        f.seek(base + sof + 5)
        f.write(struct.pack(">HH", 30000, 30000))
    r = verify(d, preexec_fn=limited(1024))
    assert r.returncode == 1, r.stdout
    assert "frame size 30000x30000 is over the limit" in r.stdout and sid in r.stdout, r.stdout
    assert "checksum mismatch" in r.stdout


# ---------------------------------------------------------------- index.json

INDEX_FAULTS = {
    "classes holds non-strings": (lambda ix: ix.update(classes=[1, None]), "classes"),
    "classes not an array": (lambda ix: ix.update(classes="a"), "classes"),
    "spec_shape not numbers": (lambda ix: ix.update(spec_shape=["a", None]), "spec_shape"),
    "frames_per_sample out of range": (lambda ix: ix.update(frames_per_sample=10 ** 9), "frames_per_sample"),
    "negative shard count": (lambda ix: ix["splits"]["train"]["shards"][0].update(count=-1), "count"),
    "shard file with a path": (lambda ix: ix["splits"]["train"]["shards"][0].update(file="../x.h5"), "file"),
    "shard entry not an object": (lambda ix: ix["splits"]["train"]["shards"].append(7), "file"),
    "split not an object": (lambda ix: ix["splits"].update(train=[1]), "split"),
    "recipe not an object": (lambda ix: ix.update(recipe=3), "recipe"),
}


@pytest.mark.parametrize("case", list(INDEX_FAULTS))
def test_index_json_fields_are_checked(ingested, tmp_path, case):
    d = copy(ingested, tmp_path)
    with open(d / "index.json") as f:
        ix = json.load(f)
    change, word = INDEX_FAULTS[case]
    change(ix)
    with open(d / "index.json", "w") as f:
        json.dump(ix, f)
    for cmd in (["verify", d], ["info", d], ["export", d, "x", "-o", tmp_path / "x"]):
        r = run([binary("store"), *cmd])
        assert r.returncode == 1, (cmd, r.returncode, r.stdout, r.stderr)
        assert "index.json" in r.stderr and word in r.stderr, r.stderr


# ---------------------------------------------------------------- a full disk

def test_a_full_disk_is_a_clear_error_and_a_rerun_with_space_completes(ingested, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        args = [binary("ingest"), "--dataset", "ave", "--root", ingested["root"], "--out", mnt / "out", "--jobs", "2",
                "--shard-items", "3", "--set", f"duration={SECONDS}", "--quiet"]
        for size in ("64k", "200k", "400k", "700k"):   # full while writing the first or a later shard
            assert subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)]).returncode == 0
            shutil.rmtree(mnt / "out", ignore_errors=True)
            r = run(args)
            assert r.returncode == 1, (size, r.returncode, r.stderr)        # not a crash (negative)
            assert "No space left on device" in r.stderr, (size, r.stderr)
            assert str(mnt / "out") in r.stderr, (size, r.stderr)            # names the file
            left = os.listdir(mnt / "out")
            # no temporary file left (.lock is the folder's kept lock file, not a temporary)
            assert not [f for f in left if f.startswith(".") and f != ".lock"], (size, left)
            assert "index.json" not in left
            for f in left:                                                    # every shard left is whole
                if f.endswith(".h5"):
                    with h5py.File(mnt / "out" / f, "r") as h:
                        assert h["crc32/record"].shape[0] == h["id"].shape[0]
        assert subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)]).returncode == 0
        r = run(args)
        assert r.returncode == 0, r.stderr
        assert verify(mnt / "out").returncode == 0
    finally:
        subprocess.run(["umount", str(mnt)])


def test_strings_are_fixed_length_utf8_and_h5py_reads_them(ingested):
    index = json.load(open(ingested["out"] / "index.json"))
    for name in shards(ingested["out"]):
        with h5py.File(ingested["out"] / name, "r") as h:
            for k in ["format", "dataset", "split", "classes", "recipe", "tool_version", "spec_dtype", "checksum",
                      "ingest_cover", "ingest_failures"]:
                info = h5py.check_string_dtype(h.attrs.get_id(k).dtype)
                assert info is not None and info.encoding == "utf-8" and info.length is not None, (name, k, info)
            info = h5py.check_string_dtype(h["id"].dtype)
            assert info.encoding == "utf-8" and info.length == max([1] + [len(x) for x in h["id"][:]])
            assert [c.decode() for c in h.attrs["classes"]] == index["classes"]
            assert json.loads(h.attrs["recipe"].decode()) == index["recipe"]
            assert h.attrs["dataset"].decode() == index["dataset"]


def test_variable_length_string_in_version_2_is_refused_and_version_1_read(ingested, tmp_path):
    out = copy(ingested, tmp_path)
    name = shards(out)[0]
    with h5py.File(out / name, "r+") as h:
        rec = h.attrs["recipe"].decode()
        del h.attrs["recipe"]
        h.attrs["recipe"] = rec  # h5py writes a str as a variable-length string
    r = run([binary("store"), "verify", out])
    assert r.returncode == 1
    assert f"{name}: attribute recipe: variable-length string not accepted in format version 2" in r.stdout + r.stderr
    with h5py.File(out / name, "r+") as h:  # as a version 1 writer: every string variable-length
        for k in ["format", "dataset", "split", "tool_version", "spec_dtype"]:
            v = h.attrs[k].decode()
            del h.attrs[k]
            h.attrs[k] = v
        classes = [c.decode() for c in h.attrs["classes"]]
        h.attrs["classes"] = np.array(classes, dtype=h5py.string_dtype())
        ids = [x.decode() for x in h["id"][:]]
        del h["id"]
        h["id"] = np.array(ids, dtype=h5py.string_dtype())
        h.attrs["version"] = 1
    reindex(out)
    r = run([binary("store"), "verify", out])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{name}: format version 1: no checksums" in r.stdout
