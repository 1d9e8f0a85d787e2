"""The datasets are the presets manifests/NAME.conf, and the readers one table
(ingest/ig_readers.c): ingest's --help and its errors, the Makefile (`make
datasets`, `make ingest`) and tools/reproduce all read them, so a new preset file
appears everywhere at once and no list of names is written by hand."""
import os
import re
import shutil
import subprocess
import sys

from conftest import binary, run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PRESETS = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "manifests")) if f.endswith(".conf"))


def help_datasets(env=None):
    r = run([binary("ingest"), "--help"], env=env)
    assert r.returncode == 0, r.stderr
    m = re.search(r"^Datasets \(.*\): (.*)$", r.stdout, re.M)
    assert m, r.stdout
    return r.stdout, m.group(1).split(", ")


def test_ingest_help_lists_the_preset_files_and_the_readers():
    out, names = help_datasets()
    assert names == PRESETS
    readers = re.findall(r"^  (\w+) +\S", out.split("Readers")[1], re.M)
    assert readers == ["ave", "cremad", "vggsound", "manifest"]
    # every preset names one of the table's readers
    for p in PRESETS:
        with open(os.path.join(ROOT, "manifests", p + ".conf")) as f:
            reader = re.search(r"^reader\s*=\s*(\S+)", f.read(), re.M).group(1)
        assert reader in readers, (p, reader)


def test_a_new_preset_file_is_a_new_dataset(tmp_path):
    shutil.copy(os.path.join(ROOT, "manifests", "demo.conf"), tmp_path / "extra.conf")
    (tmp_path / "notapreset.txt").write_text("x")
    env = dict(os.environ, C2KD_MANIFESTS=str(tmp_path))
    _, names = help_datasets(env)
    assert names == sorted(PRESETS + ["extra"])
    r = run([binary("ingest"), "--dataset", "nope", "--root", str(tmp_path)], env=env)
    assert r.returncode == 2
    assert "ingest: no preset manifests/nope.conf (known: %s)" % ", ".join(sorted(PRESETS + ["extra"])) in r.stderr
    # the new one is found (it then fails on its empty root, not as a usage error about the name)
    r = run([binary("ingest"), "--dataset", "extra", "--root", str(tmp_path), "--out", str(tmp_path / "o")],
            env=env)
    assert "no preset" not in r.stderr


def test_unknown_reader_names_the_table():
    r = run([binary("ingest"), "--dataset", "demo", "--root", ROOT, "--set", "reader=foo"])
    assert r.returncode == 2
    assert 'reader: unknown value "foo" (readers: ave, cremad, vggsound, manifest)' in r.stderr


def test_makefile_and_reproduce_read_the_same_list():
    r = subprocess.run(["make", "--no-print-directory", "-s", "datasets"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == PRESETS
    # -o: the binary is not (re)built for this check of the recipe
    r = subprocess.run(["make", "--no-print-directory", "-o", "build/bin/ingest", "ingest"], cwd=ROOT,
                       capture_output=True, text=True)
    assert "one of: %s" % " ".join(PRESETS) in r.stdout
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "reproduce"), "--data", "x", "--out", "y",
                        "--dataset", "nope"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "choose from %s" % ", ".join("'%s'" % p for p in PRESETS) in r.stderr
