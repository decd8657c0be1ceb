"""TensorBoard scalars of metrics rows: finite numbers only, a resumed run purges later steps."""

from __future__ import annotations

import math
import struct

import pytest

from rllib_hatrpo.experiments.tensorboard import TensorBoardScalars, summary_writer_class

pytestmark = pytest.mark.skipif(summary_writer_class() is None, reason="no SummaryWriter")


def _events(path):
    from tensorboardX.proto import event_pb2

    data, pos, events = path.read_bytes(), 0, []
    while pos < len(data):  # TFRecords: length (u64), its crc (u32), data, its crc (u32)
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        events.append(event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length]))
        pos += 12 + length + 4
    return events


def test_finite_numbers_become_scalars_and_a_resume_purges_later_steps(tmp_path):
    with TensorBoardScalars(tmp_path) as board:
        assert board.enabled
        board.append({"training_iteration": 1, "team_return": math.nan, "kl_total": 0.5})
        board.append({"training_iteration": 2, "team_return": -3.0, "kl_total": 0.25})
    (first,) = tmp_path.glob("events.out.tfevents.*")
    scalars = {(v.tag, e.step): v.simple_value for e in _events(first) for v in e.summary.value}
    assert scalars == {
        ("training_iteration", 1): 1.0,
        ("kl_total", 1): 0.5,
        ("training_iteration", 2): 2.0,
        ("team_return", 2): -3.0,
        ("kl_total", 2): 0.25,
    }
    with TensorBoardScalars(tmp_path, first_step=2) as board:  # a resume, in the same second
        board.append({"training_iteration": 2, "kl_total": 0.125})
    (second,) = set(tmp_path.glob("events.out.tfevents.*")) - {first}
    assert _events(first)[-1].summary.value[-1].simple_value == 0.25  # kept, not overwritten
    purges = [e.step for e in _events(second) if e.session_log.status == e.session_log.START]
    assert purges == [2]
