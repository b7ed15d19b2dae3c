"""Reads a folder of TensorBoard event files with the tensorboard package's own code and prints
one JSON object for tests/tensorboard_test.cpp:
  files:   per event file (in name order) its records, the first record's file_version, whether
           every record's bytes equal protobuf's own serialization of the parsed Event, and the
           record reader's error (a failed CRC check, a truncation) or null;
  scalars: [tag, step, value] of every scalar, as TensorBoard's EventAccumulator loads the
           folder (restarts purged, files merged in name order).
Usage: read_tensorboard.py FOLDER"""
import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New


def read_file(path):
    reader = PyRecordReader_New(path)
    records, canonical, file_version, error = 0, True, None, None
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        except errors.DataLossError as e:
            error = e.message
            break
        raw = reader.record()
        event = event_pb2.Event.FromString(raw)
        if records == 0:
            file_version = event.file_version
        canonical = canonical and event.SerializeToString() == raw
        records += 1
    return {"name": os.path.basename(path), "records": records, "file_version": file_version,
            "canonical": canonical, "error": error}


def main():
    folder = sys.argv[1]
    names = sorted(n for n in os.listdir(folder) if "tfevents" in n)
    files = [read_file(os.path.join(folder, n)) for n in names]
    accumulator = event_accumulator.EventAccumulator(
        folder, size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    scalars = [[tag, e.step, e.value]
               for tag in sorted(accumulator.Tags()["scalars"])
               for e in accumulator.Scalars(tag)]
    print(json.dumps({"files": files, "scalars": scalars}))


if __name__ == "__main__":
    main()
