#!/bin/sh
# make demo: the main job end to end on a small generated dataset.
# Usage: tools/demo.sh BIN_DIR
set -eu
BIN=${1:-build/bin}
WORK=${DEMO_DIR:-demo}
mkdir -p "$WORK"
echo "== demo: generating a 10 s test clip (ffmpeg sine + test pattern)"
ffmpeg -nostdin -hide_banner -loglevel error -y \
  -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=7" \
  -f lavfi -i "testsrc2=size=320x180:rate=25:duration=7" \
  -c:a aac -ac 2 -c:v libx264 -pix_fmt yuv420p -shortest "$WORK/clip.mp4" 2>/dev/null ||
ffmpeg -nostdin -hide_banner -loglevel error -y \
  -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=7" \
  -f lavfi -i "testsrc2=size=320x180:rate=25:duration=7" \
  -c:a aac -ac 2 -c:v mpeg4 -shortest "$WORK/clip.mp4"
echo "== demo: spectro (7 s clip tiled to 10 s)"
"$BIN/spectro" "$WORK/clip.mp4" -o "$WORK/clip.npy"
/usr/bin/python3 - "$WORK/clip.npy" <<'PY'
import sys, numpy as np
x = np.load(sys.argv[1])
print(f"spectrogram {sys.argv[1]}: shape {x.shape} dtype {x.dtype} "
      f"min {x.min():.3f} max {x.max():.3f} mean {x.mean():.3f} std {x.std():.3f}")
peak = int(x.mean(axis=1).argmax())
print(f"strongest bin {peak} = {peak * 16000 / 512:.0f} Hz (the clip is a 440 Hz tone)")
PY
