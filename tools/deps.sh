#!/bin/sh
# Install the Debian packages the project needs, when missing.
# As root: apt-get install them. As another user: print the one command to run.
# Does nothing (and prints nothing) when everything is present.
set -eu
PKGS="build-essential pkg-config
libavformat-dev libavfilter-dev libavcodec-dev libswresample-dev libswscale-dev libavutil-dev
libfftw3-dev libturbojpeg0-dev libhdf5-dev libopenblas-dev libcriterion-dev libcjson-dev zlib1g-dev
python3-numpy python3-scipy python3-h5py python3-pil python3-pytest python3-torch python3-soundfile
python3-torchvision python3-onnx python3-protobuf python3-venv python3-pip python3-setuptools
ffmpeg clang openmpi-bin libopenmpi-dev"
missing=""
for p in $PKGS; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
  esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $missing
else
  echo "deps: missing Debian packages; run as root:"
  echo "  apt-get install -y --no-install-recommends$missing"
  exit 1
fi
