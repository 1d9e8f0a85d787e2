"""Annotation files, every byte accounted for (issue 16): a bad row (a NUL byte, a control
character, invalid UTF-8, a time that is not a plain decimal, an id over the shard format's
limit) is one line of failures.tsv naming the file and line, and every other row is read and
ingested; labels are trimmed and case variants noted. The oracle is Python: its UTF-8 decoder,
str.split and float/Decimal, on the same bytes; the shards are read back with h5py."""
import decimal
import os
import random
import re

import pytest

from conftest import binary, run
from ingest_util import generate, read_manifest, read_notes, read_out

ID_MAX = 255  # store/store.h ST_ID_MAX


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four short H.264 + AAC clips (2 s) to point annotation rows at."""
    root = tmp_path_factory.mktemp("annot_clips")
    generate("ave", root, classes=2, per_class=2, seconds=2, bad=False, size="64x48")
    return sorted(str(root / "AVE" / n) for n in os.listdir(root / "AVE"))


# ---------------------------------------------------------------- the oracle

def lines_of(data):
    """(line number, bytes) of the rows of an annotation file, as documented: BOM skipped,
    LF or CRLF, blank lines (spaces and tabs only) passed over but counted."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    out = []
    for n, b in enumerate(parts, 1):
        if b.endswith(b"\r"):
            b = b[:-1]
        if b.strip(b" \t"):
            out.append((n, b))
    return out


