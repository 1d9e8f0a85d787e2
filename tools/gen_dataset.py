#!/usr/bin/python3
"""Writes a small dataset in a native layout (AVE, CREMA-D or VGGSound) from ffmpeg's
synthetic sources, with class-dependent audio and picture, so that a model can learn
from either modality:

  audio   a sine whose frequency depends on the class (300 + 400*c Hz, +-2 % per clip),
          AAC 44.1 kHz stereo in the videos (CREMA-D: also 16 kHz mono WAV files)
  picture ffmpeg's testsrc2 pattern (it moves) with its hue rotated by 360*c/N degrees,
          H.264 (CREMA-D: FLV1 in .flv)

--hard (AVE layout) makes the task like the seed's setting: the picture is the weaker,
noisier modality and the classes overlap. Audio: class frequencies 300 + 150*c Hz, +-15 %
per clip (neighbours overlap), mixed with pink noise. Picture: hues only 0.35*360*c/N
apart, +-25 degrees of per-clip jitter, strong temporal noise, and a quarter of the clips
show another class's picture.

--mix (AVE layout; the demo's data) gives each clip instance-level information that both
modalities share, as real audio-visual events do: besides its class c, every clip carries a
second, fainter class c2 != c (drawn per clip) with one mixing weight m ~ U(0, 0.45), in the
sound (two class tones 300 + 200 k Hz +-5 %, amplitudes 1-m and m, over pink noise) and in the
picture (the testsrc2 pattern hue-rotated by 30 k degrees +-20 for k = c and k = c2, blended
with opacities 1-m and m, under strong temporal noise; neighbouring classes' hues overlap).
MPEG-4 part 2 video; 16 clips per ffmpeg process. The label
is c. The sound is the clean modality (a strong teacher), the picture the weak but informative
one; a teacher's soft output then carries what the label does not (c2 and m), and it is the
same for both modalities of a clip. Modalities independent given the label would leave a
teacher nothing to pass on about an individual picture.

--splits TRAIN,VAL,TEST (percent, AVE layout; default 60,20,20) sets the share of each
class's clips in each split.

--bad adds one of each fault to the annotations: a missing video, a corrupt video
(random bytes), a video without an audio stream (AVE, VGGSound; CREMA-D: an .flv without
audio and no .wav), and for AVE an empty segment (0&0) and a row repeating another
row's video and segment under another label.

Usage:
  gen_dataset.py --layout ave --out DIR [--classes 3] [--per-class 4] [--seconds 4]
                 [--size 160x120] [--fps 10] [--gop N] [--bframes N] [--hard | --mix]
                 [--splits 60,20,20] [--bad] [--seed 0] [--jobs 2]
Prints a JSON summary (rows per split, faults; with --mix each clip's two classes, weight,
tones and hues) on stdout.
"""
import argparse
import concurrent.futures as cf
import json
import os
import random
import subprocess
import sys

AVE_NAMES = ["Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
             "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle"]
VGG_NAMES = ["subway, metro, underground", "playing tennis", "dog barking", "people coughing",
             "waterfall burbling", "female singing", "playing double bass", "alarm clock ringing"]
HUE_STEP = 30.0  # --mix: degrees between neighbouring class hues (the picture is the weak modality)
CREMA_NAMES = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def ffmpeg(args):
    r = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("ffmpeg " + " ".join(args) + ": " + r.stderr)


def make_mix_clips(clips, seconds, size, fps, vnoise, anoise):
    """--mix, several clips in one ffmpeg process (its start-up is most of a short clip's cost).
    clips: (path, (f_c, f_c2), (hue_c, hue_c2), m, noise seed). Sound: class tones at amplitudes 1-m, m over
    pink noise; picture: testsrc2 patterns hue-rotated to the two hues, blended with opacities
    1-m, m, then temporal noise. MPEG-4 part 2 video, AAC sound."""
    src = f"testsrc2=s={size}:r={fps}:d={seconds}"
    ins, outs = [], []
    for i, (path, freqs, hues, m, seed) in enumerate(clips):
        v = (f"{src},hue=h={hues[0]:.1f}[p];{src},hue=h={hues[1]:.1f}[q];"
             f"[p][q]blend=all_mode=normal:all_opacity={1 - m:.4f},noise=alls={vnoise}:allf=t+u:all_seed={seed}")
        a = (f"sine=frequency={freqs[0]:.2f}:sample_rate=44100:duration={seconds}[s];"
             f"sine=frequency={freqs[1]:.2f}:sample_rate=44100:duration={seconds}[t];"
             f"anoisesrc=color=pink:amplitude=1:sample_rate=44100:duration={seconds}:seed={seed}[n];"
             f"[s][t][n]amix=inputs=3:duration=shortest:normalize=0:"
             f"weights={0.5 * (1 - m):.4f} {0.5 * m:.4f} {anoise}")
        ins += ["-f", "lavfi", "-i", v, "-f", "lavfi", "-i", a]
        outs += ["-map", f"{2 * i}:v", "-map", f"{2 * i + 1}:a", "-c:v", "mpeg4", "-q:v", "4", "-pix_fmt",
                 "yuv420p", "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-shortest", "-f", "mp4", path]
    ffmpeg(ins + outs)


