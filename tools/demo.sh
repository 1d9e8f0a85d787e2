#!/bin/sh
# make demo: the main job end to end on a small generated dataset, on the CPU
# (or the GPU when one is present: --device auto).
#   generate an AVE-layout dataset -> ingest into HDF5 shards -> store info
#   -> pretrain an audio teacher -> train a visual student without KD and with C2KD
# Usage: tools/demo.sh BIN_DIR     (DEMO_DIR overrides the work folder, default demo/)
set -eu
BIN=${1:-build/bin}
WORK=${DEMO_DIR:-demo}
PY=/usr/bin/python3
mkdir -p "$WORK"

echo "== 1/5 generating a small AVE-layout dataset in $WORK/ave (3 classes x 40 clips; --hard: overlapping classes, noisy sound, a weaker and noisier picture)"
$PY tools/gen_dataset.py --layout ave --out "$WORK/ave" --classes 3 --per-class 40 --seconds 4 --hard --jobs 2

echo "== 2/5 ingest -> $WORK/data"
"$BIN/ingest" --dataset demo --root "$WORK/ave" --out "$WORK/data" --jobs 2 --quiet
"$BIN/store" info "$WORK/data"

COMMON="--data $WORK/data --width 16 --epochs 8 --batch-size 8 --lr 0.05 --device auto --force"
echo "== 3/5 pretraining the audio teacher"
"$BIN/train" $COMMON --out "$WORK/teacher" --pretrain --teacher audio
echo "== 4/5 visual student without distillation"
"$BIN/train" $COMMON --out "$WORK/none" --method none --student visual --image-size 64
echo "== 5/5 visual student with C2KD (audio teacher)"
"$BIN/train" $COMMON --out "$WORK/c2kd" --method c2kd --student visual --teacher audio \
    --teacher-ckpt "$WORK/teacher/best.h5" --image-size 64

$PY - "$WORK" <<'PY'
import json, os, sys
work = sys.argv[1]
print("== demo results: test top-1 at the best validation epoch")
for run, what in (("teacher", "audio teacher (pretrained)"), ("none", "visual student, no KD"),
                  ("c2kd", "visual student, C2KD")):
    r = json.load(open(os.path.join(work, run, "result.json")))
    print(f"  {what:28s} {100 * r['test_acc_at_best_val']:6.2f}%  (best val epoch {r['best_epoch']})"
          f"  plot: {r['plot']}")
PY
