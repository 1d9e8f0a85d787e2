#!/bin/bash
# tests/gpu/run.sh: every GPU check of the CUDA backend in one run, results under $OUT.
#
# Expects the programs built on the development machine and carried with the
# libraries they need (tests/gpu/pack_libs.sh fills .carry/bin and
# .carry/lib); it does not build (the GPU machine lacks our -dev packages).
# Falls back to build/gpu when .carry/bin is absent.
#
#   1. opcompare: every op of kernels/kernels.h (its table has a row per entry of be_ops),
#      CPU backend vs CUDA backend (kernels/cpu/ vs kernels/cuda/), float32 (TF32 off) and TF32,
#      with the own batch-norm kernels (default); float32 again with cuDNN's batch norm
#      (--bn cudnn); the staged (double-buffered) input copies exactly
#   2. steps: 5 steps of pretrain/none/kd/nkd/c2kd/shake/review through tr_system on both backends, each from
#      the same state (CPU state copied into the CUDA system before every step), TF32 off and on,
#      with the control (CPU on 1-ulp perturbed batches) bounding the backward differences
#   3. compute-sanitizer --tool memcheck on opcompare --small
#   4. overlap: `train --profile` on a small generated dataset (if it can be made here): the CUDA-event
#      timeline of the staged input copies against the ops, in $OUT/overlap/profile.md ("ran while an op
#      was running"); with nsys present also an nsys trace and its CUDA GPU trace summary
#   5. bench/train-gpu: our C2KD step (own BN; cuDNN BN, short) vs PyTorch eager on the same GPU,
#      epoch of 403 steps, a profiled short run (GPU time per op, memory plan)
#   6. data parallel with NCCL under mpirun (1 rank; 2 with two GPUs): step and all-reduce time
#
# Every step logs, has a time limit and the script goes on after a failure;
# $OUT/summary.txt lists each step's exit status, $OUT/log.txt has everything.
# Budget: under 200 s on an H100.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
# Only a few files come back from the GPU machine: the log goes straight to
# $OUT, everything else is written to a scratch folder and packed into
# $OUT/results.tgz at the end (RESULTS.md and summary.txt also copied).
FINAL=${OUT:-$ROOT/gpu-out}
OUT=$(mktemp -d /tmp/c2kd-gpu.XXXXXX)
mkdir -p "$FINAL"
exec > >(tee -a "$FINAL/log.txt") 2>&1
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"

BIN=$ROOT/.carry/bin
[ -x "$BIN/opcompare" ] || BIN=$ROOT/build/gpu
export BIN
PY=python3
command -v python3 >/dev/null || PY=/opt/torch/.venv/bin/python3
export PYTHON=$PY

# ---- library path: carried libs, then the CUDA libraries of PyTorch's wheels, then the toolkit
LP=$ROOT/.carry/lib
NVDIRS=$("$PY" - <<'PYEOF' 2>/dev/null
import os, glob
dirs = []
try:
    import nvidia
    for base in list(nvidia.__path__):
        dirs += sorted(glob.glob(os.path.join(base, "*", "lib")))
except Exception:
    pass
try:
    import torch
    dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except Exception:
    pass
print(":".join(d for d in dirs if os.path.isdir(d)))
PYEOF
)
if [ -z "$NVDIRS" ]; then
    d=$(find / -xdev -name 'libcudnn.so.9' -path '*nvidia*' 2>/dev/null | head -n 1)
    [ -n "$d" ] && NVDIRS=$(dirname "$d")
fi
export LD_LIBRARY_PATH=$LP${NVDIRS:+:$NVDIRS}:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

step() { # name timeout cmd... ; output in $OUT/<name>.txt
    local name=$1 to=$2; shift 2
    echo
    echo "======== [$(el)s] $name: $*"
    timeout -k 10 "$to" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.txt"
    echo "======== $name: rc=$rc ($(el)s)"
    echo "$name rc=$rc" >> "$SUMMARY"
    return 0
}

echo "# tests/gpu/run.sh at $(date -u +%FT%TZ) in $ROOT, binaries from $BIN"
echo "# LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi 2>&1 | head -n 15
nvcc --version 2>&1 | tail -n 2
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())" 2>&1
for p in opcompare steps step_bench; do
    echo "--- ldd $p (missing libraries, if any):"
    ldd "$BIN/$p" 2>&1 | grep -E "not found|cudnn|cublas|cudart|openblas" || true
done

step opcompare_fp32 60 "$BIN/opcompare" --tf32 0
step opcompare_tf32 60 "$BIN/opcompare" --tf32 1
step opcompare_fp32_bn_cudnn 60 "$BIN/opcompare" --tf32 0 --bn cudnn
step steps_fp32 90 "$BIN/steps" --tf32 0
step steps_tf32 90 "$BIN/steps" --tf32 1
if command -v compute-sanitizer >/dev/null; then
    CS=compute-sanitizer
