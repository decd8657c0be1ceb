"""`PackedInfos` unpickles into the same info dicts: keys, order, types, dtypes and values."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import ray.cloudpickle

from rllib_hatrpo.packed_infos import PackedInfos


def _assert_identical(got, expected):
    assert type(got) is type(expected)
    if isinstance(expected, dict):
        assert list(got) == list(expected)  # the same keys in the same order
        for key in expected:
            _assert_identical(got[key], expected[key])
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected, strict=True)
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            _assert_identical(a, b)
    else:
        assert got == expected or (got != got and expected != expected)  # NaN == NaN


def _infos(n=50):
    rng = np.random.default_rng(0)
    reset = {"global_state": rng.normal(size=3).astype(np.float32), "env_terminated": False}
    steps = [
        {
            "x_position": np.float64(rng.normal()),
            "global_state": rng.normal(size=3).astype(np.float32),
            "agent_reward": float(rng.normal()),
            "env_terminated": bool(i == n - 1),
            "step": i,
            "count": np.int32(i),
            "label": f"s{i}",  # a type that is not packed
        }
        for i in range(n)
    ]
    return [reset, *steps, {}]


@pytest.mark.parametrize("dumps", [pickle.dumps, ray.cloudpickle.dumps])
def test_round_trip_is_identical(dumps):
    infos = _infos()
    packed = PackedInfos(infos)
    assert packed == infos  # a plain list of the same dicts until pickled
    restored = pickle.loads(dumps(packed))
    assert isinstance(restored, PackedInfos)
    _assert_identical(list(restored), infos)
    assert len(dumps(packed)) < len(dumps(infos))


def test_restored_arrays_are_separate_copies():
    infos = _infos(4)
    restored = pickle.loads(pickle.dumps(PackedInfos(infos)))
    restored[1]["global_state"][0] = 123.0
    assert restored[2]["global_state"][0] != 123.0
    assert restored[1]["global_state"].flags.writeable


def test_columns_that_cannot_be_packed_are_kept_as_they_are():
    infos = [
        {
            "mixed": 1.0 if i % 2 else np.float64(2.0),
            "big": 2**70,
            "nan": float("nan"),
            "shapes": np.zeros(i % 2 + 1),
            "obj": np.array([None]),
            "nested": {"a": i},
        }
        for i in range(6)
    ]
    _assert_identical(list(pickle.loads(pickle.dumps(PackedInfos(infos)))), infos)
    assert pickle.loads(pickle.dumps(PackedInfos([]))) == []
    # Numpy scalars that are not numbers keep their own list; numeric ones keep their dtype.
    scalars = [
        {
            "s": np.str_("ab" * i),
            "t": np.datetime64("2020-01-01"),
            "f": np.float32(i),
            "b": np.bool_(i % 2),
        }
        for i in range(4)
    ]
    _assert_identical(list(pickle.loads(pickle.dumps(PackedInfos(scalars)))), scalars)
