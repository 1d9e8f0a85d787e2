"""python -m c2kd.csv RUN [--out DIR]: a run's metrics.jsonl as CSV files.

DIR/steps.csv (one row per training step) and DIR/epochs.csv (one row per epoch), DIR
defaulting to RUN; columns: "step", "epoch", "time", then every other key in order of
first appearance, per-class lists expanded to one column per class ("val_class_acc_student/
<class>", c2kd.runlog); empty cells where a record has no value.
"""
import argparse
import csv as _csv
import os
import sys

from c2kd.runlog import class_names, records

__all__ = ["tables", "convert", "main"]


def _row(rec, classes):
    row = {}
    for k, v in rec.items():
        if k == "type":
            continue
        if isinstance(v, list):
            for c, x in enumerate(v):
                row[f"{k}/{classes[c] if classes and c < len(classes) else f'class{c}'}"] = x
        else:
            row[k] = v
    return row


def tables(run):
    """{"steps": (columns, rows), "epochs": (columns, rows)} of a run (rows: dicts)."""
    classes = class_names(run)
    out = {}
    for kind, name in (("step", "steps"), ("epoch", "epochs")):
        rows = [_row(r, classes) for r in records(run) if r.get("type") == kind]
        cols = [c for c in ("step", "epoch", "time") if any(c in r for r in rows)]
        for r in rows:
            cols += [k for k in r if k not in cols]
        out[name] = (cols, rows)
    return out


def convert(run, out=None):
    """Writes OUT/steps.csv and OUT/epochs.csv (OUT: RUN by default); returns their paths."""
    out = out or run
    os.makedirs(out, exist_ok=True)
    paths = []
    for name, (cols, rows) in tables(run).items():
        path = os.path.join(out, f"{name}.csv")
        with open(path + ".tmp", "w", newline="", encoding="utf-8") as f:
            w = _csv.DictWriter(f, fieldnames=cols, restval="")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m c2kd.csv", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run folder of train (holding metrics.jsonl)")
    ap.add_argument("--out", help="the folder of steps.csv and epochs.csv (default RUN)")
    a = ap.parse_args(argv)
    try:
        for p in convert(a.run, a.out):
            print(p)
    except OSError as e:
        print(f"c2kd.csv: {a.run}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
