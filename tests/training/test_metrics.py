import io
import json

from tensorboardX.proto import event_pb2  # noqa: F401  (tensorboardX ships the event proto)

from jaxmodels.training.metrics import MetricWriter, ProgressLine


def read_tensorboard_scalars(directory):
    import glob
    import struct
    values = {}
    for path in glob.glob(f"{directory}/events.out.tfevents*"):
        data = open(path, "rb").read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                values[(value.tag, event.step)] = value.simple_value
    return values


def test_writer_writes_jsonl_and_tensorboard(tmp_path):
    writer = MetricWriter(str(tmp_path), enabled=True)
    writer.write_scalars(10, {"train/loss": 0.5, "eval/accuracy": 0.25})
    writer.write_scalars(20, {"train/loss": float("nan")})
    writer.close()
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert lines == [{"step": 10, "train/loss": 0.5, "eval/accuracy": 0.25}, {"step": 20, "train/loss": "nan"}]
    scalars = read_tensorboard_scalars(tmp_path / "tensorboard")
    assert scalars[("train/loss", 10)] == 0.5 and scalars[("eval/accuracy", 10)] == 0.25


def test_disabled_writer_writes_nothing(tmp_path):
    writer = MetricWriter(str(tmp_path / "run"), enabled=False)
    writer.write_scalars(1, {"loss": 1.0})
    writer.close()
    assert not (tmp_path / "run").exists()


def test_progress_line_has_rate_and_eta():
    stream = io.StringIO()
    progress = ProgressLine(1000, enabled=True, stream=stream)
    line = progress.line(100, {"accuracy": 0.5, "loss": 0.123456}, steps_per_second=10.0)
    assert line == "step 100/1000 | loss 0.1235 | accuracy 0.5 | 10.00 steps/s | ETA 0:01:30"
    progress.print(line)
    assert stream.getvalue() == line + "\n"
