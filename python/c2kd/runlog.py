"""A run's RUN/metrics.jsonl (docs/FORMAT.md, "Run folder") as scalar series.

Each record's numbers become scalars named "<type>/<key>" ("step/loss", "epoch/val_acc_student");
a list of per-class accuracies ("val_class_acc_student") becomes one scalar per class,
"epoch/val_class_acc_student/<class>" (class names from RUN/eval/eval.json or a checkpoint
of the run; else "class<k>"); null entries (a class without samples) are left out.
Lines that are not JSON (a killed run's torn last line) are passed over, as train does.
"""
import json
import os

__all__ = ["records", "class_names", "scalars"]


def records(run):
    """The records of RUN/metrics.jsonl, in order."""
    path = os.path.join(run, "metrics.jsonl")
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if isinstance(j, dict):
                out.append(j)
    return out


def class_names(run):
    """The class names of a run: RUN/eval/eval.json, else the data identity of its
    checkpoints (best.h5, last.h5); None when neither is there."""
    try:
        with open(os.path.join(run, "eval", "eval.json"), encoding="utf-8") as f:
            return list(json.load(f)["classes"])
    except (OSError, ValueError, KeyError):
        pass
    for name in ("best.h5", "last.h5"):
        try:
            import h5py
            with h5py.File(os.path.join(run, name), "r") as f:
                v = f.attrs["recipe"]
                return list(json.loads(v.decode() if isinstance(v, bytes) else str(v))["classes"])
        except (OSError, KeyError, ValueError, ImportError):
            continue
    return None


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def scalars(rec, classes=None):
    """(name, value) of one record's numbers, per-class lists expanded."""
    kind = rec.get("type", "record")
    out = []
    for k, v in rec.items():
        if k in ("type", "step", "time"):  # the x axis and the wall time of the record
            continue
        if _number(v):
            out.append((f"{kind}/{k}", float(v)))
        elif isinstance(v, list) and all(x is None or _number(x) for x in v):
            for c, x in enumerate(v):
                if x is not None:
                    name = classes[c] if classes and c < len(classes) else f"class{c}"
                    out.append((f"{kind}/{k}/{name}", float(x)))
    return out
