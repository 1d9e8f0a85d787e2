#!/bin/sh
# Seconds per C2KD training step of the full-width ResNet-18 pair (audio
# 257x1004 teacher, visual 224x224 student, batch 16, 28 classes): the C
# trainer (CPU backend, OpenBLAS) against PyTorch (float32, CPU), alternated
# round by round, both pinned to the same cores with the same thread count.
# Usage: bench/train-cpu/run.sh [ROUNDS] [CPUS]
#   ROUNDS: alternations (default 5); CPUS: taskset list (default all).
# Prints the median seconds per step of each side and the median of the
# per-round ratios torch/c (> 1: the C trainer is faster).
#
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for both sides: some
# workplaces force OPENBLAS_CORETYPE=Haswell (with a matching L2 size) on
# processors that old OpenBLAS builds misdetect. On an AVX-512 machine that
# makes Debian's OpenBLAS 0.3.21 use its AVX2 kernels, ~1.7x slower sgemm
# (bench/backend-cpu/RESULTS.md). Left alone, OpenBLAS picks its kernels from
# the CPU (Cooperlake/SkylakeX on AVX-512), which is what a user's machine
# does; PyTorch's convolutions (oneDNN) do not use OpenBLAS. The backend's
# oracle tests pass with both variables unset as well.
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
CPUS=${2:-0-$(($(nproc) - 1))}
NT=$(taskset -c "$CPUS" nproc)
make -s build/bench/stepbench
PY=${PYTHON:-/usr/bin/python3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
i=0
while [ "$i" -lt "$ROUNDS" ]; do
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c "$CPUS" \
    build/bench/stepbench --threads "$NT" --warmup 1 --reps 2 | sed "s/^/$i /" >>"$out"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c "$CPUS" \
    "$PY" bench/train-cpu/torch_step.py --threads "$NT" --warmup 1 --reps 2 | sed "s/^/$i /" >>"$out"
  i=$((i + 1))
done
lscpu | sed -n 's/^Model name: *//p' | head -1
echo "cpus: $CPUS ($NT threads each side), $ROUNDS rounds x 2 timed steps per side"
"$PY" - "$out" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for r, side, t in rows:
    by.setdefault(side, {}).setdefault(int(r), []).append(float(t))
for side in ("c", "torch"):
    allt = [t for ts in by[side].values() for t in ts]
    print(f"{side:6s} median {st.median(allt):.3f} s/step  min {min(allt):.3f}  max {max(allt):.3f}  ({len(allt)} steps)")
ratios = [st.median(by["torch"][r]) / st.median(by["c"][r]) for r in sorted(by["c"])]
print("per-round torch/c:", " ".join(f"{x:.2f}" for x in ratios))
print(f"ratio torch/c (median of rounds): {st.median(ratios):.2f}")
PY
