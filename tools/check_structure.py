#!/usr/bin/env python3
"""House rules a compiler does not check, checked on every `make test`.

1. No function outside tests/ is longer than MAX_LINES lines (from its opening
   brace to its closing brace). The style puts both braces of a function body
   alone in column 0, which is what this scan relies on.
2. Layers include only downwards. Each library module has a rank; a file may
   include headers of its own module or of modules of lower rank. A module's
   command (`MODULE/main.c`) sits on top of every library, so it may include any
   of them. tests/, bench/ and tools/ sit above everything.
3. Every entry of the op table (struct be_ops in kernels/kernels.h) is filled
   by name in both backends' tables (kernels/cpu/table.c, kernels/cuda/table.c;
   the CPU may leave out the entries of the header's "optional" section) and
   has a row in tests/gpu/opcompare.c's table (OP(entry, test)), so that no op
   can be missing from a backend or from the GPU comparison.
4. A method is one unit: every train/method_NAME.c (with its header) is a row
   of the table in train/methods.c, and every row has its file and header.
5. No circle inside a module (NO_CIRCLE): no two .c files of a module (main.c aside)
   use each other's functions or objects, directly or through others (e.g.
   train/system.c calls train/ddp.c and reaches the method files through the
   table, none of which calls back into system.c).
6. Test-only headers (NAME_test.h) are included only by tests/, bench/ and
   the module's own NAME.c / NAME_*.c that implement them.
7. One home for HDF5's attribute and error calls: outside tests/, only h5/
   creates, writes or reads an attribute or touches libhdf5's error printing
   (H5_ONLY below); every other module calls h5/h5.h.
8. One command-line grammar: no getopt outside common/. Every command reads
   its options through the option tables of common/cm_opts.h (the same -h,
   --version, -q, -v, -j, error shape and generated --help everywhere).

Usage: check_structure.py [ROOT]   (exit 1 and one line per violation)
"""
import os
import re
import sys

MAX_LINES = 150

