#!/bin/sh
# Fuzz campaigns (libFuzzer, ASan + UBSan). Builds the fuzz build, makes the
# seed corpora (short clips of each container/codec, a real shard, the
# annotation seeds in tests/fuzz/seeds/), then runs the targets:
#   tests/fuzz/run.sh SECONDS_PER_TARGET    (make fuzz: every target, FUZZ_SECONDS each)
#   tests/fuzz/run.sh --runs N --seed S     (make test: a short seeded campaign)
# The short campaign leaves out fuzz_shard (whole-file mutations of HDF5
# metadata), which reaches libhdf5's own parsers; docs/RELIABILITY.md says why.
# Crashes are written to build-fuzz/crashes/<target>/ and make the script exit 1.
set -eu
cd "$(dirname "$0")/../.."
targets="annotations shard_data media folder shard"
limit="-max_total_time=${1:-120}"
if [ "${1:-}" = "--runs" ]; then
    limit="-runs=$2 -seed=${4:-1}"
    targets="annotations shard_data media folder"
fi
make --no-print-directory BUILD=build-fuzz CC=clang SANITIZE=1 FUZZ=1 OPT=-O1 \
    fuzz-targets build-fuzz/bin/ingest >/dev/null
sh tests/fuzz/make_corpus.sh build-fuzz/bin build-fuzz/corpus
export ASAN_OPTIONS=detect_leaks=1:protect_shadow_gap=0:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tools/lsan.supp
export C2KD_FUZZ_SEED_SHARD=$PWD/build-fuzz/corpus/shard/seed.h5
export C2KD_FUZZ_SEED_FOLDER=$PWD/build-fuzz/corpus/folder_seed
rc=0
for t in $targets; do
    work=build-fuzz/work/$t crashes=build-fuzz/crashes/$t
    mkdir -p "$work" "$crashes"
    echo "fuzz: $t ($limit)"
    # -malloc_limit_mb: an allocation a file's header decides must be bounded (issue 13).
    if ! build-fuzz/fuzz/fuzz_$t $limit -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 \
            -artifact_prefix="$crashes/" -print_final_stats=1 "$work" "build-fuzz/corpus/$t" \
            > "build-fuzz/fuzz_$t.log" 2>&1; then
        echo "fuzz: $t FAILED (see build-fuzz/fuzz_$t.log and $crashes/)"
        grep -aE "ERROR|SUMMARY|fuzz_shard_data:|#[0-9]+ .* in (st_|ig_|sp_|fr_|cm_|LLVM)" "build-fuzz/fuzz_$t.log" | head -30
        rc=1
    fi
    grep -aE "^stat::number_of_executed_units|^stat::peak_rss_mb" "build-fuzz/fuzz_$t.log" | sed "s/^/fuzz: $t /"
done
exit $rc
