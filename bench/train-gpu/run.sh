#!/bin/bash
# bench/train-gpu/run.sh: our C2KD training step on the CUDA backend against
# PyTorch on the same GPU, in one run, then a summary with ratios.
#
#   bench/train-gpu/run.sh [OUTDIR]      (default: $OUT/bench or ./bench-out)
#
# Environment: BIN (folder with step_bench; default .carry/bin, else build/gpu),
# PYTHON (python3 with torch), EPOCH_STEPS (403), STEPS (20),
# TORCH_COMPILE=1 also times torch.compile (slow to compile; off by default),
# BENCH_DEADLINE (seconds; optional parts are skipped past it, default 330).
# Also: a short run with cuDNN's batch norm (step_bench --bn cudnn) against the
# default own batch-norm kernels, and one profiled short run (profile.md: GPU
# time per op and shape, memory plan). (Workspace limits other than the
# default are a knob, be_options.workspace_mb (train --cudnn-workspace-mb).)
# LD_LIBRARY_PATH must already find cuDNN/cuBLAS (tests/gpu/run.sh sets it).
set -u
cd "$(dirname "$0")/../.."
D=${1:-${OUT:-$PWD/bench-out}/bench}
mkdir -p "$D"
BIN=${BIN:-.carry/bin}
[ -x "$BIN/step_bench" ] || BIN=build/gpu
PY=${PYTHON:-python3}
EP=${EPOCH_STEPS:-403}
ST=${STEPS:-20}
DEADLINE=${BENCH_DEADLINE:-330}
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }

run() { # name timeout cmd...
    local name=$1 to=$2; shift 2
    echo "== [$(el)s] $name: $*"
    timeout "$to" "$@" > "$D/$name.out" 2> "$D/$name.err"
    local rc=$?
    tail -n 3 "$D/$name.err"
    tail -n 1 "$D/$name.out"
    echo "== $name rc=$rc"
    return $rc
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$D/gpu.txt" 2>&1
# ours first (own batch-norm kernels, the default; separate processes throughout)
run ours 200 "$BIN/step_bench" --steps "$ST" --epoch-steps "$EP" --json "$D/ours.json" --profile "$D/memory.md"
# ours with cuDNN's batch norm (--bn cudnn), short: the own kernels' gain
run ours_bn_cudnn 90 "$BIN/step_bench" --bn cudnn --steps "$ST" --epoch-steps 0 --json "$D/ours_bn_cudnn.json"
# one profiled short run (--op-profile 1: CUDA events around every op): GPU
# time per op kind, top shapes with their cuDNN algorithms, the memory plan
if [ "$(el)" -lt "$DEADLINE" ]; then
    run ours_profile 90 "$BIN/step_bench" --op-profile 1 --steps 5 --epoch-steps 0 --profile "$D/profile.md"
fi
run torch_eager 200 "$PY" bench/train-gpu/torch_step.py --steps "$ST" --epoch-steps "$EP" --json "$D/torch_eager.json"
if [ "${TORCH_COMPILE:-0}" = 1 ] && [ "$(el)" -lt "$DEADLINE" ]; then
    run torch_compile 240 "$PY" bench/train-gpu/torch_step.py --compile --steps "$ST" --epoch-steps 0 --json "$D/torch_compile.json"
fi
{
    "$PY" bench/train-gpu/summarize.py "$D"
    echo
    cat "$D/profile.md" 2>/dev/null || cat "$D/memory.md" 2>/dev/null
} | tee "$D/RESULTS.md"
