"""One seed gives one run, whatever Python's string hashing (``PYTHONHASHSEED``) does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rllib_hatrpo.envs import MPEEnv
from tests.helpers import make_config

pytestmark = pytest.mark.component

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ("agent_0", "agent_1", "agent_2")

# Two iterations of uniform HATRPO on simple_spread (3 agents), local sampling; returns the
# module order of the config and every actor's weights after training.
_TRAIN = """
import sys
import numpy as np
from tests.component.test_determinism import train_two_iterations

np.savez(sys.argv[1], **train_two_iterations())
"""


def train_two_iterations() -> dict[str, np.ndarray]:
    """The module order and every actor's weights after two iterations with seed 0.

    On one torch thread in both processes: with another thread count the float sums of the
    update are ordered differently (differences of ~1e-7), which is not what is tested here.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = make_config(MPEEnv, {"scenario": "simple_spread_v3"}, batch=100).debugging(seed=0)
    algo = config.build_algo()
    try:
        for _ in range(2):
            algo.train()
        arrays = {"__order__": np.array(list(algo.config.policies))}
        for mid in algo.config.policies:
            for name, value in algo.get_module(mid).state_dict().items():
                arrays[f"{mid}/{name}"] = value.detach().numpy()
        return arrays
    finally:
        algo.stop()
        torch.set_num_threads(threads)


def _set_order(hash_seed: str | None) -> list[str]:
    """The order in which a ``set`` of the agent IDs iterates under a hash seed."""
    env = {**os.environ}
    env.pop("PYTHONHASHSEED", None)
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    code = f"print(','.join({{*{AGENTS!r}}}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return out.stdout.strip().split(",")


@pytest.mark.parametrize("given", [list(reversed(AGENTS))])
def test_modules_follow_the_envs_agent_order_however_the_policies_are_given(given):
    """The mechanism the hash-seed test below checks end to end (marked slow: two processes):
    the config orders its modules like the env's agents, so the learner builds and sweeps
    them in one order, with the same initial weights, whatever order (or set) it was given."""
    torch.manual_seed(0)
    reference = _learner_weights(None)
    config = make_config(MPEEnv, {"scenario": "simple_spread_v3"}, batch=100)
    config.multi_agent(policies=given, policy_mapping_fn=lambda aid, *args, **kwargs: aid)
    config.validate()
    assert list(config.policies) == list(AGENTS)
    torch.manual_seed(0)
    weights = _learner_weights(given)
    assert weights.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(weights[key], reference[key], rtol=0, atol=0)


def _learner_weights(policies) -> dict:
    """Every module's initial weights of a learner built from a config given ``policies``."""
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    config = make_config(MPEEnv, {"scenario": "simple_spread_v3"}, batch=100)
    if policies is not None:
        config.multi_agent(policies=policies, policy_mapping_fn=lambda aid, *a, **k: aid)
    config.validate()
    runner = MultiAgentEnvRunner(config=config)
    learner = config.build_learner(spaces=runner.get_spaces())
    runner.stop()
    return {
        f"{mid}/{name}": value.detach().clone()
        for mid in learner.module.keys()
        for name, value in learner.module[mid].state_dict().items()
    }


@pytest.mark.slow
def test_same_seed_gives_identical_weights_across_hash_seeds(tmp_path):
    """Before: hash seeds 1 and 2 gave agent orders [agent_0, agent_1, agent_2] vs
    [agent_2, agent_1, agent_0] and different weights after one update.

    Here the test's own process trains once, and a subprocess whose hash seed orders a set of
    the agent IDs differently from this process trains once more.
    """
    ours = list(dict.fromkeys(str(a) for a in {*AGENTS}))  # this process's set order
    other = next(seed for seed in map(str, range(1, 50)) if _set_order(seed) != ours)
    out = tmp_path / "other.npz"
    env = {**os.environ, "PYTHONHASHSEED": other, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _TRAIN, str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    here = train_two_iterations()
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log.decode()[-3000:]
    there = dict(np.load(out))
    assert list(here["__order__"]) == list(AGENTS)
    assert list(there["__order__"]) == list(AGENTS)
    assert here.keys() == there.keys()
    for key in here:
        np.testing.assert_array_equal(here[key], there[key], err_msg=key)
