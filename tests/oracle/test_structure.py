"""tools/check_structure.py: the house rules it enforces, on small made-up trees,
and on the project itself (what `make test` relies on)."""
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "tools", "check_structure.py")


def run_check(root):
    return subprocess.run([sys.executable, CHECK, str(root)], capture_output=True, text=True)


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def function(name, body_lines):
    return "int %s(void)\n{\n%s}\n" % (name, "    x++;\n" * body_lines)


def test_clean_tree_passes(tmp_path):
    write(tmp_path, "common/a.h", "int a(void);\n")
    write(tmp_path, "store/s.c", '#include "common/a.h"\n#include "store/s.h"\n' + function("s", 148))
    write(tmp_path, "store/main.c", '#include "train/t.h"\n' + function("main", 10))
    r = run_check(tmp_path)
    assert r.returncode == 0, r.stdout


def test_long_function_fails_outside_tests_only(tmp_path):
    write(tmp_path, "train/t.c", function("t", 149))          # 151 lines with its braces
    write(tmp_path, "tests/unit/u.c", function("u", 400))
    r = run_check(tmp_path)
    assert r.returncode == 1
    assert "train/t.c:2: function of 151 lines" in r.stdout
    assert "tests/unit" not in r.stdout


def test_upward_and_sibling_includes_fail(tmp_path):
    write(tmp_path, "store/s.c", '#include "ingest/i.h"\n')
    write(tmp_path, "frames/f.c", '#include "spectro/sp.h"\n')
    write(tmp_path, "train/x.c", '#include "tests/helper.h"\n')
    r = run_check(tmp_path)
    assert r.returncode == 1
    assert "store/s.c:1: store/ (rank 2) may not include ingest/ (rank 3)" in r.stdout
    assert "frames/f.c:1: frames/ (rank 1) may not include spectro/ (rank 1)" in r.stdout
    assert "train/x.c:1: a library or command may not include tests/" in r.stdout


def test_getopt_outside_common_fails(tmp_path):
    write(tmp_path, "common/cm_opts.c", "#include <getopt.h>\nint f(void) { return getopt_long(0, 0, 0, 0, 0); }\n")
    write(tmp_path, "spectro/main.c", "#include <getopt.h>\n")
    write(tmp_path, "frames/main.c", "int main(int c, char **v)\n{\n    while (getopt (c, v, \"o:\") != -1)\n        ;\n}\n")
    write(tmp_path, "store/main.c", "/* cm_opts replaced the getopt loop */\nint my_getopt_like(void);\n")
    r = run_check(tmp_path)
    assert r.returncode == 1
    assert "spectro/main.c:1: getopt outside common/" in r.stdout
    assert "frames/main.c:3: getopt outside common/" in r.stdout
    assert "common/cm_opts.c" not in r.stdout
    assert "store/main.c" not in r.stdout


def test_unknown_module_fails(tmp_path):
    write(tmp_path, "newmod/n.c", '#include "common/a.h"\n')
    r = run_check(tmp_path)
    assert r.returncode == 1
    assert "newmod/ has no rank" in r.stdout



def test_hdf5_attribute_calls_only_in_h5(tmp_path):
    """One home for HDF5 attributes and error printing: h5/ may call H5Acreate2,
    H5Awrite, H5Aread, H5Eset_auto2, H5dont_atexit; a library or a command elsewhere
    may not (tests may, to write damaged or legacy files)."""
    write(tmp_path, "h5/h5.c", '#include "common/a.h"\nint f(void) { return H5Acreate2(0, "a", 0, 0, 0, 0); }\n')
    write(tmp_path, "train/ckpt.c", '#include "h5/h5.h"\nint g(void) { return H5Awrite(0, 0, 0); }\n')
    write(tmp_path, "spectro/main.c", "int m(void) { H5Eset_auto2(0, 0, 0); return H5Aread (0, 0, 0); }\n")
    write(tmp_path, "tests/unit/t.c", "int t(void) { return H5Acreate2(0, 0, 0, 0, 0, 0); }\n")
    r = run_check(tmp_path)
    assert r.returncode == 1
    assert "train/ckpt.c:2: H5Awrite outside h5/" in r.stdout
    assert "spectro/main.c:1: H5Eset_auto2 outside h5/" in r.stdout
    assert "spectro/main.c:1: H5Aread outside h5/" in r.stdout
    assert "h5/h5.c" not in r.stdout and "tests/unit" not in r.stdout
    assert "h5/ (rank 0.5)" not in r.stdout  # h5 -> common goes down


def test_h5_sits_between_common_and_the_media_modules(tmp_path):
    write(tmp_path, "h5/h5.c", '#include "store/store.h"\n')
    write(tmp_path, "spectro/sp.c", '#include "h5/h5.h"\n')
    write(tmp_path, "common/c.c", '#include "h5/h5.h"\n')
    r = run_check(tmp_path)
    assert r.returncode == 1
    assert "h5/h5.c:1: h5/ (rank 0.5) may not include store/ (rank 2)" in r.stdout
    assert "common/c.c:1: common/ (rank 0) may not include h5/ (rank 0.5)" in r.stdout
    assert "spectro/sp.c" not in r.stdout



