"""One seed gives one run, whatever Python's string hashing (``PYTHONHASHSEED``) does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.component

ROOT = Path(__file__).resolve().parents[2]

# Two iterations of uniform HATRPO on simple_spread (3 agents), local sampling; writes the
# module order of the config and every actor's weights after training.
_TRAIN = """
import sys
import numpy as np
from rllib_hatrpo.envs import MPEEnv
from tests.helpers import make_config

config = make_config(MPEEnv, {"scenario": "simple_spread_v3"}, batch=100).debugging(seed=0)
algo = config.build_algo()
for _ in range(2):
    algo.train()
arrays = {"__order__": np.array(list(algo.config.policies))}
for mid in algo.config.policies:
    for name, value in algo.get_module(mid).state_dict().items():
        arrays[f"{mid}/{name}"] = value.detach().numpy()
np.savez(sys.argv[1], **arrays)
algo.stop()
"""


def _train(hash_seed: int, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _TRAIN, str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_same_seed_gives_identical_weights_across_hash_seeds(tmp_path):
    """Before: hash seeds 1 and 2 gave agent orders [agent_0, agent_1, agent_2] vs
    [agent_2, agent_1, agent_0] and different weights after one update."""
    outs = [tmp_path / "hash1.npz", tmp_path / "hash2.npz"]
    procs = [_train(seed, out) for seed, out in zip((1, 2), outs, strict=True)]
    for proc in procs:
        log, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, log.decode()[-3000:]
    first, second = (dict(np.load(out)) for out in outs)
    assert list(first["__order__"]) == ["agent_0", "agent_1", "agent_2"]
    assert list(second["__order__"]) == ["agent_0", "agent_1", "agent_2"]
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