def make_clip(path, cls, ncls, seconds, size, fps, freq, audio=True, fmt="mp4", hard=None, gop=None, bframes=None):
    """hard: None, or (hue in degrees, picture noise strength, audio noise amplitude).
    gop: keyframe interval in frames (default 5 s); bframes: x264's -bf (default x264's)."""
    hue = 360.0 * cls / max(ncls, 1) if hard is None else hard[0]
    v = f"testsrc2=s={size}:r={fps}:d={seconds},hue=h={hue:.1f}"
    if hard is not None:
        v += f",noise=alls={hard[1]}:allf=t+u"
    args = ["-f", "lavfi", "-i", v]
    if audio:
        a = f"sine=frequency={freq:.2f}:sample_rate=44100:duration={seconds}"
        if hard is not None:
            a += (f"[s];anoisesrc=color=pink:amplitude={hard[2]}:sample_rate=44100:duration={seconds}[n];"
                  "[s][n]amix=inputs=2:duration=shortest")
        args += ["-f", "lavfi", "-i", a]
    if fmt == "flv":
        args += ["-c:v", "flv", "-q:v", "5"]
    else:
        args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(gop or fps * 5)]
        if bframes is not None:
            args += ["-bf", str(bframes)]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k", "-ac", "2", "-shortest"]
    ffmpeg(args + ["-f", fmt, path])


def make_wav(path, seconds, freq):
    ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={freq:.2f}:sample_rate=16000:duration={seconds}",
            "-ac", "1", "-c:a", "pcm_s16le", path])


def corrupt(path, rng):
    with open(path, "wb") as f:
        f.write(bytes(rng.getrandbits(8) for _ in range(4096)))


def yt_id(rng):
    return "".join(rng.choice(ID_CHARS) for _ in range(11))