# The layer order of docs/ARCHITECTURE.md ("Layers"): lower ranks know nothing
# of higher ones. Equal ranks are siblings and may not include each other.
# h5/ sits between common/ and the media modules (rank 0.5: spectro's command
# and store use it, it uses only common/).
RANKS = {
    "common": 0,
    "h5": 0.5,
    "spectro": 1,
    "frames": 1,
    "kernels": 1,
    "store": 2,
    "collective": 2,
    "ingest": 3,
    "train": 3,
}
TOP = {"tests", "bench", "tools"}
SOURCES = (".c", ".h", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([A-Za-z0-9_]+)/')
GETOPT = re.compile(r'<getopt\.h>|\bgetopt(?:_long(?:_only)?)?\s*\(')
# The HDF5 calls whose one home is h5/ (attributes, error printing, close at exit).
H5_ONLY = re.compile(r'\b(H5Acreate\w*|H5Awrite|H5Aread|H5Eset_auto\w*|H5Eget_auto\w*|H5Ewalk\w*|H5dont_atexit)\s*\(')


def source_files(root):
    for top in sorted(os.listdir(root)):
        path = os.path.join(root, top)
        if top.startswith(".") or top.startswith("build") or not os.path.isdir(path):
            continue
        for dirpath, dirnames, files in os.walk(path):
            dirnames.sort()
            for f in sorted(files):
                if f.endswith(SOURCES):
                    yield os.path.relpath(os.path.join(dirpath, f), root)


def long_functions(text):
    """(first line, length) of each function body longer than MAX_LINES."""
    out, start = [], None
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("{") and line.strip() == "{":
            start = i
        elif start is not None and line.startswith("}"):
            if i - start + 1 > MAX_LINES:
                out.append((start, i - start + 1))
            start = None
    return out


def layer_violations(rel, text):
    module = rel.split(os.sep)[0]
    if module in TOP:
        return []
    is_command = os.path.basename(rel) == "main.c"
    own = RANKS.get(module)
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        m = INCLUDE.match(line)
        if not m or m.group(1) == module:
            continue
        dep = m.group(1)
        if dep in TOP:
            out.append((i, dep, "a library or command may not include " + dep + "/"))
        elif dep not in RANKS:
            out.append((i, dep, "unknown module " + dep + "/ (add it to RANKS and docs)"))
        elif own is None:
            out.append((i, dep, "module " + module + "/ has no rank (add it to RANKS and docs)"))
        elif not is_command and RANKS[dep] >= own:
            out.append((i, dep, "%s/ (rank %g) may not include %s/ (rank %g)"
                        % (module, own, dep, RANKS[dep])))
    return out


def home_violations(rel, text):
    """Rule 7: HDF5 attribute/error calls outside h5/ (and tests/)."""
    module = rel.split(os.sep)[0]
    if module in ("tests", "h5"):
        return []
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        for m in H5_ONLY.finditer(line):
            out.append((i, m.group(1) + " outside h5/ (use h5/h5.h: one home for HDF5 attributes)"))
    return out


METHOD_ROWS = re.compile(r"#define\s+METHOD_ROWS\(X\)(.*)")
METHOD_REF = re.compile(r"&tr_method_([a-z0-9_]+)")


def method_problems(root):
    """Rule 4: method files against the rows of train/methods.c."""
    table = os.path.join(root, "train", "methods.c")
    if not os.path.exists(table):
        return []
    text = open(table, encoding="utf-8").read()
    rows = set()
    m = METHOD_ROWS.search(text)
    if m:
        rows.update(re.findall(r"X\((\w+)\)", m.group(1)))
    rows.update(n for n in METHOD_REF.findall(text) if n != "def")
    files = {f[len("method_"):-2] for f in os.listdir(os.path.join(root, "train"))
             if f.startswith("method_") and f.endswith(".c")}
    out = []
    for n in sorted(files - rows):
        out.append("train/method_%s.c: a method file that is no row of train/methods.c" % n)
    for n in sorted(rows):
        for ext in (".c", ".h"):
            if not os.path.exists(os.path.join(root, "train", "method_" + n + ext)):
                out.append("train/methods.c: the row %s has no train/method_%s%s" % (n, n, ext))
    return out


DEFINITION = re.compile(r"^(?!static\b|typedef\b|extern\b|return\b)[A-Za-z_][\w \*]*?\b([a-z][a-z0-9]*_\w+)\s*(\(|=|\[)")
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\])*\"", re.S)


# The modules rule 5 holds for (collective/'s two plugin halves still call
# each other; kernels/ is checked by its own op-table rule).
NO_CIRCLE = ("train",)


def cycle_problems(root, texts):
    """Rule 5: a circle among the .c files of one module (main.c aside): file A
    uses file B when it names a function or object B defines (not static)."""
    out = []
    for mod in NO_CIRCLE:
        files = {rel: COMMENT.sub(" ", text) for rel, text in texts.items()
                 if rel.split(os.sep)[0] == mod and rel.endswith(".c") and os.path.basename(rel) != "main.c"}
        owner = {}
        for rel, text in files.items():
            for line in text.splitlines():
                m = DEFINITION.match(line)
                if m and not line.rstrip().endswith(";"):
                    owner.setdefault(m.group(1), rel)
        edges = {rel: set() for rel in files}
        for rel, text in files.items():
            for name in set(re.findall(r"\b[a-z][a-z0-9]*_\w+\b", text)):
                o = owner.get(name)
                if o and o != rel:
                    edges[rel].add(o)
        state, stack = {}, []

        def visit(u):
            state[u] = 1
            stack.append(u)
            for v in sorted(edges[u]):
                if state.get(v) == 1:
                    cyc = stack[stack.index(v):] + [v]
                    out.append("%s/: a circle of files that use one another: %s" % (mod, " -> ".join(cyc)))
                elif v not in state:
                    visit(v)
            stack.pop()
            state[u] = 2

        for u in sorted(edges):
            if u not in state:
                visit(u)
    return out


