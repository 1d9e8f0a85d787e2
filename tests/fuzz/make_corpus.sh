#!/bin/sh
# Seed corpora for the fuzz targets: tests/fuzz/make_corpus.sh BIN_DIR OUT_DIR
#   OUT/annotations  the seeds in tests/fuzz/seeds/annotations (first byte: the reader)
#   OUT/media        1-3 s clips of each container and codec the oracle tests cover
#                    (first byte: 0 spectro, 1 frames --count 1, 2 frames --count 3, 3 the clock
#                    check; +128: --allow-truncated), and clips whose audio starts after or before
#                    the video (-itsoffset), an MP4 edit list cutting audio before 0
#   OUT/shard        one real shard written by ingest from a generated dataset
#   OUT/shard_data   a few patch lists for fuzz_shard_data (5 bytes each: position, XOR)
#   OUT/folder_seed  a real folder written by ingest (one sample per shard, three splits)
#   OUT/folder       a few operation lists for fuzz_folder (4 bytes each: kind, a, b, c)
set -eu
bin=$1 out=$2
here=$(dirname "$0")
mkdir -p "$out/annotations" "$out/media" "$out/shard" "$out/shard_data" "$out/folder"
cp "$here"/seeds/annotations/* "$out/annotations/"

ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
clip() { # name, seconds, output options...
    name=$1 secs=$2; shift 2
    [ -s "$out/media/130-$name" ] && return 0
    ff -f lavfi -i "testsrc2=size=64x48:rate=10" -f lavfi -i "sine=frequency=440:sample_rate=22050" \
       -t "$secs" -g 5 "$@" "$out/tmp-$name"
    for k in 0 1 2 3 128 129 130; do
        { printf "\\$(printf %03o $k)"; cat "$out/tmp-$name"; } > "$out/media/$k-$name"
    done
    rm -f "$out/tmp-$name"
}
clip h264-aac.mp4 2 -c:v libx264 -pix_fmt yuv420p -c:a aac
clip flv1-mp3.flv 1 -c:v flv1 -c:a libmp3lame
clip h264.flv 3 -c:v libx264 -pix_fmt yuv420p -c:a aac -f flv
clip vp8-vorbis.webm 2 -c:v libvpx -c:a libvorbis
clip mpeg4-pcm.avi 2 -c:v mpeg4 -c:a pcm_s16le
clip mjpeg-flac.mkv 1 -c:v mjpeg -c:a flac
clip pcm.wav 1 -vn -c:a pcm_s16le
offclip() { # name, audio offset (s), output options...: audio shifted against the video
    name=$1 off=$2; shift 2
    [ -s "$out/media/3-$name" ] && return 0
    ff -f lavfi -i "testsrc2=size=64x48:rate=10:duration=2" -itsoffset "$off" -f lavfi \
       -i "sine=frequency=440:sample_rate=22050:duration=1.5" -map 0:v -map 1:a -g 5 "$@" "$out/tmp-$name"
    for k in 0 1 3 131; do
        { printf "\\$(printf %03o $k)"; cat "$out/tmp-$name"; } > "$out/media/$k-$name"
    done
    rm -f "$out/tmp-$name"
}
# inputs that once failed fuzz_media's clock check (a truncated FLV whose kept segment was empty)
cp "$here"/regressions/media/* "$out/media/"
offclip late-h264-aac.mp4 0.6 -c:v libx264 -pix_fmt yuv420p -c:a aac
offclip early-editlist.mp4 -0.4 -c:v libx264 -pix_fmt yuv420p -c:a aac
offclip late-vorbis.mkv 0.05 -c:v mjpeg -c:a libvorbis
offclip early-mp3.flv -0.3 -c:v flv1 -c:a libmp3lame
offclip late-pcm.mov 0.7 -c:v mpeg4 -c:a pcm_s16le

# (again whenever ingest was rebuilt: the seed must be in the current format)
if [ ! -s "$out/shard/seed.h5" ] || [ "$bin/ingest" -nt "$out/shard/seed.h5" ]; then
    tmp=$(mktemp -d)
    /usr/bin/python3 tools/gen_dataset.py --layout ave --out "$tmp/ds" --classes 2 --per-class 2 \
        --seconds 1 --size 32x24 --fps 5 > /dev/null
    "$bin/ingest" --dataset ave --root "$tmp/ds" --out "$tmp/out" --set duration=1 --jobs 1 \
        > /dev/null 2>&1 || true
    f=$(ls "$tmp"/out/*.h5 | head -1)
    cp "$f" "$out/shard/seed.h5"
    rm -rf "$tmp"
fi

# Patch lists: one byte, two bytes, a 4-byte burst (positions spread by the multiplier).
printf '\001\000\000\000\001' > "$out/shard_data/one"
printf '\377\377\000\000\200\007\000\001\000\020' > "$out/shard_data/two"
printf '\000\100\000\000\377\001\100\000\000\377\002\100\000\000\377\003\100\000\000\377' > "$out/shard_data/burst"

# The folder seed (again whenever ingest was rebuilt: the index must be in the current format).
if [ ! -s "$out/folder_seed/index.json" ] || [ "$bin/ingest" -nt "$out/folder_seed/index.json" ]; then
    tmp=$(mktemp -d)
    /usr/bin/python3 tools/gen_dataset.py --layout ave --out "$tmp/ds" --classes 2 --per-class 3 \
        --seconds 1 --size 32x24 --fps 5 > /dev/null
    rm -rf "$out/folder_seed"
    "$bin/ingest" --dataset ave --root "$tmp/ds" --out "$out/folder_seed" --set duration=1 --jobs 1 \
        --shard-items 1 > /dev/null 2>&1 || true
    rm -rf "$tmp"
fi
# Operation lists: nothing, a shard copied over another, an entry deleted then resealed, two shards swapped.
printf '' > "$out/folder/none"
printf '\000\000\001\000' > "$out/folder/copy"
printf '\010\001\000\000\013\000\000\000' > "$out/folder/drop-reseal"
printf '\003\000\002\000\013\000\000\000' > "$out/folder/swap-reseal"
# a longer list (so that inputs of many operations are tried early): copy, rename, field edits, move, reseal
printf '\000\001\002\000\002\003\004\000\006\000\001\002\006\002\003\001\011\004\001\000\012\001\002\002\001\005\000\000\013\000\000\000' > "$out/folder/many"