def split_of(j, n, shares=None):
    """train/val/test for the j-th clip of a class of n (about 60/20/20, each split non-empty when n >= 3;
    shares: (train, val, test) percentages instead)."""
    if shares is not None:
        n_test = round(n * shares[2] / 100)
        n_val = round(n * shares[1] / 100)
        return "test" if j >= n - n_test else "val" if j >= n - n_test - n_val else "train"
    if n < 3:
        return "train"
    k = max(1, n // 5)
    if j >= n - k:
        return "test"
    if j >= n - 2 * k:
        return "val"
    return "train"


def gen_ave(a, rng, jobs):
    os.makedirs(os.path.join(a.out, "AVE"), exist_ok=True)
    names = (AVE_NAMES * 4)[: a.classes] if a.classes <= len(AVE_NAMES) else [f"Class {i}, synthetic" for i in range(a.classes)]
    rows = {"train": [], "val": [], "test": []}
    mix, mixed = [], {}
    for c in range(a.classes):
        for j in range(a.per_class):
            vid = yt_id(rng)
            st = rng.randint(0, max(0, a.seconds // 2 - 1))
            en = rng.randint(st + 1, a.seconds)
            freq = (300 + 400 * c) * rng.uniform(0.98, 1.02)
            hard = None
            if a.mix:
                c2 = (c + 1 + rng.randrange(a.classes - 1)) % a.classes
                m = rng.uniform(0, 0.45)
                freqs = [(300 + 200 * k) * rng.uniform(0.95, 1.05) for k in (c, c2)]
                hues = [HUE_STEP * k + rng.uniform(-20, 20) for k in (c, c2)]
                rows[split_of(j, a.per_class, a.splits)].append((names[c], vid, st, en))
                mix.append((os.path.join(a.out, "AVE", vid + ".mp4"), freqs, hues, m, rng.randrange(2 ** 31)))
                mixed[vid] = {"class": c, "second": c2, "weight": round(m, 4), "freqs": [round(f, 2) for f in freqs],
                              "hues": [round(h, 1) for h in hues]}
                continue
            if a.hard:
                freq = (300 + 150 * c) * rng.uniform(0.85, 1.15)
                pc = rng.randrange(a.classes) if rng.random() < 0.25 else c  # the picture's class
                hard = (0.35 * 360.0 * pc / a.classes + rng.gauss(0, 25), 60, 0.1)
            rows[split_of(j, a.per_class)].append((names[c], vid, st, en))
            jobs.append((make_clip, (os.path.join(a.out, "AVE", vid + ".mp4"), c, a.classes, a.seconds, a.size,
                                     a.fps, freq, True, "mp4", hard)))
    for i in range(0, len(mix), 16):
        jobs.append((make_mix_clips, (mix[i:i + 16], a.seconds, a.size, a.fps, 90, 0.05)))
    faults = {}
    if a.bad:
        m, k, s = yt_id(rng), yt_id(rng), yt_id(rng)
        rows["train"].append((names[0], m, 0, a.seconds))                  # missing file
        rows["train"].append((names[1 % a.classes], k, 0, a.seconds))      # corrupt file
        rows["test"].append((names[0], s, 0, a.seconds))                   # no audio stream
        jobs.append((corrupt, (os.path.join(a.out, "AVE", k + ".mp4"), random.Random(a.seed + 1))))
        jobs.append((make_clip, (os.path.join(a.out, "AVE", s + ".mp4"), 0, a.classes, a.seconds, a.size,
                                 a.fps, 300, False)))
        first = rows["train"][0]
        rows["train"].append((first[0], first[1], 0, 0))                   # empty segment
        rows["val"].append((names[1 % a.classes], first[1], first[2], first[3]))  # same segment, other label
        faults = {"missing": m, "corrupt": k, "no_audio": s, "empty_segment": f"{first[1]}_0_0",
                  "repeat": f"{first[1]}_{first[2]}_{first[3]}~2"}
    for sp in rows:
        with open(os.path.join(a.out, f"{sp}Set.txt"), "w") as f:
            for r in rows[sp]:
                f.write(f"{r[0]}&{r[1]}&good&{r[2]}&{r[3]}\n")
    info = {"classes": names, "rows": {k: len(v) for k, v in rows.items()}, "faults": faults}
    if a.mix:
        info["mix"] = mixed  # per video: class, second class, its weight m, the two tones and hues
    return info


def gen_cremad(a, rng, jobs):
    for d in ("VideoFlash", "AudioWAV"):
        os.makedirs(os.path.join(a.out, d), exist_ok=True)
    ncls = min(a.classes, len(CREMA_NAMES))
    rows = {"train": [], "test": []}
    actor = 1001
    for c in range(ncls):
        for j in range(a.per_class):
            clip = f"{actor}_IEO_{CREMA_NAMES[c]}_XX"
            actor += 1
            freq = (300 + 400 * c) * rng.uniform(0.98, 1.02)
            rows["test" if j == a.per_class - 1 else "train"].append((clip, CREMA_NAMES[c]))
            jobs.append((make_clip, (os.path.join(a.out, "VideoFlash", clip + ".flv"), c, ncls, a.seconds, a.size,
                                     a.fps, freq, True, "flv")))
            if j % 2 == 0:  # the others take their audio from the flv
                jobs.append((make_wav, (os.path.join(a.out, "AudioWAV", clip + ".wav"), a.seconds, freq)))
    faults = {}
    if a.bad:
        m, k, s = f"{actor}_IEO_NEU_XX", f"{actor + 1}_IEO_NEU_XX", f"{actor + 2}_IEO_NEU_XX"
        rows["train"] += [(m, "NEU"), (k, "NEU")]
        rows["test"].append((s, "NEU"))
        jobs.append((corrupt, (os.path.join(a.out, "VideoFlash", k + ".flv"), random.Random(a.seed + 1))))
        jobs.append((make_clip, (os.path.join(a.out, "VideoFlash", s + ".flv"), 0, ncls, a.seconds, a.size,
                                 a.fps, 300, False, "flv")))
        faults = {"missing": m, "corrupt": k, "no_audio": s}
    for sp in rows:
        with open(os.path.join(a.out, f"{sp}.csv"), "w") as f:
            for r in rows[sp]:
                f.write(f"{r[0]},{r[1]}\n")
    return {"classes": CREMA_NAMES[:ncls], "rows": {k: len(v) for k, v in rows.items()}, "faults": faults}


def gen_vggsound(a, rng, jobs):
    os.makedirs(os.path.join(a.out, "video"), exist_ok=True)
    names = VGG_NAMES[: a.classes] if a.classes <= len(VGG_NAMES) else [f"class {i}, synthetic" for i in range(a.classes)]
    rows = {"train": [], "test": []}
    n = 0
    for c in range(a.classes):
        for j in range(a.per_class):
            vid, st = yt_id(rng), rng.choice([0, 7, 30, 120])
            name = f"{vid}_{st}.mp4" if n % 2 == 0 else f"{vid}_{st:06d}.mp4"  # as written, or padded
            n += 1
            freq = (300 + 400 * c) * rng.uniform(0.98, 1.02)
            rows["test" if j == a.per_class - 1 else "train"].append((vid, st, names[c]))
            jobs.append((make_clip, (os.path.join(a.out, "video", name), c, a.classes, a.seconds, a.size, a.fps, freq,
                                     True, "mp4", None, a.gop, a.bframes)))
    faults = {}
    if a.bad:
        m, k, s = yt_id(rng), yt_id(rng), yt_id(rng)
        rows["train"] += [(m, 10, names[0]), (k, 10, names[0])]
        rows["test"].append((s, 10, names[0]))
        jobs.append((corrupt, (os.path.join(a.out, "video", f"{k}_10.mp4"), random.Random(a.seed + 1))))
        jobs.append((make_clip, (os.path.join(a.out, "video", f"{s}_000010.mp4"), 0, a.classes, a.seconds, a.size,
                                 a.fps, 300, False)))
        faults = {"missing": f"{m}_10", "corrupt": f"{k}_10", "no_audio": f"{s}_10"}

    def q(s):
        return '"' + s.replace('"', '""') + '"' if ("," in s or '"' in s) else s

    for sp in rows:
        text = "".join(f"{r[0]},{r[1]},{q(r[2])},{sp}\r\n" for r in rows[sp])
        bom = "\ufeff" if sp == "train" else ""
        for fn in (f"{sp}_tiny.csv", f"{sp}.csv"):
            with open(os.path.join(a.out, fn), "w", encoding="utf-8", newline="") as f:
                f.write(bom + text)
    return {"classes": sorted(names), "rows": {k: len(v) for k, v in rows.items()}, "faults": faults}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layout", required=True, choices=["ave", "cremad", "vggsound"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--size", default="160x120")
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--gop", type=int, default=None, help="H.264 keyframe interval in frames (default 5 s)")
    ap.add_argument("--bframes", type=int, default=None, help="H.264 B-frames (-bf; default x264's)")
    ap.add_argument("--hard", action="store_true")
    ap.add_argument("--mix", action="store_true")
    ap.add_argument("--splits", default=None, help="TRAIN,VAL,TEST percentages (AVE layout)")
    ap.add_argument("--bad", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    if a.classes < 1 or a.per_class < 1 or a.seconds < 1:
        ap.error("--classes, --per-class and --seconds must be positive")
    if a.mix and (a.hard or a.layout != "ave" or a.classes < 2):
        ap.error("--mix: AVE layout, at least 2 classes, not with --hard")
    if a.splits is not None:
        try:
            a.splits = [float(x) for x in a.splits.split(",")]
        except ValueError:
            a.splits = []
        if len(a.splits) != 3 or min(a.splits) < 0 or abs(sum(a.splits) - 100) > 1e-6 or a.layout != "ave":
            ap.error("--splits: three percentages TRAIN,VAL,TEST summing to 100 (AVE layout)")
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    jobs = []
    info = {"ave": gen_ave, "cremad": gen_cremad, "vggsound": gen_vggsound}[a.layout](a, rng, jobs)
    with cf.ThreadPoolExecutor(max(1, a.jobs)) as ex:
        for f in [ex.submit(fn, *args) for fn, args in jobs]:
            f.result()
    info["layout"] = a.layout
    json.dump(info, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