def test_header_problems(rel, text):
    """Rule 6: NAME_test.h only in tests/, bench/ and the module's NAME*.c."""
    top = rel.split(os.sep)[0]
    if top in ("tests", "bench"):
        return []
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        m = re.match(r'^\s*#\s*include\s+"([A-Za-z0-9_]+)/([A-Za-z0-9_]+)_test\.h"', line)
        if not m:
            continue
        mod, name = m.group(1), m.group(2)
        base = os.path.basename(rel)
        own = top == mod and base.endswith(".c") and (base == name + ".c" or base.startswith(name + "_"))
        if not own:
            out.append("%s:%d: %s/%s_test.h is for tests/ and bench/ (and %s/%s*.c, which implement it)"
                       % (rel, i, mod, name, mod, name))
    return out


def getopt_uses(rel, text):
    """Lines that parse a command line by getopt outside common/."""
    if rel.split(os.sep)[0] == "common":
        return []
    return [(i, "getopt outside common/: read options through common/cm_opts.h")
            for i, line in enumerate(text.splitlines(), 1) if GETOPT.search(line)]


OPS_HEADER = os.path.join("kernels", "kernels.h")
OP_TABLES = {  # file: (how an entry is written, may it omit the optional entries)
    os.path.join("kernels", "cpu", "table.c"): (r"^\s*\.(\w+)\s*=", True),
    os.path.join("kernels", "cuda", "table.c"): (r"^\s*\.(\w+)\s*=", False),
    os.path.join("tests", "gpu", "opcompare.c"): (r"\bOP\((\w+),", False),
}


def op_fields(header_text):
    """(every function entry of struct be_ops, the ones in its optional section)."""
    body = re.search(r"^struct be_ops \{(.*?)^\};", header_text, re.S | re.M).group(1)
    fields, optional, in_optional = [], set(), False
    for line in body.splitlines():
        if re.match(r"\s*/\* ---- ", line):
            in_optional = "---- optional" in line
        m = re.match(r"\s*[A-Za-z_][\w\s\*]*\(\*(\w+)\)\(", line)
        if m:
            fields.append(m.group(1))
            if in_optional:
                optional.add(m.group(1))
    return fields, optional


def op_table_violations(root):
    path = os.path.join(root, OPS_HEADER)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        fields, optional = op_fields(f.read())
    out = []
    for rel, (pattern, may_omit_optional) in OP_TABLES.items():
        full = os.path.join(root, rel)
        if not os.path.exists(full):
            out.append("%s: missing (the op table %s needs it)" % (rel, OPS_HEADER))
            continue
        with open(full, encoding="utf-8") as f:
            named = set(re.findall(pattern, f.read(), re.M))
        for field in fields:
            if field not in named and not (may_omit_optional and field in optional):
                out.append("%s: no entry for be_ops.%s (%s)" % (rel, field, OPS_HEADER))
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    problems = []
    texts = {}
    for rel in source_files(root):
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        texts[rel] = text
        problems.extend(test_header_problems(rel, text))
        if rel.split(os.sep)[0] != "tests":
            for line, n in long_functions(text):
                problems.append("%s:%d: function of %d lines (at most %d)" % (rel, line, n, MAX_LINES))
        for line, _dep, why in layer_violations(rel, text):
            problems.append("%s:%d: %s" % (rel, line, why))
        for line, why in getopt_uses(rel, text):
            problems.append("%s:%d: %s" % (rel, line, why))
        for line, why in home_violations(rel, text):
            problems.append("%s:%d: %s" % (rel, line, why))
    problems.extend(method_problems(root))
    problems.extend(cycle_problems(root, texts))
    problems += op_table_violations(root)
    for p in problems:
        print("check_structure: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
