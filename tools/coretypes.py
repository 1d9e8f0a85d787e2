#!/usr/bin/env python3
"""Which OpenBLAS kernel sets (OPENBLAS_CORETYPE) this machine can stand in for.

    tools/coretypes.py [--pick N] NAME...

Prints, on one line, those of NAME... that this machine can run and that
OpenBLAS really takes: the CPU has the instructions the kernels need
(/proc/cpuinfo), and OpenBLAS, started with OPENBLAS_CORETYPE=NAME, reports
NAME as its core (openblas_get_corename); OpenBLAS itself falls back silently
to the detected core for a name it does not know (0.3.21: SapphireRapids).
--pick N: the first N of them that are not the machine's own core.
Each name left out is said on stderr with the reason. docs/TESTING.md.
"""
import ctypes
import os
import subprocess
import sys

# The instructions each kernel set uses (OpenBLAS kernel/x86_64/KERNEL.<CORE>).
NEEDS = {
    "Prescott": ["sse3"],
    "Core2": ["ssse3"],
    "Nehalem": ["sse4_2"],
    "Sandybridge": ["avx"],
    "Haswell": ["avx2", "fma"],
    "Zen": ["avx2", "fma"],
    "SkylakeX": ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"],
    "Cooperlake": ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"],
}
CPUINFO_ALIAS = {"sse3": "pni"}


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def corename(coretype=None):
    """OpenBLAS's core in a fresh process (the choice is made when the library loads)."""
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    code = ("import ctypes; l = ctypes.CDLL('libopenblas.so.0'); "
            "l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return r.stdout.strip() if r.returncode == 0 else ""


def main(argv):
    pick = None
    if len(argv) >= 2 and argv[0] == "--pick":
        pick, argv = int(argv[1]), argv[2:]
    try:
        ctypes.CDLL("libopenblas.so.0")
    except OSError as e:
        print(f"coretypes: libopenblas.so.0 not loadable ({e}): no kernel set to choose", file=sys.stderr)
        print()
        return 0
    flags = cpu_flags()
    own = corename()
    usable = []
    for name in argv:
        missing = [i for i in NEEDS.get(name, ["(unknown kernel set)"]) if CPUINFO_ALIAS.get(i, i) not in flags]
        if missing:
            print(f"coretypes: {name} left out: this CPU lacks {' '.join(missing)}", file=sys.stderr)
            continue
        got = corename(name)
        if got.lower() != name.lower():
            print(f"coretypes: {name} left out: OpenBLAS runs {got or '?'} when asked for it", file=sys.stderr)
            continue
        if pick is not None and got.lower() == own.lower():
            continue
        usable.append(name)
    if pick is not None:
        usable = usable[:pick]
    print(" ".join(usable))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
