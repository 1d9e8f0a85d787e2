#!/bin/sh
# bench/spectro: spectro vs the reference Python pipeline (see run.py). Run from anywhere.
set -eu
cd "$(dirname "$0")/../.."
make --no-print-directory -s build/bin/spectro build/bin/bench_stft
exec /usr/bin/python3 bench/spectro/run.py "$@"
