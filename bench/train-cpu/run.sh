#!/bin/sh
# Seconds per C2KD training step of the full-width ResNet-18 pair (audio
# 257x1004 teacher, visual 224x224 student, batch 16, 28 classes): the C
# trainer (CPU backend, OpenBLAS) against PyTorch (float32, CPU), alternated,
# both on the same cores. Usage: bench/train-cpu/run.sh [ROUNDS] [CPUS]
#   ROUNDS: alternations (default 3); CPUS: taskset list (default all).
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
CPUS=${2:-0-$(($(nproc) - 1))}
NT=$(taskset -c "$CPUS" nproc)
make -s build/bench/stepbench
PY=${PYTHON:-/usr/bin/python3}
out=$(mktemp)
i=0
while [ "$i" -lt "$ROUNDS" ]; do
  taskset -c "$CPUS" build/bench/stepbench --threads "$NT" --warmup 1 --reps 2 >>"$out"
  taskset -c "$CPUS" "$PY" bench/train-cpu/torch_step.py --threads "$NT" --warmup 1 --reps 2 >>"$out"
  i=$((i + 1))
done
lscpu | sed -n 's/^Model name: *//p' | head -1
echo "cpus: $CPUS ($NT threads each side)"
awk '{s[$1]+=$2; n[$1]++; if (!($1 in mn) || $2 < mn[$1]) mn[$1]=$2}
     END {for (k in s) printf "%-6s mean %.3f s/step  min %.3f  (%d steps)\n", k, s[k]/n[k], mn[k], n[k];
          printf "ratio torch/c (mean): %.2f\n", (s["torch"]/n["torch"])/(s["c"]/n["c"])}' "$out"
rm -f "$out"
