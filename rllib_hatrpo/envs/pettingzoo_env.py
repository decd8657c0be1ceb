"""`PettingZooEnv`: RLlib `MultiAgentEnv` wrapper for any PettingZoo `ParallelEnv`, for HATRPO.

Why not RLlib's `ParallelPettingZooEnv` (`ray/rllib/env/wrappers/pettingzoo_env.py`)? It builds
its agent list from a `set` (the order follows string hashing and differs between processes),
passes float64 observations through (RLlib casts them silently at tensor conversion), never
updates `agents`, and its `render()` passes an argument PettingZoo rejects. HATRPO also needs a
global state for its team critic and a team reward. This wrapper provides:

- **Fixed agent order**: `possible_agents` (and `agents`, which stays the full list) is the
  env's `possible_agents`; every returned dict is built from it, never from the env's `agents`
  (MaMuJoCo empties those when an episode ends).
- **float32 vectors, images as images**: `Box` observation spaces are cast to float32 (bounds
  cast, ±inf kept) and flattened to 1-D; observations are float32 arrays. A `Box` of rank 3
  (height, width, channels) is an image and keeps its shape, and uint8 images stay uint8
  (`rllib_hatrpo.envs.observations`). `Box` action spaces become float32; `Discrete` and
  `MultiDiscrete` stay as they are.
- **Global state**: `state_space` (a float32 1-D `Box`, or an image `Box`) and
  `info[aid][GLOBAL_STATE_KEY]` at reset and at every step (see `global_state` in
  `PettingZooEnv.__init__` for the fallback). An image state is one array per step that all
  agents' infos share (n copies of an image would cost n times the memory): read-only.
- **Team reward**: every agent receives the same reward, the mean or the sum of the env's
  per-agent rewards; each agent's own reward is kept in `info[aid]["agent_reward"]`.
- **Everyone acts at every step**: HATRPO's element-wise `compound_ratio` needs the agents' rows
  aligned, so an env in which some agents leave while others continue raises `RuntimeError`,
  unless `dead_agents="black_death"` keeps them in the episode (`rllib_hatrpo.envs.dead_agents`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.annotations import override

from rllib_hatrpo.envs import ENV_TERMINATED_KEY, GLOBAL_STATE_KEY, observations
from rllib_hatrpo.envs.dead_agents import DEAD_AGENTS_MODES, BlackDeath

if TYPE_CHECKING:
    from pettingzoo import ParallelEnv

TeamReward = Literal["mean", "sum"]
GlobalState = Literal["auto", "state", "concat_obs"]

TEAM_REWARD_MODES: tuple[str, ...] = ("mean", "sum")
GLOBAL_STATE_MODES: tuple[str, ...] = ("auto", "state", "concat_obs")
AGENT_REWARD_KEY = "agent_reward"
"""Info key holding the env's own (per-agent) reward of the step, as a Python float."""
_AGENTS_LEAVING = (
    "Agents leaving mid-episode are not supported: HATRPO needs every agent to act at every "
    "step (aligned rows for the sequential update). To run such an env, keep finished agents "
    "in the episode with a zero observation, masked out of their own update: "
    "PettingZooEnv(env, dead_agents='black_death')."
)


