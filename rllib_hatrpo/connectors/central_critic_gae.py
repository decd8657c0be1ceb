"""GAE on the team reward with the central critic, shared by every agent ([1] §4; [2] §2).

Appended to the learner pipeline after RLlib's default pieces, with
``AddOneTsToEpisodesAndTruncate`` prepended, so that every (agent) episode chunk of length L
occupies L + 1 rows of its module's batch: L real steps, then one bootstrap row with
``loss_mask`` False. The rows of all agents line up per env step because every agent acts at
every step (asserted here), and that alignment is what makes the element-wise
``compound_ratio`` of the sequential update valid.

Writes ``Postprocessing.ADVANTAGES`` (standardised over valid rows) into every actor's batch,
and the critic's batch ``{OBS: global state, VALUE_TARGETS, VF_PREDS (old values), LOSS_MASK}``.
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

from rllib_hatrpo import advantages
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import GLOBAL_STATE_KEY
from rllib_hatrpo.torch.distributed import sum_reduce_fn


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
        state = to_tensor(columns["state"])
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
        batch[SHARED_CRITIC_ID] = {
            Columns.OBS: state,
            Postprocessing.VALUE_TARGETS: targets,
            Columns.VF_PREDS: values,
            Columns.LOSS_MASK: mask,
        }
        return batch


def _team_columns(episodes) -> dict[str, np.ndarray]:
    """Stacks per env step (L + 1 rows per chunk): global state, team reward, flags, mask."""
    state, rewards, terminateds, segment_ends, loss_mask = [], [], [], [], []
    for episode in episodes:
        agent_eps = list(episode.agent_episodes.values())
        lengths = {len(e) for e in agent_eps}
        if len(lengths) != 1:
            raise RuntimeError(
                f"Agents of episode {episode.id_} have different lengths {sorted(lengths)}: "
                "HATRPO needs every agent to act at every step."
            )
        ref = agent_eps[0]
        n = len(ref)  # L + 1 after AddOneTsToEpisodesAndTruncate
        team = np.asarray(ref.get_rewards(), dtype=np.float64)
        for other in agent_eps[1:]:
            if not np.allclose(np.asarray(other.get_rewards()), team):
                raise RuntimeError(
                    "Agents received different rewards; HATRPO trains on one team reward. "
                    "Use rllib_hatrpo.envs.PettingZooEnv(team_reward='mean'|'sum')."
                )
        infos = ref.get_infos()[:n]
        try:
            state.append(np.stack([info[GLOBAL_STATE_KEY] for info in infos]))
        except KeyError as err:
            raise RuntimeError(
                f"Episode infos lack {GLOBAL_STATE_KEY!r}: wrap the env with "
                "rllib_hatrpo.envs.PettingZooEnv (or put the global state into every info)."
            ) from err
        rewards.append(team)
        flags = np.zeros(n, dtype=bool)
        flags[n - 2] = ref.is_terminated
        terminateds.append(flags)
        ends = np.zeros(n, dtype=bool)
        ends[n - 2 :] = True
        segment_ends.append(ends)
        valid = np.ones(n, dtype=bool)
        valid[-1] = False
        loss_mask.append(valid)
    return {
        "state": np.concatenate(state).astype(np.float32),
        "rewards": np.concatenate(rewards),
        "terminateds": np.concatenate(terminateds),
        "segment_ends": np.concatenate(segment_ends),
        "loss_mask": np.concatenate(loss_mask),
    }