else
    CS=$(ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
fi
if [ -n "$CS" ]; then
    # cuDNN heuristics instead of timing every algorithm: fewer kernels under the sanitizer
    step memcheck 90 "$CS" --tool memcheck --error-exitcode 3 --leak-check full "$BIN/opcompare" --small --tf32 0 --cudnn-find 0
    grep -E "ERROR SUMMARY|LEAK SUMMARY" "$OUT/memcheck.txt"
else
    echo "memcheck rc=skipped (no compute-sanitizer)" >> "$SUMMARY"
fi
# Copy/compute overlap of the staged inputs: a short training run with --profile.
overlap() {
    local d=$OUT/overlap TB=$ROOT/.carry/bin
    [ -x "$TB/train" ] || TB=$ROOT/build/bin
    mkdir -p "$d"
    "$PY" tools/gen_dataset.py --layout ave --out "$d/ave" --classes 3 --per-class 12 --seconds 4 --jobs 4 &&
        "$TB/ingest" --dataset overlap --root "$d/ave" --out "$d/data" --jobs 4 --quiet || return 3
    local args=(--data "$d/data" --out "$d/run" --epochs 1 --batch-size 8 --width 64 --device cuda --profile --force
                --teacher-init random)
    "$TB/train" "${args[@]}" || return 1
    if command -v nsys >/dev/null; then
        nsys profile -t cuda -o "$d/train" --force-overwrite true "$TB/train" "${args[@]}" --out "$d/run-nsys" &&
            nsys stats -r cuda_gpu_trace -f csv -o "$d/trace" "$d/train.nsys-rep" >/dev/null
    fi
    grep -A3 "Staged input copies" "$d/run/profile.md"
    cp "$d/run/profile.md" "$FINAL/overlap-profile.md" 2>/dev/null
    return 0
}
export -f overlap; export OUT ROOT PY FINAL
step overlap 120 bash -c overlap
BENCH_DEADLINE=$(( 150 - $(el) )) step bench 170 bench/train-gpu/run.sh "$OUT/bench"
# 5. data parallel over NCCL (docs/DISTRIBUTED.md): 1 rank, and 2 when the machine has 2 GPUs;
#    the epoch records give the step time and the NCCL all-reduce time of the epoch (the wait
#    after the backward pass: the buckets start during it); the count of overlapped all-reduces
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
TRAIN=$BIN/train; [ -x "$TRAIN" ] || TRAIN=build/bin/train
if command -v mpirun >/dev/null && [ -x "$TRAIN" ] && [ -e "$(dirname "$TRAIN")/../lib/c2kd_collective.so" ]; then
    "$PY" -c "import sys; sys.path.insert(0, 'tests/oracle'); import train_util as u; u.make_dataset('$OUT/ddp-data', counts={'train': 512, 'val': 8, 'test': 8}, bins=257, T=200, sizes=((256, 224),))"
    for n in 1 2; do
        [ "$n" -le "$NGPU" ] || continue
        step ddp_$n 60 mpirun --allow-run-as-root --oversubscribe -np $n "$TRAIN" --data "$OUT/ddp-data" \
            --out "$OUT/ddp-$n" --device cuda --method c2kd --teacher-init random --batch-size 64 --epochs 1 --eval-from 2 --force
        grep -h "overlapped with the backward pass" "$OUT/ddp_$n.txt" | tee -a "$SUMMARY"
        "$PY" -c "import json; [print('ddp $n ranks: %d steps, %.1f ms/step, all-reduce wait %.2f ms/step' % (j['step'], 1e3 * j['seconds'] / j['step'], 1e3 * j.get('allreduce_seconds', 0) / j['step'])) for j in map(json.loads, open('$OUT/ddp-$n/metrics.jsonl')) if j['type'] == 'epoch']" 2>&1 | tee -a "$SUMMARY"
    done
else
    echo "ddp rc=skipped (mpirun, build/bin/train or build/lib/c2kd_collective.so absent on this machine)" >> "$SUMMARY"
fi
cp "$OUT/bench/RESULTS.md" "$OUT/RESULTS.md" 2>/dev/null

echo
echo "======== summary ($(el)s)"
cat "$SUMMARY"
for f in "$OUT"/opcompare_*.txt "$OUT"/steps_*.txt; do
    echo "--- $(basename "$f")"
    grep -hE "^# .*checks|^# batch norm|^# opcompare: batch|^(ok|FAIL) +(pretrain|none|kd|nkd|c2kd|backward)|^# control over|^# steps:" "$f" 2>/dev/null
    grep -h "FAIL" "$f" 2>/dev/null | grep -vE "^(ok|FAIL) +(pretrain|none|kd|nkd|c2kd|backward)" | head -n 12
done
cat "$OUT/RESULTS.md" 2>/dev/null
tar czf "$FINAL/results.tgz" -C "$OUT" . 2>/dev/null
cp "$SUMMARY" "$FINAL/summary.txt" 2>/dev/null
cp "$OUT/RESULTS.md" "$FINAL/RESULTS.md" 2>/dev/null
exit 0
