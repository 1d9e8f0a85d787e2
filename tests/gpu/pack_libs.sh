#!/bin/sh
# pack_libs.sh: prepares what tests/gpu/run.sh needs on a GPU machine that has
# CUDA, cuDNN (PyTorch's wheel) and cuBLAS but none of our Debian libraries.
#
#   tests/gpu/pack_libs.sh [--with-train]
#
# Builds the GPU programs here (make), then copies into .carry/ (ignored by git):
#   .carry/bin/  opcompare, steps, step_bench (and train, ingest with --with-train: the overlap step)
#   .carry/lib/  every shared library they load (ldd) except the C library
#                family, libstdc++/libgcc_s, libcuda and the CUDA libraries the
#                GPU machine provides (cuDNN, cuBLAS); libcudart is carried.
# Pass `.carry` in the run tool's `carry` list. Total must stay under 64 MiB.
set -eu
cd "$(dirname "$0")/../.."
PROGS="build/gpu/opcompare build/gpu/steps build/gpu/step_bench"
[ "${1:-}" = "--with-train" ] && PROGS="$PROGS build/bin/train build/bin/ingest"
make -j"$(nproc)" $PROGS >/dev/null
rm -rf .carry/bin .carry/lib
mkdir -p .carry/bin .carry/lib
for p in $PROGS; do cp "$p" .carry/bin/; done
for p in $PROGS; do ldd "$p"; done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
while read -r name path; do
    case "$name" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) continue ;;
    libcuda.so*|libcudnn*|libcublas*|libnvidia*) continue ;;
    esac
    cp -L "$path" ".carry/lib/$name"
done
du -sh .carry/bin .carry/lib
ls .carry/lib
