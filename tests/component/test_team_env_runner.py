"""`TeamEnvRunner` gives the learner what RLlib's `MultiAgentEnvRunner` gives it.

Equal weights, fixed seeds, two `sample()` calls (so that an episode chunk continues across
them): the learner connector's train batch (observations, actions, log-probabilities,
distribution inputs, rewards, loss masks, value targets and advantages of the central critic's
GAE) is identical, for MaMuJoCo HalfCheetah 2x3 with a time limit inside the sample, MPE
simple_spread and a user env with a Box and a Discrete agent. With exploration too: both
runners draw the actions from torch's RNG in the same order.

One difference is intended: RLlib's `MultiAgentEpisode` marks a time-limit cut as terminated
as well as truncated; this runner keeps the env's own flags (the learner reads the env's
``ENV_TERMINATED_KEY`` in either case, so value targets and advantages are the same).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

from rllib_hatrpo.envs import ENV_TERMINATED_KEY, GLOBAL_STATE_KEY, MaMuJoCoEnv, MPEEnv
from rllib_hatrpo.team_env_runner import TeamEnvRunner
from tests.helpers import connector_batch, make_config

pytestmark = pytest.mark.component


class MixedTeamEnv(MultiAgentEnv):
    """A user env: "mover" (Box obs (3,), Box action (2,)) and "chooser" (Box obs (2,),
    Discrete(3)); it terminates when the mover's position leaves [-2, 2], else truncates
    at step 12."""

    def __init__(self, config=None):
        super().__init__()
        self.possible_agents = self.agents = ["mover", "chooser"]
        self.observation_spaces = {
            "mover": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "chooser": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        }
        self.action_spaces = {
            "mover": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "chooser": gym.spaces.Discrete(3),
        }
        self.state_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.t, self.x = 0, self._rng.normal(size=2).astype(np.float32)
        return self._obs(), self._infos(None)

    def step(self, actions):
        self.t += 1
        self.x = self.x + 0.5 * np.asarray(actions["mover"], np.float32) * (
            int(actions["chooser"]) - 1 + self._rng.normal()
        )
        terminated = bool(np.abs(self.x).max() > 2.0)
        truncated = self.t >= 12 and not terminated
        reward = float(-np.abs(self.x).sum())
        flags = [{aid: f for aid in self.agents} | {"__all__": f} for f in (terminated, truncated)]
        rewards = {aid: reward for aid in self.agents}
        return self._obs(), rewards, flags[0], flags[1], self._infos(terminated)

    def _obs(self):
        return {
            "mover": np.array([*self.x, self.t / 12], np.float32),
            "chooser": np.array([self.x.sum(), self.t / 12], np.float32),
        }

    def _infos(self, terminated):
        state = np.array([*self.x, self.t / 12, 1.0], np.float32)
        extra = {} if terminated is None else {ENV_TERMINATED_KEY: terminated}
        return {aid: {GLOBAL_STATE_KEY: state, **extra} for aid in self.agents}


class ExactTeamEnvRunner(TeamEnvRunner):
    """Every actor on its own, as RLlib's runner: bit-for-bit the same batches."""

    group_agents = False


ENVS = {
    "halfcheetah_2x3": (MaMuJoCoEnv, {"max_episode_steps": 30}),
    "simple_spread": (MPEEnv, {}),
    "mixed_user_env": (MixedTeamEnv, {}),
}


def _config(env, runner_cls, *, num_envs=1, seed=0, explore=False):
    env_cls, env_config = ENVS[env]
    return (
        make_config(env_cls, env_config, batch=100)
        .env_runners(num_envs_per_env_runner=num_envs, env_runner_cls=runner_cls, explore=explore)
        .debugging(seed=seed)
    )


def _sample_twice(runner, explore):
    torch.manual_seed(123)
    return [
        *runner.sample(num_timesteps=70, explore=explore),
        *runner.sample(num_timesteps=70, explore=explore),
    ]


def _runner_pair(env, team_cls, **kwargs):
    """RLlib's runner, its learner and a team runner of class ``team_cls`` with its weights."""
    reference_config = _config(env, MultiAgentEnvRunner, **kwargs)
    reference_config.validate()
    reference = MultiAgentEnvRunner(config=reference_config)
    learner = reference_config.build_learner(spaces=reference.get_spaces())
    config = _config(env, team_cls, **kwargs)
    config.validate()
    runner = team_cls(config=config)
    runner.module.set_state(reference.module.get_state())
    return reference, learner, runner