def test_method_files_and_table_rows_match(tmp_path):
    """Rule 4: a method file that is no row, and a row without its file, are named."""
    write(tmp_path, "train/methods.c", '#define METHOD_ROWS(X) X(none) X(kd)\nstatic const row t[] = {METHOD_ROWS(ROW)\n'
                                        '    {"pretrain", &tr_method_pretrain}};\n')
    for n in ("none", "pretrain", "extra"):
        write(tmp_path, "train/method_%s.c" % n, "int x_%s;\n" % n)
        write(tmp_path, "train/method_%s.h" % n, "\n")
    r = run_check(tmp_path)
    assert r.returncode == 1
    assert "train/method_extra.c: a method file that is no row of train/methods.c" in r.stdout
    assert "train/methods.c: the row kd has no train/method_kd.c" in r.stdout
    assert "the row kd has no train/method_kd.h" in r.stdout
    assert "none" not in r.stdout and "pretrain" not in r.stdout


def test_circle_between_train_files_fails(tmp_path):
    """Rule 5: two train/ files that call each other (through a third) are a circle;
    a static function of the same name or a use in a comment is not a use."""
    write(tmp_path, "train/a.c", "int tr_a(void)\n{\n    return tr_b();\n}\n")
    write(tmp_path, "train/b.c", "int tr_b(void)\n{\n    return tr_c();\n}\n")
    write(tmp_path, "train/c.c", "int tr_c(void)\n{\n    return tr_a();\n}\n")
    write(tmp_path, "train/d.c", "static int tr_d(void)\n{\n    return tr_a(); /* tr_e() */\n}\n")
    write(tmp_path, "train/e.c", "int tr_e(void)\n{\n    return 0; /* tr_d() */\n}\nstatic int tr_d(void);\n")
    r = run_check(tmp_path)
    assert r.returncode == 1
    assert "train/: a circle of files that use one another: train/a.c -> train/b.c -> train/c.c -> train/a.c" in r.stdout
    assert "train/d.c" not in r.stdout and "train/e.c" not in r.stdout
    os.remove(tmp_path / "train" / "c.c")
    assert run_check(tmp_path).returncode == 0


def test_test_headers_stay_with_tests(tmp_path):
    """Rule 6: NAME_test.h is for tests/, bench/ and the module's NAME*.c."""
    write(tmp_path, "train/system_test.h", "int tr_t(void);\n")
    write(tmp_path, "train/system.c", '#include "train/system_test.h"\n')
    write(tmp_path, "train/system_extra.c", '#include "train/system_test.h"\n')
    write(tmp_path, "tests/unit/u.c", '#include "train/system_test.h"\n')
    write(tmp_path, "bench/b/b.c", '#include "train/system_test.h"\n')
    write(tmp_path, "train/ckpt.c", '#include "train/system_test.h"\n')
    write(tmp_path, "train/main.c", '#include "train/system_test.h"\n')
    r = run_check(tmp_path)
    assert r.returncode == 1
    bad = sorted(line.split(":")[1].strip() for line in r.stdout.splitlines())
    assert bad == ["train/ckpt.c", "train/main.c"], r.stdout


def test_project_follows_the_rules():
    """No function outside tests/ over 150 lines; every include goes down the layers
    of docs/ARCHITECTURE.md."""
    r = run_check(ROOT)
    assert r.returncode == 0, r.stdout


HEADER = """struct be_ops {
    const char *name;
    void (*destroy)(be_ctx *b);
    /* ---- convolution ---- */
    void (*conv_fwd)(be_ctx *b, const be_conv_shape *s, const float *x,
                     const float *w, float *y);
    /* ---- optional (NULL when the backend lacks them) ---- */
    const char *(*device_name)(be_ctx *b);
};
"""


def write_tables(root, cpu, cuda, cover):
    write(root, "kernels/kernels.h", HEADER)
    write(root, "kernels/cpu/table.c", "const be_ops t = {\n" + "".join("    .%s = cpu_%s,\n" % (f, f) for f in cpu) + "};\n")
    write(root, "kernels/cuda/table.c", "const be_ops t = {\n" + "".join("    .%s = cu_%s,\n" % (f, f) for f in cuda) + "};\n")
    write(root, "tests/gpu/opcompare.c", "static const op_cover COVER[] = {\n" + "".join("    OP(%s, T_X),\n" % f for f in cover) + "};\n")


def test_op_tables_complete_pass(tmp_path):
    """Both tables and opcompare name every entry; the CPU may omit the optional ones."""
    write_tables(tmp_path, ["destroy", "conv_fwd"], ["destroy", "conv_fwd", "device_name"],
                 ["destroy", "conv_fwd", "device_name"])
    r = run_check(tmp_path)
    assert r.returncode == 0, r.stdout


def test_op_missing_from_a_table_or_opcompare_fails(tmp_path):
    """An op of kernels/kernels.h missing from a backend's table or from opcompare's
    table is named (the entry is found by name, wherever it sits in the file)."""
    write_tables(tmp_path, ["conv_fwd"], ["conv_fwd", "destroy"], ["device_name", "destroy"])
    r = run_check(tmp_path)
    assert r.returncode == 1
    assert "kernels/cpu/table.c: no entry for be_ops.destroy (kernels/kernels.h)" in r.stdout
    assert "kernels/cuda/table.c: no entry for be_ops.device_name" in r.stdout
    assert "tests/gpu/opcompare.c: no entry for be_ops.conv_fwd" in r.stdout
    assert "cpu/table.c: no entry for be_ops.device_name" not in r.stdout  # optional on the CPU
    assert r.stdout.count("no entry") == 3