def bad_reason(b):
    """None when the row is text; else the kind of its first bad byte."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError as e:
        head = b[:e.start]
        if b"\0" in head:
            return "NUL byte"
        if any(c < 0x20 and c != 9 or c == 0x7f for c in head):
            return "control character"
        return "invalid UTF-8"
    for c in s:
        if c == "\0":
            return "NUL byte"
        if ord(c) < 0x20 and c != "\t" or ord(c) == 0x7f:
            return "control character"
    return None


def canon(t):
    """The canonical text of a time: the shortest plain decimal of its float."""
    return format(decimal.Decimal(repr(float(t))).normalize(), "f")


def is_plain_decimal(t):
    return re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", t) is not None


def failures_by_line(failures):
    """{(file, line): reason} from failures.tsv rows whose reason names a file line."""
    out = {}
    for _id, _split, reason in failures:
        m = re.match(r"(\S+) line (\d+): (.*)", reason)
        if m:
            key = (m.group(1), int(m.group(2)))
            assert key not in out, f"two failures for {key}"
            out[key] = m.group(3)
    return out


def ave_tree(root, files, clips):
    """An AVE layout: files {name: bytes}; every VideoID of a text row links to a clip."""
    (root / "AVE").mkdir(parents=True)
    for name in ("trainSet.txt", "valSet.txt", "testSet.txt"):
        data = files.get(name, b"")
        (root / name).write_bytes(data)
        for _n, b in lines_of(data):
            f = b.split(b"&")
            if len(f) == 5 and bad_reason(b) is None and f[1] and b"/" not in f[1] and len(f[1]) <= 250:
                link = root / "AVE" / (f[1].decode() + ".mp4")
                if not os.path.lexists(link):
                    os.symlink(clips[len(os.listdir(root / "AVE")) % len(clips)], link)


def ingest_ave(root, out, *extra):
    return run([binary("ingest"), "--dataset", "ave", "--root", root, "--out", out, "--jobs", "2", "--quiet",
                "--set", "duration=2", *extra])


# ---------------------------------------------------------------- item 3: bad bytes

def test_nul_and_other_bad_bytes_fail_one_row_each_end_to_end(clips, tmp_path):
    files = {
        "trainSet.txt": b"Church bell&aaa&good&0&1\nChurch bell&b\0bb&good&0&1\nChurch bell&ccc&good&0&2\n"
                        + b"\0" * 16 + b"\nBark&ddd&good&1&2\n\n\nBark&eee&good&0&1",
        "valSet.txt": b"Caf\xe9&fff&good&0&1\r\nBark&ggg&good&0&1\r\n",
        "testSet.txt": b"Bark&hhh&good&0&1\nBa\x01rk&iii&good&0&1\nChurch bell&jjj&good&0&1\n"
                       b"Bark&k\xed\xa0\x80k&g&0&1\n",
    }
    root, out = tmp_path / "ave", tmp_path / "out"
    ave_tree(root, files, clips)
    r = ingest_ave(root, out)
    assert r.returncode == 1, r.stderr  # some rows failed, the others were ingested
    index, samples, failures = read_out(out)
    want_ids, want_bad = set(), {}
    for name, data in files.items():
        for n, b in lines_of(data):
            why = bad_reason(b)
            if why:
                want_bad[(name, n)] = why
            else:
                _c, vid, _q, st, en = b.decode().split("&")
                want_ids.add(f"{vid}_{canon(st)}_{canon(en)}")
    assert set(samples) == want_ids
    got = failures_by_line(failures)
    assert set(got) == set(want_bad), (got, want_bad)
    for key, why in want_bad.items():
        assert got[key].startswith(why), (key, got[key])
    assert len(failures) == len(want_bad)  # nothing else failed: every byte is a sample or a failure
    assert index["count"] + index["failed"] == sum(len(lines_of(d)) for d in files.values())


def test_every_reader_reads_past_a_bad_row(tmp_path):
    """CREMA-D, VGGSound and the TSV manifest: the rows after a bad one are read (--write-manifest)."""
    good_c = [b"1001_A_NEU_XX,NEU", b"1002_A_HAP_XX,HAP", b"1003_A_SAD_XX,SAD"]
    cremad = tmp_path / "cremad"
    cremad.mkdir()
    (cremad / "train.csv").write_bytes(b"\n".join([good_c[0], b"1009_A_N\0U_XX,NEU", good_c[1]]) + b"\n")
    (cremad / "test.csv").write_bytes(b"\n".join([b"1010_A_NEU_XX,N\xc3", good_c[2]]) + b"\n")
    r = run([binary("ingest"), "--dataset", "cremad", "--root", cremad, "--write-manifest", tmp_path / "c.tsv"])
    assert r.returncode == 0, r.stderr
    _, items = read_manifest(tmp_path / "c.tsv")
    assert [i["id"] for i in items] == [g.split(b",")[0].decode() for g in good_c]
    assert "train.csv line 2: NUL byte at column 9" in r.stderr
    assert "test.csv line 1: invalid UTF-8 (byte 0xc3) at column 16" in r.stderr

    vgg = tmp_path / "vgg"
    vgg.mkdir()
    (vgg / "train_tiny.csv").write_bytes(b"aaa,1,dog,train\r\nbbb,2,d\x1bg,train\r\nccc,3,dog,train\r\n")
    (vgg / "test_tiny.csv").write_bytes(b"\0\0\0\0\nddd,4,cat,test\n")
    r = run([binary("ingest"), "--dataset", "vggsound", "--root", vgg, "--write-manifest", tmp_path / "v.tsv"])
    assert r.returncode == 0, r.stderr
    _, items = read_manifest(tmp_path / "v.tsv")
    assert [i["id"] for i in items] == ["aaa_1", "ccc_3", "ddd_4"]
    assert "train_tiny.csv line 2: control character 0x1b" in r.stderr
    assert "test_tiny.csv line 1: NUL byte at column 1" in r.stderr

    tsv = tmp_path / "m.tsv"
    bad = b"b\t\tb.mp4\td\0g\ttrain\t-\t-"
    tsv.write_bytes(b"a\t\ta.mp4\tdog\ttrain\t-\t-\n" + bad + b"\nc\t\tc.mp4\tdog\ttrain\t-\t-\n")
    r = run([binary("ingest"), "--manifest", tsv, "--write-manifest", tmp_path / "t.tsv"])
    _, items = read_manifest(tmp_path / "t.tsv")
    assert [i["id"] for i in items] == ["a", "c"]
    assert f"b (-): manifest line 2: NUL byte at column {bad.index(0) + 1}\n" in r.stderr


def test_random_bytes_rows_are_classified_as_python_decodes_them(tmp_path):
    """Rows of random bytes in a TSV manifest: accepted exactly when Python's UTF-8 decoder and
    a control-character check accept them; every other row is one failure naming its line."""
    rng = random.Random(16)
    alphabet = [bytes([b]) for b in range(256)] + [b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x90\xb6",
                                                    b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]
    rows, want_ok = [], []
    for i in range(400):
        label = b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))).replace(b"\n", b"n")
        label = label.replace(b"\t", b"t").replace(b"\r", b"r")
        row = b"r%d\t\tv.mp4\tL" % i + label + b"\ttrain\t-\t-"
        rows.append(row)
        if bad_reason(row) is None:
            want_ok.append("r%d" % i)
    assert 50 < len(want_ok) < 350  # both kinds are exercised
    tsv = tmp_path / "m.tsv"
    tsv.write_bytes(b"\n".join(rows) + b"\n")
    r = run([binary("ingest"), "--manifest", tsv, "--write-manifest", tmp_path / "t.tsv"])
    assert r.returncode == 0, r.stderr
    _, items = read_manifest(tmp_path / "t.tsv")
    assert [i["id"] for i in items] == want_ok
    lines = {int(m) for m in re.findall(r"manifest line (\d+): ", r.stderr)}
    assert lines == {n for n, row in enumerate(rows, 1) if bad_reason(row) is not None}


def test_a_nul_byte_in_a_preset_is_refused_not_truncated(tmp_path):
    conf = tmp_path / "p.conf"
    conf.write_bytes(b"# preset\n\ndataset = x\nreader = ave\nframes = 3\0\nduration = 10\n")
    r = run([binary("ingest"), "--preset", conf, "--root", tmp_path, "--write-manifest", "-"])
    assert r.returncode == 2 and "line 5: NUL byte at column 11" in r.stderr, r.stderr


# ---------------------------------------------------------------- item 10: ids over the limit

def test_an_id_over_the_shard_limit_is_one_failure_and_the_others_are_ingested(clips, tmp_path):
    long_ok, long_bad = "A" * 200, "B" * 200
    tiny = ("0.0000000000000000000000001234567891234567", "1.2345678901234567")  # a segment to ingest
    files = {"trainSet.txt": f"Bark&{long_ok}&good&0&1\nBark&{long_bad}&good&{tiny[0]}&{tiny[1]}\n"
                             f"Bark&ok1&good&0&1\n".encode(),
             "testSet.txt": b"Bark&t&good&0&1\n"}
    root, out = tmp_path / "ave", tmp_path / "out"
    ave_tree(root, files, clips)
    r = ingest_ave(root, out)
    assert r.returncode == 1, r.stderr
    _, samples, failures = read_out(out)
    assert set(samples) == {f"{long_ok}_0_1", "ok1_0_1", "t_0_1"}
    bad_id = f"{long_bad}_{canon(tiny[0])}_{canon(tiny[1])}"
    assert len(bad_id.encode()) > ID_MAX
    assert failures_by_line(failures) == {("trainSet.txt", 2): f"id longer than {ID_MAX} bytes ({len(bad_id)})"}
    assert len(failures) == 1
    assert run([binary("store"), "verify", out]).returncode == 0


def test_ids_at_the_limit_in_bytes_not_characters(clips, tmp_path):
    """A manifest's ids of exactly ST_ID_MAX bytes are ingested and read back whole (writer
    and shard reader agree); one byte more is one failure. UTF-8 ids count bytes."""
    ids = {"x" * ID_MAX: True, "y" * (ID_MAX + 1): False,
           "\u20ac" * (ID_MAX // 3): True, "\u00e9" * 128: False}  # 255 and 256 bytes
    tsv = tmp_path / "m.tsv"
    tsv.write_text("".join(f"{i}\t\t{clips[k % len(clips)]}\tdog\ttrain\t0\t1\n" for k, i in enumerate(ids)),
                   encoding="utf-8")
    out = tmp_path / "out"
    r = run([binary("ingest"), "--manifest", tsv, "--out", out, "--jobs", "2", "--quiet", "--set", "duration=1"])
    assert r.returncode == 1, r.stderr
    _, samples, failures = read_out(out)
    assert set(samples) == {i for i, ok in ids.items() if ok}
    assert sorted(f[0] for f in failures) == sorted(i for i, ok in ids.items() if not ok)
    assert all(f"id longer than {ID_MAX} bytes" in f[2] for f in failures)
    assert run([binary("store"), "verify", out]).returncode == 0


# ---------------------------------------------------------------- labels

def test_labels_are_trimmed_and_case_variants_noted(clips, tmp_path):
    train = ["Bark &a", " Bark&b", "\tBark\t&c", "bark&d", "BARK&e", "Church bell  &f"]
    files = {"trainSet.txt": "".join(f"{x}&good&0&1\n" for x in train).encode(),
             "testSet.txt": b"Bark&t&good&0&1\n"}
    root, out = tmp_path / "ave", tmp_path / "out"
    ave_tree(root, files, clips)
    r = ingest_ave(root, out)
    assert r.returncode == 0, r.stderr  # a note fails no row
    index, samples, failures = read_out(out)
    assert failures == []
    want = {x.split("&")[1] + "_0_1": x.split("&")[0].strip(" \t") for x in train + ["Bark&t"]}
    assert {k: v["cls"] for k, v in samples.items()} == want
    assert index["classes"] == ["Bark", "bark", "BARK", "Church bell"]  # first in test, then train order
    rows = {c: list(want.values()).count(c) for c in index["classes"]}
    note = ("labels that differ only in case are separate classes: "
            + ", ".join(f'"{c}" ({rows[c]} row{"s" if rows[c] > 1 else ""})' for c in ["Bark", "bark", "BARK"]))
    assert read_notes(out) == [note]
    assert f"ingest: note: {note}\n" in r.stderr
    # `store index` derives the same failures.tsv (notes included) from plan.json and the shards
    tsv = (out / "failures.tsv").read_bytes()
    os.unlink(out / "failures.tsv")
    os.unlink(out / "index.json")
    assert run([binary("store"), "index", out]).returncode == 0
    assert (out / "failures.tsv").read_bytes() == tsv
    # a label that is only spaces is empty: one failure
    (root / "valSet.txt").write_bytes(b"  \t &g&good&0&1\n")
    r = run([binary("ingest"), "--dataset", "ave", "--root", root, "--write-manifest", tmp_path / "m.tsv"])
    assert "valSet.txt line 1: empty category" in r.stderr


def test_a_preset_class_list_refuses_other_labels_naming_the_case_variant(tmp_path):
    root = tmp_path / "cremad"
    root.mkdir()
    (root / "train.csv").write_text("1001_A_NEU_XX, NEU \n1002_A_NEU_XX,neu\n1003_A_HAP_XX,\"HAP\t\"\n")
    (root / "test.csv").write_text("1004_A_SAD_XX,SAD\n1005_A_XXX_XX,XXX\n")
    r = run([binary("ingest"), "--dataset", "cremad", "--root", root, "--write-manifest", tmp_path / "m.tsv"])
    classes, items = read_manifest(tmp_path / "m.tsv")
    assert classes == ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]  # the preset's list
    assert [(i["id"], i["label"]) for i in items] == [("1001_A_NEU_XX", "NEU"), ("1003_A_HAP_XX", "HAP"),
                                                      ("1004_A_SAD_XX", "SAD")]
    assert 'ingest: 1002_A_NEU_XX (train): unknown label "neu" (the class list has "NEU")' in r.stderr
    assert 'ingest: 1005_A_XXX_XX (test): unknown label "XXX"\n' in r.stderr
    assert "note:" not in r.stderr


# ---------------------------------------------------------------- times

BAD_TIMES = ["0x1", " 0.5", "0.5 ", "1e3", "1E0", "inf", "nan", "-0", "+1", "", ".", "1,5", "0..5", "\u0661"]


def test_times_one_canonical_form_and_strict_decimals(clips, tmp_path):
    good = [("v", "0", "1"), ("v", "0.0", "1"), ("v", "00", "1.000"), ("w", "0.50", "1.5"), ("x", ".5", "2.")]
    bad = [("y", t, "1") for t in BAD_TIMES] + [("z", "0", t) for t in BAD_TIMES]
    files = {"trainSet.txt": "".join(f"Bark&{v}&good&{a}&{b}\n" for v, a, b in good + bad).encode(),
             "testSet.txt": b"Bark&t&good&0&1\n"}
    root, out = tmp_path / "ave", tmp_path / "out"
    ave_tree(root, files, clips)
    r = ingest_ave(root, out)
    assert r.returncode == 1, r.stderr
    _, samples, failures = read_out(out)
    # the id rule with canonical times: "0&1", "0.0&1", "00&1.000" are one segment, a repeat (~2, ~3)
    want, seen = {"t_0_1": (0.0, 1.0)}, {}
    for v, a, b in good:
        base = f"{v}_{canon(a)}_{canon(b)}"
        seen[base] = seen.get(base, 0) + 1
        want[base if seen[base] == 1 else f"{base}~{seen[base]}"] = (float(a), float(b))
    assert sorted(samples) == sorted(want) and "v_0_1~3" in want and "w_0.5_1.5" in want and "x_0.5_2" in want
    for k, (a, b) in want.items():
        assert tuple(samples[k]["segment"]) == (a, b), k
    got = failures_by_line(failures)
    assert len(failures) == len(bad) == len(got)
    for n, (_v, a, b) in enumerate(bad, len(good) + 1):
        t, what = (a, "start") if a in BAD_TIMES else (b, "end")
        assert not is_plain_decimal(t)
        assert got[("trainSet.txt", n)].startswith(f'{what} "{t}" is not a plain decimal'), got[("trainSet.txt", n)]


def test_vggsound_start_is_canonical_in_the_id_and_looked_up_as_written(tmp_path):
    root = tmp_path / "vgg"
    root.mkdir()
    (root / "yt2_030.mp4").write_bytes(b"x")
    (root / "train_tiny.csv").write_text("yt,0,dog,train\nyt,00,dog,train\nyt,0.0,dog,train\nyt2,030,dog,train\n"
                                         "yt3,0x1e,dog,train\n")
    (root / "test_tiny.csv").write_text("yt4,1.50,cat,test\n")
    r = run([binary("ingest"), "--dataset", "vggsound", "--root", root, "--write-manifest", tmp_path / "m.tsv"])
    _, items = read_manifest(tmp_path / "m.tsv")
    assert [i["id"] for i in items] == ["yt_0", "yt2_30", "yt4_1.5"]
    assert items[1]["video"] == str(root / "yt2_030.mp4")
    assert r.stderr.count("duplicate id (kept the first, split train)") == 2
    assert 'train_tiny.csv line 5: start "0x1e" is not a plain decimal' in r.stderr


def test_manifest_times_strict_and_written_back_canonical(tmp_path):
    """TSV start/end: random plain decimals are written back (--write-manifest) as Python's
    shortest float text; every other form is one failure."""
    rng = random.Random(7)
    rows, want = [], []
    for i in range(300):
        ip = str(rng.randint(0, 10 ** rng.randint(0, 7) - 1)).zfill(rng.randint(1, 3))
        fp = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 20)))
        a = ip + ("." + fp if fp or rng.random() < 0.3 else "")
        rows.append(f"r{i}\t\tv.mp4\tdog\ttrain\t{a}\t{a}")
        want.append((f"r{i}", canon(a)))
    for j, t in enumerate(BAD_TIMES):  # "" with an end: not the whole-clip form ("-"/"" for both) either
        rows.append(f"b{j}\t\tv.mp4\tdog\ttrain\t{t}\t1")
    rows.append("b99\t\tv.mp4\tdog\ttrain\t-\t3")  # one '-': not the whole clip
    tsv = tmp_path / "m.tsv"
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    r = run([binary("ingest"), "--manifest", tsv, "--write-manifest", tmp_path / "t.tsv"])
    _, items = read_manifest(tmp_path / "t.tsv")
    assert [(i["id"], i["start"]) for i in items] == want
    assert all(i["start"] == i["end"] and float(i["start"]) == float(w[1]) for i, w in zip(items, want))
    assert r.stderr.count("is not a plain decimal number of seconds") == len(rows) - len(want)


def test_when_no_row_is_left_the_refused_rows_are_still_named(tmp_path):
    root = tmp_path / "ave"
    root.mkdir()
    (root / "trainSet.txt").write_bytes(b"\0" * 64 + b"\n")
    (root / "valSet.txt").write_bytes(b"Bark&v&good&0x1&3\n")
    (root / "testSet.txt").write_bytes(b"")
    r = run([binary("ingest"), "--dataset", "ave", "--root", root, "--out", tmp_path / "out"])
    assert r.returncode == 1
    assert "ingest: - (train): trainSet.txt line 1: NUL byte at column 1\n" in r.stderr
    assert 'ingest: v (val): valSet.txt line 1: start "0x1" is not a plain decimal' in r.stderr
    assert r.stderr.rstrip().endswith("no classes")