@pytest.mark.parametrize("explore", [False, True], ids=["deterministic", "explore"])
@pytest.mark.parametrize("env", sorted(ENVS))
def test_train_batch_equals_rllib_runners(env, explore):
    reference, learner, runner = _runner_pair(env, ExactTeamEnvRunner, explore=explore)

    expected_episodes = _sample_twice(reference, explore)
    episodes = _sample_twice(runner, explore)
    assert [len(e) for e in episodes] == [len(e) for e in expected_episodes]
    assert any(e.is_done for e in episodes)
    expected, batch = (
        connector_batch(learner, expected_episodes),
        connector_batch(learner, episodes),
    )
    assert sorted(batch) == sorted(expected)
    for module_id, columns in expected.items():
        assert sorted(batch[module_id]) == sorted(columns), module_id
        for column, values in columns.items():
            got = batch[module_id][column]
            if column == Columns.TERMINATEDS:
                continue  # Checked below: RLlib marks time-limit cuts as terminated.
            np.testing.assert_array_equal(
                _numpy(got), _numpy(values), err_msg=f"{module_id} {column}", strict=True
            )
    truncated = [e for e in episodes if e.is_truncated]
    if env != "simple_spread":  # simple_spread's episodes (25 steps) end by their time limit.
        assert any(e.is_terminated for e in episodes) or truncated
    for episode in truncated:
        assert not episode.is_terminated


@pytest.mark.parametrize("env", ["halfcheetah_2x3", "mixed_user_env"])
def test_episodes_shipped_from_a_remote_runner_give_the_same_batch(env):
    """A remote EnvRunner's episodes reach the learner pickled (their infos as columns)."""
    import ray.cloudpickle

    _, learner, runner = _runner_pair(env, ExactTeamEnvRunner)
    episodes = _sample_twice(runner, False)
    shipped = ray.cloudpickle.loads(ray.cloudpickle.dumps(episodes))
    for sent, received in zip(episodes, shipped, strict=True):
        for aid, agent_episode in sent.agent_episodes.items():
            np.testing.assert_equal(
                list(received.agent_episodes[aid].get_infos()), list(agent_episode.get_infos())
            )
    expected, batch = connector_batch(learner, episodes), connector_batch(learner, shipped)
    for module_id, columns in expected.items():
        for column, values in columns.items():
            np.testing.assert_array_equal(
                _numpy(batch[module_id][column]), _numpy(values), strict=True
            )


@pytest.mark.parametrize("env", ["halfcheetah_2x3", "simple_spread"])
def test_grouped_actors_give_rllib_runners_batch_up_to_rounding(env):
    """Agents of one actor layout share a batched forward pass: the same batch to 1e-5."""
    reference, learner, runner = _runner_pair(env, TeamEnvRunner)
    expected = connector_batch(learner, _sample_twice(reference, False))
    batch = connector_batch(learner, _sample_twice(runner, False))
    assert [len(group) for group, _, _ in runner._groups] == [len(runner._agents)]
    for module_id, columns in expected.items():
        for column, values in columns.items():
            if column != Columns.TERMINATEDS:
                np.testing.assert_allclose(
                    _numpy(batch[module_id][column]),
                    _numpy(values),
                    rtol=1e-5,
                    atol=1e-5,
                    err_msg=f"{module_id} {column}",
                )


def _numpy(value):
    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _chunk_data(episode):
    return {
        aid: (ep.get_observations(), ep.get_actions(), ep.get_rewards())
        for aid, ep in episode.agent_episodes.items()
    }


def _same_chunk(a, b):
    """Equal up to float rounding: a forward pass over 3 rows rounds differently from 1 row."""
    return all(
        all(
            x.shape == y.shape and np.allclose(x, y, rtol=1e-6, atol=1e-6)
            for x, y in zip(a[aid], b[aid], strict=True)
        )
        for aid in a
    )


def test_lockstep_envs_match_separate_runs():
    """Env i of N = 3 in lockstep gives the chunks of a single env seeded i (20 steps each):
    the same episode boundaries, observations, actions and rewards."""
    config = _config("mixed_user_env", TeamEnvRunner, num_envs=3)
    config.validate()
    runner = TeamEnvRunner(config=config)
    chunks = [_chunk_data(e) for e in runner.sample(num_timesteps=60, explore=False)]
    expected_chunks = []
    for i in range(3):
        single_config = _config("mixed_user_env", MultiAgentEnvRunner, seed=i)
        single_config.validate()
        single = MultiAgentEnvRunner(config=single_config)
        single.module.set_state(runner.module.get_state())
        expected_chunks += [_chunk_data(e) for e in single.sample(num_timesteps=20, explore=False)]
    assert len(chunks) == len(expected_chunks) > 3  # some episodes ended inside the sample
    for expected in expected_chunks:
        assert sum(_same_chunk(expected, chunk) for chunk in chunks) == 1


def test_resets_are_seeded_as_rllibs_runner_seeds_them():
    """Episodes mode, then a forced reset: the same episodes as RLlib's runner."""
    chunks = []
    reference, _, team = _runner_pair("mixed_user_env", ExactTeamEnvRunner)
    for runner in (reference, team):
        episodes = runner.sample(num_episodes=2, explore=False)
        episodes += runner.sample(num_timesteps=20, explore=False, force_reset=True)
        episodes += runner.sample(num_timesteps=20, explore=False, force_reset=True)
        chunks.append([_chunk_data(e) for e in episodes])
    assert len(chunks[0]) == len(chunks[1])
    for expected, got in zip(*chunks, strict=True):
        assert _same_chunk(expected, got)


