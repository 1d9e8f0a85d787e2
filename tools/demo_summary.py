#!/usr/bin/python3
"""The summary of make demo (tools/demo.sh): the teacher's test accuracy, each student's over the
seeds (mean ± sample standard deviation), and whether C2KD's difference from no-KD is larger
than the noise.

The rule: Welch's t = (mean_c2kd - mean_none) / sqrt(s_c2kd^2 / n + s_none^2 / n) against the
two-sided 5 % critical value of Student's t at the Welch-Satterthwaite degrees of freedom. With
3 seeds per arm that value is about 2.8 to 4.3, so only a difference of more than about three
standard errors counts: a real but smaller effect is reported as "not beyond the noise" (the
test has little power), never the reverse.

Usage: demo_summary.py WORK "SEEDS" WALL_SECONDS "CPU_TIMES"   (CPU_TIMES: sh's `times` line)
"""
import json
import math
import os
import re
import sys


def result(work, run):
    with open(os.path.join(work, run, "result.json")) as f:
        return json.load(f)


def mean_sd(xs):
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return m, sd


def welch(a, b):
    """(t, degrees of freedom, two-sided 5 % critical value) of mean(a) - mean(b); None if undefined."""
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    if len(a) < 2 or len(b) < 2 or va + vb == 0:
        return None
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    from scipy.stats import t as student_t
    return (ma - mb) / math.sqrt(va + vb), df, float(student_t.ppf(0.975, df))


def cpu_seconds(times_line):
    """User + system seconds from a `times` line such as '1m20.50s 0m9.75s'."""
    total = 0.0
    for m_, s_ in re.findall(r"(\d+)m([\d.]+)s", times_line):
        total += 60 * int(m_) + float(s_)
    return total


def main():
    work, seeds = sys.argv[1], sys.argv[2].split()
    wall, cpu = float(sys.argv[3]), cpu_seconds(sys.argv[4])
    t = result(work, "teacher")
    with open(os.path.join(work, "data", "index.json")) as f:
        n_test = json.load(f)["splits"]["test"]["count"]
    print(f"== demo results: test top-1 ({n_test} test clips, one clip = {100 / n_test:.2f} points) "
          "at the best validation epoch")
    print(f"  audio teacher (pretrained)       {100 * t['test_acc_at_best_val']:6.2f}%   plot: {t['plot']}")
    acc = {}
    for m, what in (("none", "visual student, no KD"), ("c2kd", "visual student, C2KD")):
        rs = [result(work, f"{m}-seed{s}") for s in seeds]
        acc[m] = [100 * r["test_acc_at_best_val"] for r in rs]
        per = "  ".join(f"seed {s}: {a:5.2f}% (epoch {r['best_epoch']})" for s, a, r in zip(seeds, acc[m], rs))
        mu, sd = mean_sd(acc[m])
        print(f"  {what:32s} {mu:6.2f}% ± {sd:.2f}   [{per}]")
    d = mean_sd(acc["c2kd"])[0] - mean_sd(acc["none"])[0]
    w = welch(acc["c2kd"], acc["none"])
    print(f"  difference C2KD - no KD: {d:+.2f} points over {len(seeds)} seeds each")
    if w is None:
        print("  (fewer than 2 seeds, or no spread: no test of the difference)")
    else:
        tv, df, crit = w
        beyond = abs(tv) > crit
        print(f"  Welch t = {tv:+.2f} (df {df:.1f}; beyond the noise when |t| > {crit:.2f}, two-sided 5 %)")
        if beyond:
            print(f"  => C2KD's difference from no KD is larger than the noise: C2KD is "
                  f"{'better' if d > 0 else 'worse'} here.")
        else:
            print("  => C2KD's difference from no KD is NOT larger than the noise of "
                  f"{len(seeds)} seeds: this run shows no reliable difference either way "
                  "(with so few seeds only a large effect could show).")
    print(f"  time: {wall:.0f} s wall, {cpu:.0f} s CPU (user + system of every step; {os.cpu_count()} cores here)")


if __name__ == "__main__":
    main()
