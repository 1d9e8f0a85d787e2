"""python -m c2kd.tb RUN [--out DIR]: a run's metrics.jsonl as TensorBoard event files.

Writes DIR/events.out.tfevents.<time>.c2kd (DIR: RUN/tb) with one scalar per number of
each record (c2kd.runlog: "step/loss", "epoch/test_acc_student", per-class accuracies
"epoch/test_class_acc_student/<class>"), at the record's global step and wall time.
`tensorboard --logdir RUN/tb` shows them.

The file is written with the standard library alone: a TFRecord file (each record: its
length as uint64 little endian, the length's masked CRC-32C, the bytes, their masked
CRC-32C) of tensorflow.Event protocol-buffer messages (wall_time = 1 double, step = 2
int64, file_version = 3 string, summary = 5 Summary; Summary.value = 1 repeated Value;
Value.tag = 1 string, Value.simple_value = 2 float). read_events() reads such files back.
"""
import argparse
import os
import struct
import sys
import time

from c2kd.runlog import class_names, records, scalars

__all__ = ["crc32c", "write_events", "read_events", "convert", "main"]


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_TABLE = _crc_table()


def crc32c(data):
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of bytes."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1  # int64 as protobuf encodes it (two's complement)
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    return _varint(num << 3 | wire) + payload


def _bytes_field(num, b):
    return _field(num, 2, _varint(len(b)) + b)


def _event(wall_time, step, file_version=None, values=()):
    e = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(int(step)))
    if file_version is not None:
        e += _bytes_field(3, file_version.encode())
    if values:
        summary = b"".join(_bytes_field(1, _bytes_field(1, tag.encode()) + _field(2, 5, struct.pack("<f", v)))
                           for tag, v in values)
        e += _bytes_field(5, summary)
    return e


def _record(data):
    n = struct.pack("<Q", len(data))
    return n + struct.pack("<I", _masked(n)) + data + struct.pack("<I", _masked(data))


def write_events(path, events):
    """Writes an event file: events = [(wall_time, step, [(tag, value), ...]), ...] after
    the file_version event. Atomic (temporary name, then renamed)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        first = events[0][0] if events else time.time()
        f.write(_record(_event(first, 0, file_version="brain.Event:2")))
        for wall, step, values in events:
            f.write(_record(_event(wall, step, values=values)))
    os.replace(tmp, path)


def _read_varint(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _read_varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(b, i)
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        elif wire == 2:
            n, i = _read_varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError(f"protobuf wire type {wire} not expected")
        yield num, wire, v


def read_events(path):
    """The events of a file written by write_events (or TensorFlow): a list of dicts
    wall_time, step, file_version (or None), values [(tag, value)]. Checks every CRC."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i < len(data):
        if len(data) - i < 12:
            raise ValueError(f"{path}: truncated record header at byte {i}")
        head = data[i:i + 8]
        (n,) = struct.unpack("<Q", head)
        (hc,) = struct.unpack("<I", data[i + 8:i + 12])
        if hc != _masked(head):
            raise ValueError(f"{path}: length CRC mismatch at byte {i}")
        body = data[i + 12:i + 12 + n]
        (bc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
        if len(body) != n or bc != _masked(body):
            raise ValueError(f"{path}: data CRC mismatch at byte {i}")
        i += 16 + n
        ev = {"wall_time": None, "step": 0, "file_version": None, "values": []}
        for num, _, v in _fields(body):
            if num == 1:
                ev["wall_time"] = struct.unpack("<d", v)[0]
            elif num == 2:
                ev["step"] = v - (1 << 64) if v >= 1 << 63 else v
            elif num == 3:
                ev["file_version"] = v.decode()
            elif num == 5:
                for vn, _, val in _fields(v):
                    if vn != 1:
                        continue
                    tag, x = None, None
                    for fn, _, fv in _fields(val):
                        if fn == 1:
                            tag = fv.decode()
                        elif fn == 2:
                            x = struct.unpack("<f", fv)[0]
                    ev["values"].append((tag, x))
        out.append(ev)
    return out


def convert(run, out=None):
    """RUN/metrics.jsonl -> an event file in out (default RUN/tb); returns its path."""
    out = out or os.path.join(run, "tb")
    recs = records(run)
    classes = class_names(run)
    fallback = os.path.getmtime(os.path.join(run, "metrics.jsonl"))
    events = []
    for r in recs:
        vals = scalars(r, classes)
        if not vals or not isinstance(r.get("step"), (int, float)):
            continue
        events.append((float(r.get("time", fallback)), int(r["step"]), vals))
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"events.out.tfevents.{int(events[0][0] if events else fallback)}.c2kd")
    write_events(path, events)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m c2kd.tb", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run folder of train (holding metrics.jsonl)")
    ap.add_argument("--out", help="the folder of the event file (default RUN/tb)")
    a = ap.parse_args(argv)
    try:
        print(convert(a.run, a.out))
    except OSError as e:
        print(f"c2kd.tb: {a.run}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
