"""Lockstep rollouts of N team envs, stored as arrays, turned into `MultiAgentEpisode`s once.

:class:`LockstepRollout` records one `sample()` of the vectorised EnvRunner: per agent, the
observations ``[K + 1, N, ...]`` (row k is the input of step k), the actions, log-probabilities
and action-distribution inputs ``[K, N, ...]``, the rewards, the flags and the infos. An env
whose episode ended at step k is reset before step k + 1, so row k + 1 holds the new episode's
first observation and the ended episode's final observation is kept aside. :meth:`episodes`
then cuts each env's column into episode chunks and builds the `MultiAgentEpisode`s that RLlib's
own runner would have built step by step: the same observations, actions, rewards, infos, extra
model outputs and flags, the same episode ID across the chunks of one episode.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO

from rllib_hatrpo.packed_infos import PackedInfos


@dataclasses.dataclass
class EpisodeCursor:
    """Where one env's ongoing episode stands between two `sample()` calls.

    Attributes:
        id_: The episode's ID (RLlib's chunks of one episode share it).
        agent_episode_ids: Agent ID -> its `SingleAgentEpisode` ID in this episode.
        env_t: Env steps of the episode before the current chunk.
        start_time: ``time.perf_counter()`` at the episode's reset.
    """

    id_: str
    agent_episode_ids: dict[str, str]
    env_t: int = 0
    start_time: float = dataclasses.field(default_factory=time.perf_counter)

    @classmethod
    def new(cls, agents: list[str]) -> EpisodeCursor:
        return cls(uuid.uuid4().hex, {aid: uuid.uuid4().hex for aid in agents})


@dataclasses.dataclass
class _Chunk:
    """Steps ``start .. end`` (inclusive) of one env; ``end = start - 1`` if it has no step."""

    env: int
    start: int
    end: int
    done: bool


class LockstepRollout:
    """The arrays of one `sample()` of N envs stepped in lockstep (module docstring)."""

    def __init__(
        self,
        agents: list[str],
        obs: Mapping[str, np.ndarray],
        infos: list[dict[str, dict]],
        cursors: list[EpisodeCursor],
    ) -> None:
        """Starts a rollout from each env's current observation and infos.

        Args:
            agents: The agents, in the env's order.
            obs: Agent ID -> current observations ``[N, ...]``.
            infos: Each env's current infos.
            cursors: Each env's ongoing episode.
        """
        self.agents = agents
        self.num_envs = len(infos)
        self._obs = {aid: [np.asarray(obs[aid])] for aid in agents}
        self._infos: list[list[dict[str, dict]]] = [list(infos)]
        self._actions: dict[str, list[np.ndarray]] = {aid: [] for aid in agents}
        self._extra: dict[str, dict[str, list[np.ndarray]]] = {aid: {} for aid in agents}
        self._rewards: dict[str, list[np.ndarray]] = {aid: [] for aid in agents}
        self._done: list[np.ndarray] = []
        self._terminated: list[np.ndarray] = []
        self._final: dict[tuple[int, int], tuple[dict[str, np.ndarray], dict[str, dict]]] = {}
        self._starts: list[list[int]] = [[0] for _ in range(self.num_envs)]
        self._cursors = {(i, 0): cursor for i, cursor in enumerate(cursors)}

    @property
    def num_steps(self) -> int:
        """Lockstep steps recorded so far (K)."""
        return len(self._done)

    def add_step(
        self,
        actions: Mapping[str, np.ndarray],
        extra_model_outputs: Mapping[str, Mapping[str, np.ndarray]],
        step: Any,
    ) -> np.ndarray:
        """Records one step of every env (`TeamVectorStep` ``step``); returns the done envs.

        The observations of ``step`` become the next row; :meth:`add_resets` then overwrites
        the rows of the envs that were reset, keeping their final observations aside.
        """
        k = self.num_steps
        for aid in self.agents:
            self._actions[aid].append(np.asarray(actions[aid]))
            for column, value in extra_model_outputs[aid].items():
                self._extra[aid].setdefault(column, []).append(np.asarray(value))
            self._rewards[aid].append(np.asarray(step.rewards[aid], dtype=np.float64))
            self._obs[aid].append(np.array(step.obs[aid]))
        self._infos.append(list(step.infos))
        terminated = np.asarray(step.terminated, dtype=bool)
        done = terminated | np.asarray(step.truncated, dtype=bool)
        self._terminated.append(terminated)
        self._done.append(done)
        for i in np.flatnonzero(done):
            self._final[(k, int(i))] = (
                {aid: self._obs[aid][-1][i].copy() for aid in self.agents},
                self._infos[-1][i],
            )
        return np.flatnonzero(done)

    def add_resets(
        self,
        indices: np.ndarray,
        obs: Mapping[str, np.ndarray],
        infos: list[dict[str, dict]],
        cursors: list[EpisodeCursor],
    ) -> None:
        """Puts the reset observations of the envs ``indices`` into the last row."""
        k = self.num_steps
        for row, i in enumerate(indices):
            for aid in self.agents:
                self._obs[aid][-1][i] = obs[aid][row]
            self._infos[-1][i] = infos[row]
            self._starts[i].append(k)
            self._cursors[(int(i), k)] = cursors[row]

    def current(self) -> tuple[dict[str, np.ndarray], list[dict[str, dict]]]:
        """The last row: each env's current observations and infos."""
        return {aid: self._obs[aid][-1] for aid in self.agents}, self._infos[-1]

    def episodes(
        self,
        make_episode: Callable[..., MultiAgentEpisode],
        weights_seq_no: int,
        as_numpy: bool = False,
    ) -> tuple[list[MultiAgentEpisode], list[MultiAgentEpisode], list[EpisodeCursor]]:
        """Builds the episode chunks of this rollout.

        Args:
            make_episode: ``MultiAgentEpisode``'s constructor with the spaces and the mapping
                function bound.
            weights_seq_no: Stored with every step, as RLlib's runner does.
            as_numpy: Build each agent's columns as numpy arrays (what RLlib's
                ``episode.to_numpy()`` makes of its step-by-step lists: the same dtypes and
                shapes, each chunk's own copy), instead of lists.

        Returns:
            The finished episodes, the ongoing chunks (empty chunks left out), and each env's
            cursor for the next `sample()` (its ``env_t`` advanced past this rollout).
        """
        obs = {aid: np.stack(rows) for aid, rows in self._obs.items()}
        actions = {aid: np.stack(rows) for aid, rows in self._actions.items()}
        rewards = {aid: np.stack(rows) for aid, rows in self._rewards.items()}
        extra = {
            aid: {col: np.stack(rows) for col, rows in cols.items()}
            for aid, cols in self._extra.items()
        }
        terminated = np.stack(self._terminated) if self._terminated else None
        done, ongoing, cursors = [], [], []
        for chunk in self._chunks():
            cursor = self._cursors[(chunk.env, chunk.start)]
            length = chunk.end - chunk.start + 1
            if length == 0:  # Reset at the very end: nothing to return yet.
                cursors.append(cursor)
                continue
            i = chunk.env
            last_obs, last_infos = (
                self._final[(chunk.end, i)]
                if chunk.done
                else (
                    {aid: obs[aid][chunk.end + 1, i] for aid in self.agents},
                    self._infos[chunk.end + 1][i],
                )
            )
            is_terminated = bool(chunk.done and terminated[chunk.end, i])
            is_truncated = bool(chunk.done and not is_terminated)
            episode = make_episode(
                id_=cursor.id_,
                terminateds=is_terminated,
                truncateds=is_truncated,
                env_t_started=cursor.env_t,
                len_lookback_buffer=0,
            )
            episode.env_t = cursor.env_t + length
            steps = slice(chunk.start, chunk.end + 1)
            column = _array_column if as_numpy else _list_column
            for aid in self.agents:
                agent_episode = SingleAgentEpisode(
                    id_=cursor.agent_episode_ids[aid],
                    agent_id=aid,
                    module_id=episode.module_for(aid),
                    multi_agent_episode_id=episode.id_,
                    observations=column(obs[aid][steps, i], last_obs[aid]),
                    observation_space=episode.observation_space.get(aid),
                    infos=PackedInfos(
                        [info[i][aid] for info in self._infos[steps]] + [last_infos[aid]]
                    ),
                    actions=column(actions[aid][steps, i]),
                    action_space=episode.action_space.get(aid),
                    rewards=column(rewards[aid][steps, i], scalars=True),
                    extra_model_outputs={
                        **{col: column(values[steps, i]) for col, values in extra[aid].items()},
                        WEIGHTS_SEQ_NO: column(np.full(length, weights_seq_no)),
                    },
                    terminated=is_terminated,
                    truncated=is_truncated,
                    t_started=cursor.env_t,
                    len_lookback_buffer=0,
                )
                episode.agent_episodes[aid] = agent_episode
                episode.agent_t_started[aid] = cursor.env_t
                env_steps = np.arange(cursor.env_t, cursor.env_t + length + 1)
                episode.env_t_to_agent_t[aid] = InfiniteLookbackBuffer(
                    env_steps if as_numpy else env_steps.tolist()
                )
            episode._start_time = cursor.start_time
            episode._last_step_time = time.perf_counter()
            if chunk.done:
                done.append(episode)
            else:
                ongoing.append(episode)
                cursors.append(dataclasses.replace(cursor, env_t=cursor.env_t + length))
        return done, ongoing, cursors

    def _chunks(self) -> list[_Chunk]:
        """Each env's chunks in step order; the last one of each env is ongoing."""
        chunks = []
        k = self.num_steps
        for i, starts in enumerate(self._starts):
            for start, next_start in zip(starts, [*starts[1:], None], strict=True):
                if next_start is None:
                    chunks.append(_Chunk(i, start, k - 1, done=False))
                else:
                    chunks.append(_Chunk(i, start, next_start - 1, done=True))
        return chunks


def _list_column(rows: np.ndarray, last: Any = None, scalars: bool = False) -> list:
    """One agent's column of a chunk as RLlib's runner builds it step by step: a list of
    rows (Python floats with ``scalars``, as for the rewards), ``last`` appended if given."""
    values = rows.tolist() if scalars else list(rows)
    return values if last is None else [*values, last]


def _array_column(rows: np.ndarray, last: Any = None, scalars: bool = False) -> np.ndarray:
    """The same column as ``episode.to_numpy()`` stacks it from those lists: one new array
    (``np.stack`` of the rows and ``last``: the same dtype promotion; ``scalars`` changes
    nothing, the rewards' float64 array is what their Python floats stack into)."""
    if last is None:
        return rows.copy()
    return np.concatenate([rows, np.asarray(last)[None]])
