"""GAE on the team reward with the central critic, shared by every agent ([1] §4; [2] §2).

Appended to the learner pipeline after RLlib's default pieces, with
``AddOneTsToEpisodesAndTruncate`` prepended, so that every (agent) episode chunk of length L
occupies L + 1 rows of its module's batch: L real steps, then one bootstrap row with
``loss_mask`` False. The rows of all agents line up per env step because every agent acts at
every step (asserted here), and that alignment is what makes the element-wise
``compound_ratio`` of the sequential update valid.

Writes ``Postprocessing.ADVANTAGES`` (standardised over valid rows) into every actor's batch,
``AGENT_ACTIVE`` (bool per row: ``info[AGENT_ACTIVE_KEY]`` of the row's observation, True
where absent, False on bootstrap rows) into the batch of every actor whose infos carry that
key (an env with ``PettingZooEnv(dead_agents="black_death")``; agents that left stay aligned,
with inactive rows), and the critic's batch
``{OBS: global state, VALUE_TARGETS, VF_PREDS (old values), LOSS_MASK}``.
With several learners the standardisation uses the mean and std of the union batch: the
(sum, sum of squares, count) of every learner's shard are all-reduced.

References:
    [1] Kuba et al., Trust Region Policy Optimisation in Multi-Agent RL, ICLR 2022.
    [2] Schulman et al., High-Dimensional Continuous Control Using GAE, arXiv:1506.02438.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing

from rllib_hatrpo.core import advantages
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import AGENT_ACTIVE_KEY, ENV_TERMINATED_KEY, GLOBAL_STATE_KEY
from rllib_hatrpo.envs.pettingzoo_env import AGENT_REWARD_KEY
from rllib_hatrpo.torch.distributed import sum_reduce_fn

AGENT_ACTIVE = "agent_active"
"""Actor batch column: True on the rows where the agent acts (see ``AGENT_ACTIVE_KEY``)."""


class CentralCriticGAE(ConnectorV2):
    """Computes V(s) once per env step and GAE(γ, λ) on the team reward."""

    def __init__(
        self,
        input_observation_space=None,
        input_action_space=None,
        *,
        gamma: float,
        lambda_: float,
        **kwargs,
    ):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.gamma = gamma
        self.lambda_ = lambda_

    def __call__(
        self,
        *,
        rl_module,
        batch: dict[str, Any],
        episodes,
        explore=None,
        shared_data=None,
        **kwargs,
    ) -> Any:
        actor_ids = [mid for mid in batch if mid != SHARED_CRITIC_ID]
        columns = _team_columns(episodes)
        active = _active_columns(episodes)
        critic = rl_module[SHARED_CRITIC_ID]
        critic = critic.unwrapped() if hasattr(critic, "unwrapped") else critic
        device = next(critic.parameters()).device
        to_tensor = lambda x, dtype=torch.float32: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731

        n_rows = len(columns["rewards"])
        for mid in actor_ids:
            rows = len(batch[mid][Columns.LOSS_MASK])
            if rows != n_rows:
                raise RuntimeError(
                    f"Module {mid!r} has {rows} rows but the episodes have {n_rows} env steps "
                    "(with bootstrap rows): HATRPO needs one agent per module and every agent "
                    "acting at every step."
                )
        state = torch.as_tensor(columns["state"], device=device)  # float32, or uint8 images
        mask = to_tensor(columns["loss_mask"], torch.bool)
        with torch.no_grad():
            values = critic.compute_values({Columns.OBS: state})
        next_values = torch.cat([values[1:], values.new_zeros(1)])
        adv, targets = advantages.generalized_advantage_estimate(
            to_tensor(columns["rewards"]),
            values,
            next_values,
            to_tensor(columns["terminateds"], torch.bool),
            to_tensor(columns["segment_ends"], torch.bool),
            self.gamma,
            self.lambda_,
        )
        adv = advantages.masked_standardize(adv, mask, reduce_fn=sum_reduce_fn())
        adv = torch.where(mask, adv, torch.zeros_like(adv))
        for mid in actor_ids:
            if not torch.equal(torch.as_tensor(batch[mid][Columns.LOSS_MASK], device=device), mask):
                raise RuntimeError(f"Rows of module {mid!r} are not aligned with the env steps.")
            batch[mid][Postprocessing.ADVANTAGES] = adv
            if mid in active:
                batch[mid][AGENT_ACTIVE] = to_tensor(active[mid], torch.bool) & mask
        batch[SHARED_CRITIC_ID] = {
            Columns.OBS: state,
            Postprocessing.VALUE_TARGETS: targets,
            Columns.VF_PREDS: values,
            Columns.LOSS_MASK: mask,
        }
        return batch


class NonFiniteEnvDataError(ValueError):
    """The env produced a NaN or infinite reward, observation or global state."""


def episode_terminated(agent_episode) -> bool:
    """Whether an (agent) episode chunk ended in a terminal state, i.e. must not bootstrap.

    RLlib's ``MultiAgentEpisode`` also marks an episode whose agents were all truncated as
    terminated (and sets both flags on every agent), so an agent episode with both flags is
    resolved by ``info[ENV_TERMINATED_KEY]`` of its final step, which the package's envs write;
    an env that reports termination and truncation at once counts as terminated. A chunk cut
    at the end of a rollout is not terminated (``AddOneTsToEpisodesAndTruncate`` truncates it).

    Raises:
        RuntimeError: The flags are ambiguous and the final info lacks the key.
    """
    if not agent_episode.is_terminated:
        return False
    if not agent_episode.is_truncated:
        return True
    info = agent_episode.get_infos(-1)
    if ENV_TERMINATED_KEY not in info:
        raise RuntimeError(
            f"Episode {agent_episode.multi_agent_episode_id or agent_episode.id_} ended with "
            "every agent truncated or terminated, and its final infos lack "
            f"{ENV_TERMINATED_KEY!r}, so a time limit cannot be told from a terminal state. "
            "Wrap the env with rllib_hatrpo.envs.PettingZooEnv, or put "
            f"info[agent][{ENV_TERMINATED_KEY!r}] = terminated into every step's infos."
        )
    return bool(info[ENV_TERMINATED_KEY])


def _first_non_finite(values: np.ndarray) -> int | None:
    """Index of the first row with a NaN or infinite entry, or None."""
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    return None if finite.all() else int(np.flatnonzero(~finite)[0])


def _non_finite_error(field: str, value: Any, agent: str, episode, step: int) -> Exception:
    return NonFiniteEnvDataError(
        f"Non-finite {field} {value!r} from the env for agent {agent!r} in episode "
        f"{episode.id_} at env step {episode.env_t_started + step} (counted from the episode's "
        "reset). HATRPO stops here instead of training on it (one such value would poison the "
        "critic's value normalisation for the rest of the run): fix the env, or clip or "
        "replace the values in an env wrapper (e.g. with numpy.nan_to_num)."
    )


def _check_env_data(episode, team: np.ndarray) -> None:
    """Raises ``NonFiniteEnvDataError`` for a non-finite team reward or observation.

    A team reward r_t follows the action of step t and arrives with step t + 1; the agent
    named is the one whose own reward (``info["agent_reward"]``) was not finite, if known.
    """
    row = _first_non_finite(team)
    if row is not None:
        agent = next(iter(episode.agent_episodes))
        for aid, agent_ep in episode.agent_episodes.items():
            own = agent_ep.get_infos(row + 1).get(AGENT_REWARD_KEY, 0.0)
            if not np.isfinite(own):
                agent = aid
                break
        raise _non_finite_error("reward", team[row], agent, episode, row + 1)
    for aid, agent_ep in episode.agent_episodes.items():
        obs = np.asarray(agent_ep.get_observations(), dtype=np.float64)
        row = _first_non_finite(obs)
        if row is not None:
            raise _non_finite_error("observation", obs[row], aid, episode, row)


def _active_columns(episodes) -> dict[str, np.ndarray]:
    """Module ID -> ``info[AGENT_ACTIVE_KEY]`` per row (L + 1 per chunk, the bootstrap row
    False), for the modules whose infos carry the key anywhere; True where a row lacks it."""
    flags: dict[str, list[np.ndarray]] = {}
    has_key: set[str] = set()
    for episode in episodes:
        for agent_ep in episode.agent_episodes.values():
            n = len(agent_ep)
            infos = agent_ep.get_infos()[:n]
            mid = agent_ep.module_id
            if any(AGENT_ACTIVE_KEY in info for info in infos):
                has_key.add(mid)
            chunk = np.array([bool(info.get(AGENT_ACTIVE_KEY, True)) for info in infos])
            chunk[-1] = False
            flags.setdefault(mid, []).append(chunk)
    return {mid: np.concatenate(flags[mid]) for mid in has_key}


def _state_array(state: np.ndarray) -> np.ndarray:
    """The critic's input as the batch keeps it: uint8 images stay uint8 (a quarter of the
    memory; the critic's image network scales them to [0, 1]), anything else float32."""
    return state if state.dtype == np.uint8 else state.astype(np.float32)