class PettingZooEnv(MultiAgentEnv):
    """Cooperative multi-agent env around a PettingZoo `ParallelEnv` (fixed order, float32, state).

    Reward: HATRPO is cooperative, so every agent receives the same team reward
    r_team = mean (or sum) of the env's per-agent rewards at that step. RLlib's
    `env_runners/episode_return_mean` sums the returns of all agents
    (`ray/rllib/env/multi_agent_episode.py`), so with n agents it reports n × the team return;
    the package's callbacks log the team return separately.

    Episode end: per-agent `terminateds`/`truncateds` hold the team's flags (identical for every
    agent): the episode terminates if any agent terminated and truncates if all were truncated,
    once every agent is done; `"__all__"` carries the same values, and every agent's info
    carries `ENV_TERMINATED_KEY` (the team's `terminated`), which the learner reads to tell a
    time limit from a terminal state.

    Attributes:
        env: The wrapped PettingZoo `ParallelEnv`.
        possible_agents: The env's `possible_agents`, in its order.
        agents: Same list as `possible_agents` (all agents act at every step).
        observation_spaces: Agent ID -> float32 1-D `Box`, or an image `Box` (H, W, C), uint8
            or float32.
        action_spaces: Agent ID -> `Box` (float32), `Discrete` or `MultiDiscrete`.
        state_space: `Box` of the global state: float32 1-D, or an image (H, W, C).
        global_state: The resolved global-state source, "state" or "concat_obs".
        team_reward: "mean" or "sum".
        dead_agents: "error" or "black_death" (agents that finish while others go on).
    """

    def __init__(
        self,
        env: ParallelEnv,
        *,
        team_reward: TeamReward = "mean",
        global_state: GlobalState = "auto",
        dead_agents: Literal["error", "black_death"] = "error",
    ) -> None:
        """Wraps `env`; may reset it once to probe `env.state()`.

        Args:
            env: A PettingZoo `ParallelEnv` whose observation spaces are all `Box`.
            team_reward: "mean" or "sum" of the per-agent rewards, given to every agent.
            global_state: Source of the critic's global state.
                "auto": `env.state()` if the env implements it (PettingZoo's base class raises
                `NotImplementedError`, which is detected by one probe reset here); its space is
                `env.state_space` if present, else a `Box(-inf, inf)` shaped like `state()`.
                Otherwise the fallback: the concatenation of all agents' flattened float32
                observations in `possible_agents` order (its bounds are the observation
                spaces' bounds), i.e. the critic sees the joint observation, which
                is a state only if the agents jointly observe everything relevant. Image
                observations of one height and width are stacked along the channel axis
                instead (uint8 if all are), so the state goes through the same SuperSuit
                preprocessing as the observations.
                "state": always `env.state()`; ValueError if the env does not implement it.
                With "auto" or "state", a `state()` that raises at a terminated step (as
                multiwalker's does) gives zeros there, a placeholder the learner never reads;
                one that raises anywhere else is a `RuntimeError` from `step()`/`reset()`.
                "concat_obs": always the fallback.
            dead_agents: Agents that finish while others go on. "error": a `RuntimeError`.
                "black_death": they stay in every dict with a zero observation, their actions
                are dropped, and `info[aid][AGENT_ACTIVE_KEY]` is False from then on (see
                `rllib_hatrpo.envs.dead_agents`).

        Raises:
            ValueError: Unknown `team_reward`/`global_state`/`dead_agents`, no agents, a non-`Box`
                observation space, an unsupported action space, `global_state="state"` on an
                env without `state()`, or a `state()` that does not match `env.state_space`.
        """
        for name, value, modes in [
            ("team_reward", team_reward, TEAM_REWARD_MODES),
            ("global_state", global_state, GLOBAL_STATE_MODES),
            ("dead_agents", dead_agents, DEAD_AGENTS_MODES),
        ]:
            if value not in modes:
                raise ValueError(f"{name} must be one of {modes}, got {value!r}.")
        super().__init__()
        self.env = env
        self.team_reward = team_reward
        self.render_mode = getattr(env, "render_mode", None)
        self.possible_agents = list(env.possible_agents)
        if not self.possible_agents:
            raise ValueError(f"{type(env).__name__} has no possible_agents.")
        self.agents = list(self.possible_agents)

        self.observation_spaces = {
            aid: observations.observation_space(aid, env.observation_space(aid))
            for aid in self.possible_agents
        }
        self.action_spaces = {
            aid: observations.convert_action_space(aid, env.action_space(aid))
            for aid in self.possible_agents
        }
        # Old-API-stack style `Dict` spaces, as RLlib's own wrapper sets them. Note that
        # `gym.spaces.Dict` sorts its keys; `possible_agents` is the order that counts.
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        self._episode_step = 0  # Steps since the last reset, for error messages.
        self.global_state, self.state_space = self._resolve_global_state(global_state)
        self.dead_agents = dead_agents
        self._black_death = None
        if dead_agents == "black_death":
            shapes = {aid: s.shape for aid, s in self.observation_spaces.items()}
            self._black_death = BlackDeath(self.possible_agents, shapes)

    @override(MultiAgentEnv)
    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """Resets the env; returns the observations and the infos (with the state) per agent."""
        super().reset(seed=seed, options=options)
        obs, infos = self.env.reset(seed=seed, options=options)
        self._episode_step = 0
        obs = self._convert_observations(obs, "reset()")
        infos = self._build_infos(infos, self._get_global_state(obs), None)
        return obs, infos if self._black_death is None else self._black_death.reset(infos)

    @override(MultiAgentEnv)
    def step(self, action_dict: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Steps all agents at once; returns dicts keyed by every agent (plus `"__all__"`).

        Args:
            action_dict: One action per agent of `possible_agents`.

        Returns:
            observations, rewards (the team reward for every agent), terminateds, truncateds,
            infos (each with `GLOBAL_STATE_KEY` and `"agent_reward"`).

        Raises:
            ValueError: An agent has no action.
            RuntimeError: The env ended the episode for some agents but not for others,
                returned no observation for an agent, or its `state()` raised at a step that
                did not terminate the episode (see `_get_global_state`).
        """
        if self._black_death is not None:
            return self._black_death.step(self, action_dict)
        missing = [aid for aid in self.possible_agents if aid not in action_dict]
        if missing:
            raise ValueError(
                f"No action for agent(s) {missing}: HATRPO needs every agent to act at every step."
            )
        obs, rewards, terminateds, truncateds, infos = self.env.step(
            {aid: action_dict[aid] for aid in self.possible_agents}
        )
        self._episode_step += 1
        terminated, truncated = self._team_done(obs, terminateds, truncateds)
        obs = self._convert_observations(obs, "step()")

        agent_rewards = {aid: float(rewards[aid]) for aid in self.possible_agents}
        team = self._team_reward(list(agent_rewards.values()))

        state = self._get_global_state(obs, terminated)
        infos = self._build_infos(infos, state, agent_rewards, terminated)
        return self._team_step(obs, team, terminated, truncated, infos)

    def _team_step(
        self, obs: dict, team: float, terminated: bool, truncated: bool, infos: dict
    ) -> tuple[dict, dict, dict, dict, dict]:
        """``step()``'s five dicts: every agent gets the team reward and the team's flags."""
        flags = [{aid: flag for aid in self.possible_agents} for flag in (terminated, truncated)]
        flags[0]["__all__"], flags[1]["__all__"] = terminated, truncated
        return obs, {aid: team for aid in self.possible_agents}, flags[0], flags[1], infos

    @override(MultiAgentEnv)
    def render(self) -> Any:
        """Returns `env.render()` (the env's `render_mode` decides what it does)."""
        return self.env.render()

    def close(self) -> None:
        """Closes the wrapped env."""
        self.env.close()

    def _team_reward(self, rewards: list[float]) -> float:
        if self.team_reward == "sum":
            return sum(rewards)
        if all(r == rewards[0] for r in rewards):
            return rewards[0]  # Exact for MaMuJoCo's shared reward (a float mean is not).
        return sum(rewards) / len(rewards)

    def _team_done(
        self, obs: Mapping, terminateds: Mapping, truncateds: Mapping
    ) -> tuple[bool, bool]:
        """Checks that all agents continue or all stop; returns the team (terminated, truncated)."""
        absent = [aid for aid in self.possible_agents if aid not in obs]
        if absent:
            raise RuntimeError(
                f"{type(self.env).__name__}.step() returned no observation for agent(s) "
                f"{absent}. {_AGENTS_LEAVING}"
            )
        term = [bool(terminateds.get(aid, False)) for aid in self.possible_agents]
        trunc = [bool(truncateds.get(aid, False)) for aid in self.possible_agents]
        done = [te or tr for te, tr in zip(term, trunc, strict=True)]
        if not any(done):
            return False, False
        if not all(done):
            finished = [aid for aid, d in zip(self.possible_agents, done, strict=True) if d]
            raise RuntimeError(
                f"{type(self.env).__name__} ended the episode for agent(s) {finished} while "
                f"others continue. {_AGENTS_LEAVING}"
            )
        return any(term), all(trunc)

    def _convert_observations(self, obs: Mapping, where: str) -> dict[str, np.ndarray]:
        try:
            spaces = self.observation_spaces
            return {aid: observations.convert(obs[aid], spaces[aid]) for aid in spaces}
        except KeyError as e:
            raise RuntimeError(
                f"{type(self.env).__name__}.{where} returned no observation for agent {e}; "
                f"expected every agent of {self.possible_agents}."
            ) from None

    def _get_global_state(
        self, obs: Mapping[str, np.ndarray], terminated: bool = False
    ) -> np.ndarray:
        """Returns the step's global state: `env.state()` or the concatenated observations.

        Some envs cannot compute `state()` once the episode is over (PettingZoo's multiwalker
        frees its bodies on termination: `AttributeError`). A terminated episode never reads
        V(s_T) (GAE bootstraps with 0 there, via `torch.where`, and the bootstrap row is not a
        valid row for the critic's loss or its input statistics), so at a terminated step a
        failing `state()` gives a placeholder: zeros shaped like `state_space`. Anywhere else
        the state is needed (a truncation bootstraps with V(s_T)), so the failure is an error.

        Raises:
            RuntimeError: `state()` raised at reset or at a step that did not terminate.
        """
        if self.global_state != "state":
            return observations.concat([obs[aid] for aid in self.possible_agents], self.state_space)
        try:
            return observations.convert(self.env.state(), self.state_space)
        except Exception as e:
            if terminated:
                return np.zeros(self.state_space.shape, dtype=self.state_space.dtype)
            where = (
                f"at step {self._episode_step} of the episode, which did not terminate "
                "(a truncation bootstraps with V of this state)"
                if self._episode_step
                else "at reset()"
            )
            raise RuntimeError(
                f"{type(self.env).__name__}.state() raised {type(e).__name__} {where}: {e}. "
                "Use PettingZooEnv(env, global_state='concat_obs') to give the critic the "
                "concatenated observations instead."
            ) from e

    def _build_infos(
        self,
        infos: Mapping | None,
        state: np.ndarray,
        agent_rewards: Mapping[str, float] | None,
        terminated: bool | None = None,
    ) -> dict[str, dict]:
        infos = infos or {}
        out = {}
        shared = observations.is_image(self.state_space)
        if shared:
            state.flags.writeable = False
        for aid in self.possible_agents:
            info = dict(infos.get(aid) or {})  # A copy: the env's own dicts stay untouched.
            info[GLOBAL_STATE_KEY] = state if shared else state.copy()
            if agent_rewards is not None:
                info[AGENT_REWARD_KEY] = agent_rewards[aid]
            if terminated is not None:
                info[ENV_TERMINATED_KEY] = terminated
            out[aid] = info
        return out

    def _resolve_global_state(self, mode: str) -> tuple[str, gym.spaces.Box]:
        """Returns the global-state source ("state" or "concat_obs") and its space."""
        if mode != "concat_obs":
            probe = self._probe_state()
            if probe is not None:
                space = getattr(self.env, "state_space", None)
                return "state", observations.state_space_of(space, probe, type(self.env).__name__)
            if mode == "state":
                raise ValueError(
                    f"global_state='state', but {type(self.env).__name__} does not implement "
                    "state(); use global_state='concat_obs' (or 'auto') instead."
                )
        spaces = [self.observation_spaces[aid] for aid in self.possible_agents]
        return "concat_obs", observations.concat_space(spaces)

    def _probe_state(self) -> np.ndarray | None:
        """Resets the env and calls `state()`; None if the env does not implement it."""
        state_fn = getattr(self.env, "state", None)
        if not callable(state_fn):
            return None
        # Wrappers such as PettingZoo's aec_to_parallel override state() and forward it, so
        # only a call tells whether the env underneath implements it.
        self.env.reset()
        try:
            state = state_fn()
        except NotImplementedError:
            return None
        return np.asarray(state)
