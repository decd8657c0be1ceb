"""Image observations end to end: the wrapper keeps them, the modules get a CNN, the learner
updates through it, and ``validate()`` refuses a batch that would not fit in memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from pettingzoo import ParallelEnv
from ray.rllib.core.columns import Columns

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import GLOBAL_STATE_KEY, PettingZooEnv
from rllib_hatrpo.torch.cnn import ImageNet
from tests.helpers import connector_batch, make_config, runner_and_learner

pytestmark = pytest.mark.component

#: pistonball_v6's raw spaces (20 pistons).
PISTONBALL_OBS = (457, 120, 3)
PISTONBALL_STATE = (560, 880, 3)


class _ImageParallelEnv(ParallelEnv):
    """Agents with uint8 image observations (the pixel brightness follows the step), 6 steps.

    The reward is higher the closer each action is to the image's mean brightness / 255.
    """

    metadata: ClassVar[dict] = {"name": "images_v0"}

    def __init__(self, shape=(10, 12, 2), n_agents=2, state_shape=None, max_steps=6):
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.shape, self.state_shape, self.max_steps = tuple(shape), state_shape, max_steps
        self.t = 0
        self.rng = np.random.default_rng(0)
        if state_shape is not None:
            self.state_space = gym.spaces.Box(0, 255, state_shape, np.uint8)

    def observation_space(self, agent):
        return gym.spaces.Box(0, 255, self.shape, np.uint8)

    def action_space(self, agent):
        if agent == self.possible_agents[0]:
            return gym.spaces.Discrete(3)
        return gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def state(self):
        if self.state_shape is None:
            raise NotImplementedError
        return np.zeros(self.state_shape, np.uint8)

    def _obs(self):
        return {aid: self.rng.integers(0, 256, self.shape, dtype=np.uint8) for aid in self.agents}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        self._last = self._obs()
        return self._last, {aid: {} for aid in self.agents}

    def step(self, actions):
        self.t += 1
        target = {aid: float(o.mean()) / 255.0 for aid, o in self._last.items()}
        rewards = {aid: -abs(float(np.ravel(actions[aid])[0]) - target[aid]) for aid in actions}
        done = self.t >= self.max_steps
        self._last = self._obs()
        flags = {aid: done for aid in self.agents}
        return self._last, rewards, {a: False for a in self.agents}, flags, {}


class ImageEnv(PettingZooEnv):
    """`PettingZooEnv` around `_ImageParallelEnv`, configured by the env_config dict."""

    def __init__(self, config=None):
        config = dict(config or {})
        global_state = config.pop("global_state", "auto")
        super().__init__(_ImageParallelEnv(**config), global_state=global_state)


def test_wrapper_keeps_uint8_images_and_stacks_them_as_the_state():
    env = ImageEnv({"shape": (10, 12, 2), "n_agents": 3})
    space = env.observation_spaces["agent_0"]
    assert space.shape == (10, 12, 2) and space.dtype == np.uint8
    assert env.global_state == "concat_obs"
    assert env.state_space.shape == (10, 12, 6) and env.state_space.dtype == np.uint8
    obs, infos = env.reset(seed=1)
    assert obs["agent_1"].dtype == np.uint8 and obs["agent_1"].shape == (10, 12, 2)
    state = infos["agent_0"][GLOBAL_STATE_KEY]
    np.testing.assert_array_equal(state[..., 2:4], obs["agent_1"])  # agent order, channels
    assert state is infos["agent_2"][GLOBAL_STATE_KEY] and not state.flags.writeable
    env_state = ImageEnv({"state_shape": (20, 16, 3)})
    assert env_state.global_state == "state"
    assert env_state.state_space.shape == (20, 16, 3) and env_state.state_space.dtype == np.uint8


def test_image_env_gets_cnn_modules_and_one_learner_update_works():
    config = make_config(ImageEnv, {}, batch=48, cnn_filters=[[4, 3, 2], [8, 3, 2]])
    runner, learner = runner_and_learner(config)
    actor = learner.module["agent_1"].unwrapped()
    critic = learner.module[SHARED_CRITIC_ID].unwrapped()
    assert isinstance(actor.pi, ImageNet) and isinstance(critic.vf, ImageNet)
    episodes = runner.sample(num_timesteps=48)
    batch = connector_batch(learner, episodes)
    assert batch["agent_1"][Columns.OBS].dtype == torch.uint8  # stays uint8 to the learner
    out = actor.forward_train({Columns.OBS: batch["agent_1"][Columns.OBS]})
    assert out[Columns.ACTION_DIST_INPUTS].shape == (len(batch["agent_1"][Columns.OBS]), 2)
    state = batch[SHARED_CRITIC_ID][Columns.OBS]
    assert tuple(state.shape[1:]) == (10, 12, 4)
    assert state.dtype == torch.uint8  # the critic's image state stays uint8 too
    values = critic.compute_values({Columns.OBS: state})
    assert values.shape == (len(state),)
    torch.testing.assert_close(values, critic.compute_values({Columns.OBS: state.float()}))

    before = {k: v.clone() for k, v in actor.state_dict().items()}
    results = learner.update(episodes=episodes, timesteps={})
    kl = results["agent_1"]["kl"].peek()
    assert 0.0 <= kl <= results["agent_1"]["kl_budget"].peek()
    if results["agent_1"]["line_search_accepted"].peek():
        conv = "pi.encoder.net.0.cnn.1.weight"
        assert not torch.equal(actor.state_dict()[conv], before[conv])
    # The weights reach the EnvRunner's modules and back through get_state/set_state.
    runner.set_state({"rl_module": learner.module.get_state(inference_only=True)})
    runner.sample(num_timesteps=12)


def test_memory_budget_refuses_raw_pistonball_and_names_the_fixes():
    raw = {"shape": PISTONBALL_OBS, "n_agents": 20, "state_shape": PISTONBALL_STATE}
    config = HATRPOConfig().environment(ImageEnv, env_config=raw)
    with pytest.raises(ValueError) as err:
        config.validate()
    message = str(err.value)
    for part in (
        "≈ 142.1 GB",  # (20 · 457·120·3 + 560·880·3) B × 4000 × 8
        "20 × (457, 120, 3) uint8",
        "color_reduction_v0",
        "resize_v1",
        "frame_stack_v1",
        "dtype_v0",
        "train_batch_size_per_learner",
        "max_batch_memory_gib",
    ):
        assert part in message, part
    HATRPOConfig().environment(ImageEnv, env_config=raw).training(
        max_batch_memory_gib=None
    ).validate()
    HATRPOConfig().environment(ImageEnv, env_config=raw).training(
        train_batch_size_per_learner=200
    ).validate()


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        ([[16, 8, 4, "valid"], [32, 8, 4, "valid"]], r"does not fit the image \(10, 12, 2\)"),
        ([[16, 8]], r"layer 0 must be"),
        ([], r"cnn_filters=\.\.\.\) must be a non-empty list"),
        ([[16, 3, 1, "full"]], r"layer 0 must be"),
    ],
)
def test_bad_cnn_filters_are_refused_by_validate(filters, match):
    config = HATRPOConfig().environment(ImageEnv, env_config={}).training(cnn_filters=filters)
    with pytest.raises(ValueError, match=r"training\(cnn_filters=\.\.\.\)") as err:
        config.validate()
    assert err.match(match)


def make_pistonball(config):
    """The README's pistonball factory: grey 32×32 frames, 3 stacked; the state their stack."""
    import supersuit as ss
    from pettingzoo.butterfly import pistonball_v6

    env = pistonball_v6.parallel_env(**config)  # n_pistons=20, continuous actions
    env = ss.frame_stack_v1(ss.resize_v1(ss.color_reduction_v0(env, "B"), 32, 32), 3)
    return PettingZooEnv(env, global_state="concat_obs")


