#!/bin/sh
# make demo: the main job end to end on a small generated dataset, on the CPU
# (or the GPU when one is present: --device auto).
#   generate an AVE-layout dataset -> ingest into HDF5 shards -> store info
#   -> pretrain an audio teacher -> train a visual student without KD and with C2KD,
#      each over 3 seeds -> mean ± std and whether the difference is beyond the noise
# Usage: tools/demo.sh BIN_DIR     (DEMO_DIR overrides the work folder, default demo/;
#                                   DEMO_SEEDS the seeds, default "1 2 3")
set -eu
BIN=${1:-build/bin}
WORK=${DEMO_DIR:-demo}
SEEDS=${DEMO_SEEDS:-1 2 3}
PY=/usr/bin/python3
T0=$(date +%s)
mkdir -p "$WORK"

echo "== 1/5 generating a small AVE-layout dataset in $WORK/ave (4 classes x 80 one-second clips, --mix:"
echo "       each clip also carries a fainter second class, in its sound and its picture alike;"
echo "       the sound is clean, the picture weak and noisy; 144 train, 48 val, 128 test clips)"
$PY tools/gen_dataset.py --layout ave --out "$WORK/ave" --classes 4 --per-class 80 --seconds 1 --size 64x48 \
    --fps 5 --mix --splits 45,15,40 --jobs 2 >/dev/null

echo "== 2/5 ingest -> $WORK/data"
"$BIN/ingest" --dataset demo --root "$WORK/ave" --out "$WORK/data" --jobs 2 --quiet
"$BIN/store" info "$WORK/data"

COMMON="--data $WORK/data --width 8 --batch-size 16 --lr 0.05 --device auto --force"
echo "== 3/5 pretraining the audio teacher (20 epochs)"
"$BIN/train" $COMMON --epochs 20 --out "$WORK/teacher" --pretrain --teacher audio
for seed in $SEEDS; do
    echo "== 4/5 visual student without distillation, seed $seed (60 epochs)"
    "$BIN/train" $COMMON --epochs 60 --seed "$seed" --out "$WORK/none-seed$seed" --method none --student visual \
        --image-size 32
    echo "== 5/5 visual student with C2KD (audio teacher), seed $seed (60 epochs)"
    "$BIN/train" $COMMON --epochs 60 --seed "$seed" --out "$WORK/c2kd-seed$seed" --method c2kd --student visual \
        --teacher audio --teacher-ckpt "$WORK/teacher/best.h5" --image-size 32
done

# CPU seconds of this script's children (user + system), for the summary (`times` in this
# shell: a command substitution would run it in a subshell, which has no children)
times > "$WORK/times.txt"
$PY tools/demo_summary.py "$WORK" "$SEEDS" "$(( $(date +%s) - T0 ))" "$(tail -n 1 "$WORK/times.txt")"