def test_refuses_what_it_cannot_honour():
    class StepCallback(RLlibCallback):
        def on_episode_step(self, **kwargs):
            pass

    config = _config("mixed_user_env", TeamEnvRunner).callbacks(StepCallback)
    config.validate()
    with pytest.raises(
        ValueError, match=r"StepCallback overrides on_episode_step.*MultiAgentEnvRunner"
    ):
        TeamEnvRunner(config=config)
    config = _config("mixed_user_env", TeamEnvRunner).env_runners(
        env_to_module_connector=lambda env, spaces, device: []
    )
    config.validate()
    with pytest.raises(ValueError, match="env_to_module_connector"):
        TeamEnvRunner(config=config)
    config = _config("mixed_user_env", TeamEnvRunner).fault_tolerance(
        restart_failed_sub_environments=True
    )
    config.validate()
    with pytest.raises(ValueError, match="restart_failed_sub_environments"):
        TeamEnvRunner(config=config)


def test_metrics_equal_rllib_runners():
    metrics = []
    reference, _, team = _runner_pair("mixed_user_env", TeamEnvRunner)
    for runner in (reference, team):
        runner.sample(num_timesteps=60, explore=False)
        metrics.append(runner.get_metrics())
    for key in (
        "episode_return_mean",
        "episode_len_mean",
        "num_episodes",
        "num_env_steps_sampled",
        "team_episode_return_mean",
    ):
        assert float(metrics[1][key]) == pytest.approx(float(metrics[0][key])), key


def test_rllibs_ppo_bootstraps_time_limit_cuts_only_on_the_team_runner():
    """RLlib's PPO on RLlib's runner treats a time-limit cut as terminal (its episode marks it
    terminated); on this runner's episodes its GAE bootstraps with V(s_T). All else is equal."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from rllib_hatrpo import agent_to_module

    gamma = 0.9

    def ppo(runner_cls):
        config = (
            PPOConfig()
            .environment(MaMuJoCoEnv, env_config={"max_episode_steps": 30})
            .env_runners(num_env_runners=0, env_runner_cls=runner_cls, explore=False)
            .training(train_batch_size_per_learner=100, minibatch_size=50, gamma=gamma)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[16], head_fcnet_hiddens=[]))
            .multi_agent(policies=["agent_0", "agent_1"], policy_mapping_fn=agent_to_module)
            .debugging(seed=0)
        )
        config.validate()
        return config

    reference = MultiAgentEnvRunner(config=ppo(MultiAgentEnvRunner))
    learner = ppo(MultiAgentEnvRunner).build_learner(spaces=reference.get_spaces())
    runner = ExactTeamEnvRunner(config=ppo(ExactTeamEnvRunner))
    runner.module.set_state(reference.module.get_state())
    shipped = connector_batch(learner, _sample_twice(reference, False))
    batch = connector_batch(learner, _sample_twice(runner, False))
    for module_id, columns in shipped.items():
        got = {column: _numpy(values) for column, values in batch[module_id].items()}
        want = {column: _numpy(values) for column, values in columns.items()}
        for column in (Columns.OBS, Columns.ACTIONS, Columns.ACTION_LOGP, Columns.REWARDS):
            np.testing.assert_array_equal(got[column], want[column], strict=True)
        np.testing.assert_array_equal(got[Columns.LOSS_MASK], want[Columns.LOSS_MASK])
        # The last step of each episode that its time limit cut: RLlib's runner calls it terminal.
        cuts = np.flatnonzero(want[Columns.TERMINATEDS] & ~got[Columns.TERMINATEDS])
        assert len(cuts) == 4, module_id  # four 30-step episodes end in the 140 steps
        assert not got[Columns.TERMINATEDS].any()
        obs = batch[module_id][Columns.OBS]
        with torch.no_grad():
            values = learner.module[module_id].compute_values({Columns.OBS: obs}).numpy()
        rewards, targets = want[Columns.REWARDS][cuts], "value_targets"
        np.testing.assert_allclose(want[targets][cuts], rewards, rtol=1e-6)  # V(s_T) = 0
        bootstrapped = rewards + gamma * values[cuts + 1]  # the row after: s_T
        np.testing.assert_allclose(got[targets][cuts], bootstrapped, rtol=1e-5, atol=1e-6)
        assert not np.allclose(got[targets][cuts], want[targets][cuts])
        tail = slice(cuts[-1] + 1, None)  # the unfinished chunk: bootstrapped by both
        np.testing.assert_allclose(got[targets][tail], want[targets][tail], rtol=1e-6)