#: The README's bound on the peak RSS of the process that samples and learns (measured:
#: 1.3 GB with train_batch_size_per_learner=500; Ray's own daemons are other processes).
PISTONBALL_PEAK_GIB = 2.5
_TRAIN_AND_REPORT_RSS = (
    "import resource, sys\n"
    "from rllib_hatrpo.cli.main import main\n"
    "rc = main(sys.argv[1:])\n"
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(rc)\n"
)


@pytest.mark.slow
def test_pistonball_preprocessed_trains_two_iterations_in_bounded_memory(tmp_path):
    """The README's pistonball command with a small batch: 2 iterations, peak RSS bounded."""
    pytest.importorskip("pymunk")
    pytest.importorskip("supersuit")
    argv = [
        "train",
        "--env",
        "tests.component.test_image_observations:make_pistonball",
        "--num-env-runners",
        "0",
        "--num-envs-per-env-runner",
        "1",
        "--train-batch-size",
        "250",
        "--stop-iters",
        "2",
        "--output",
        str(tmp_path / "run"),
    ]
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN_AND_REPORT_RSS, *argv],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, **threads},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 iterations" in done.stdout
    peak_kib = int(done.stdout.rsplit("MAXRSS_KB", 1)[1].split()[0])
    assert peak_kib / 2**20 < PISTONBALL_PEAK_GIB