def _team_columns(episodes) -> dict[str, np.ndarray]:
    """Stacks per env step (L + 1 rows per chunk): global state, team reward, flags, mask."""
    state, rewards, terminateds, segment_ends, loss_mask = [], [], [], [], []
    for episode in episodes:
        agent_eps = dict(episode.agent_episodes)
        lengths = {len(e) for e in agent_eps.values()}
        if len(lengths) != 1:
            raise RuntimeError(
                f"Agents of episode {episode.id_} have different lengths {sorted(lengths)}: "
                "HATRPO needs every agent to act at every step."
            )
        ref = next(iter(agent_eps.values()))
        n = len(ref)  # L + 1 after AddOneTsToEpisodesAndTruncate
        team = np.asarray(ref.get_rewards(), dtype=np.float64)
        _check_env_data(episode, team)
        for other in agent_eps.values():
            if not np.allclose(np.asarray(other.get_rewards()), team):
                raise RuntimeError(
                    "Agents received different rewards; HATRPO trains on one team reward. "
                    "Use rllib_hatrpo.envs.PettingZooEnv(team_reward='mean'|'sum')."
                )
        infos = ref.get_infos()[:n]
        try:
            chunk_state = np.stack([info[GLOBAL_STATE_KEY] for info in infos])
        except KeyError as err:
            raise RuntimeError(
                f"Episode infos lack {GLOBAL_STATE_KEY!r}: wrap the env with "
                "rllib_hatrpo.envs.PettingZooEnv (or put the global state into every info)."
            ) from err
        row = _first_non_finite(chunk_state)
        if row is not None:
            raise _non_finite_error("global state", chunk_state[row], ref.agent_id, episode, row)
        state.append(chunk_state)
        rewards.append(team)
        flags = np.zeros(n, dtype=bool)
        flags[n - 2] = episode_terminated(ref)
        terminateds.append(flags)
        ends = np.zeros(n, dtype=bool)
        ends[n - 2 :] = True
        segment_ends.append(ends)
        valid = np.ones(n, dtype=bool)
        valid[-1] = False
        loss_mask.append(valid)
    return {
        "state": _state_array(np.concatenate(state)),
        "rewards": np.concatenate(rewards),
        "terminateds": np.concatenate(terminateds),
        "segment_ends": np.concatenate(segment_ends),
        "loss_mask": np.concatenate(loss_mask),
    }
