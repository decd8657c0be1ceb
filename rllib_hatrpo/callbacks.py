"""Team-return metric: the return of the team per episode, not RLlib's sum over agents.

The env wrappers give every agent the same team reward, so RLlib's ``episode_return_mean``
is n × the team return (it sums over agents). This callback logs the team return itself as
``result["env_runners"]["team_episode_return_mean"]``.
"""

from __future__ import annotations

import math

from ray.rllib.callbacks.callbacks import RLlibCallback

from rllib_hatrpo.metrics import TEAM_EPISODE_RETURN_MEAN


class TeamReturnCallback(RLlibCallback):
    """Logs the team return of every finished episode (all its chunks)."""

    def on_episode_end(
        self, *, episode, prev_episode_chunks=None, env_runner=None, metrics_logger=None, **kwargs
    ) -> None:
        if metrics_logger is None:
            return
        agent = next(iter(episode.agent_episodes))
        chunks = [*(prev_episode_chunks or []), episode]
        team_return = sum(
            c.agent_episodes[agent].get_return() for c in chunks if agent in c.agent_episodes
        )
        config = getattr(env_runner, "config", None)
        window = 100
        if config is not None:
            window = max(
                1,
                math.ceil(
                    config.metrics_num_episodes_for_smoothing / (config.num_env_runners or 1)
                ),
            )
        metrics_logger.log_value(TEAM_EPISODE_RETURN_MEAN, team_return, window=window)
