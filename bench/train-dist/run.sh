#!/bin/sh
# CPU throughput of data-parallel `train`: 1 process (--threads 2, batch 2B)
# against 2 ranks under mpirun (--threads 1 each, batch B per rank): the same
# global batch, the same 2 cores. Samples per second over one epoch of c2kd
# (ResNet-18 pair, width 16, 64x64 images, 40x100 spectrograms), from the
# run's own "seconds" of the epoch record. Results: docs/BENCHMARKS.md.
set -eu
BIN=${C2KD_BIN:-build/bin}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
B=${B:-8}
/usr/bin/python3 -c "
import sys; sys.path.insert(0, 'tests/oracle')
import train_util as u
u.make_dataset('$TMP/data', counts={'train': 128, 'val': 4, 'test': 4}, bins=40, T=100, sizes=((80, 64),))"
ARGS="--data $TMP/data --width 16 --image-size 64 --device cpu --method c2kd --teacher-init random --epochs 1 --no-augment --loader-threads 1"
rate() { /usr/bin/python3 -c "
import json
for l in open('$1/metrics.jsonl'):
    j = json.loads(l)
    if j['type'] == 'epoch': print('%.2f samples/s (%.1f s for %d steps)' % (j['step'] * $2 / j['seconds'], j['seconds'], j['step']))"; }
"$BIN/train" $ARGS --threads 2 --batch-size $((2 * B)) --out "$TMP/one" >/dev/null 2>&1
echo "1 process, --threads 2, batch $((2 * B)):   $(rate "$TMP/one" $((2 * B)))"
mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/train" $ARGS --threads 1 --batch-size $B --out "$TMP/two" >/dev/null 2>&1
echo "2 ranks, --threads 1 each, batch $B each: $(rate "$TMP/two" $((2 * B)))"
