"""Agents that leave mid-episode: `PettingZooEnv(env, dead_agents="black_death")`.

HATRPO's compound ratio multiplies the agents' ratios row by row, so every agent needs a row
at every env step. "Black death" keeps an agent that terminated or truncated while others go
on in the episode until the env has no agents left:

- its observation is zeros from the step after it finished on (at the step it finishes, the
  env's own final observation, if the env returns one);
- its actions are dropped: PettingZoo's parallel API takes actions only for the agents still
  in the env;
- every agent, a dead one too, receives the team reward of the agents present in the env's
  rewards, r_team = mean (or sum) of {r_j : j in rewards};
- `info[aid][AGENT_ACTIVE_KEY]` is True while the agent acts on this observation and False
  from the step it finished on, so that the learner masks its rows out of its own update;
- the episode ends when the env has no agents left: terminated if any agent finishing at that
  last step terminated, truncated otherwise (a time limit bootstraps with V of the final
  state), the same rule as for agents that all finish at once.

The global state is the wrapper's (`global_state="concat_obs"` holds the zero observations;
an env `state()` that fails mid-episode once an agent left, as multiwalker's with
`terminate_on_fall=False` does, is the wrapper's usual error, which names "concat_obs").

Unlike SuperSuit's `black_death_v3` (3.11), the end is reported at the env's last step (not
one step later), and a time limit stays a truncation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from rllib_hatrpo.envs import AGENT_ACTIVE_KEY

if TYPE_CHECKING:
    from rllib_hatrpo.envs.pettingzoo_env import PettingZooEnv

DEAD_AGENTS_MODES: tuple[str, ...] = ("error", "black_death")


class BlackDeath:
    """Which agents are still in the env this episode, and one wrapper step with the others.

    Args:
        possible_agents: The wrapper's agent order.
        observation_shapes: Agent ID -> shape of its (float32, 1-D) observation.
    """

    def __init__(self, possible_agents: list[str], observation_shapes: Mapping[str, tuple]):
        self._agents = list(possible_agents)
        self._zeros = {aid: np.zeros(observation_shapes[aid], np.float32) for aid in self._agents}
        self.present = list(self._agents)

    def reset(self, infos: dict[str, dict]) -> dict[str, dict]:
        """Starts an episode with every agent present; marks every info active."""
        self.present = list(self._agents)
        for info in infos.values():
            info[AGENT_ACTIVE_KEY] = True
        return infos

    def step(self, wrapper: PettingZooEnv, action_dict: Mapping[str, Any]) -> tuple:
        """`wrapper.step` with agents leaving: see the module docstring.

        Raises:
            ValueError: An agent still in the env has no action.
            RuntimeError: An agent still in the env that did not finish returned no
                observation.
        """
        env = wrapper.env
        missing = [aid for aid in self.present if aid not in action_dict]
        if missing:
            raise ValueError(f"No action for agent(s) {missing}, which are still in the env.")
        obs, rewards, terminateds, truncateds, infos = env.step(
            {aid: action_dict[aid] for aid in self.present}
        )
        wrapper._episode_step += 1
        finished = [
            aid for aid in self.present if terminateds.get(aid, False) or truncateds.get(aid, False)
        ]
        absent = [aid for aid in self.present if aid not in obs and aid not in finished]
        if absent:
            raise RuntimeError(
                f"{type(env).__name__}.step() returned no observation for agent(s) {absent}, "
                "which did not finish."
            )
        full_obs = {
            aid: obs[aid] if aid in self.present and aid in obs else self._zeros[aid]
            for aid in self._agents
        }
        terminated = any(bool(terminateds.get(aid, False)) for aid in finished)
        truncated = all(bool(truncateds.get(aid, False)) for aid in finished)
        self.present = [aid for aid in self.present if aid not in finished]
        if self.present:
            terminated = truncated = False
        full_obs = wrapper._convert_observations(full_obs, "step()")

        present_rewards = [float(rewards[aid]) for aid in self._agents if aid in rewards]
        team = wrapper._team_reward(present_rewards) if present_rewards else 0.0
        agent_rewards = {aid: float(rewards.get(aid, 0.0)) for aid in self._agents}
        state = wrapper._get_global_state(full_obs, terminated)
        out_infos = wrapper._build_infos(infos, state, agent_rewards, terminated)
        for aid, info in out_infos.items():
            info[AGENT_ACTIVE_KEY] = aid in self.present
        return wrapper._team_step(full_obs, team, terminated, truncated, out_infos)
