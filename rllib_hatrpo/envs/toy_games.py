"""The one-step cooperative games of the HATRPO-W/G paper [2]: a differential game and matrix games.

Both are plain RLlib `MultiAgentEnv`s with the package's env contract (fixed agents "agent_0",
"agent_1"; float32 observations; `state_space`; `info[aid][GLOBAL_STATE_KEY]`; the same team
reward for every agent, also in `info[aid]["agent_reward"]`). An episode is one step: a constant
observation 0, one joint action, the team reward, `terminated=True`. Since there is nothing to
observe, the global state equals the observation.

References:
    [1] Kuba et al., Trust Region Policy Optimisation in Multi-Agent Reinforcement Learning,
        ICLR 2022, arXiv:2109.11251.
    [2] Shek, Shi & Tokekar, Multi-Agent Trust Region Policy Optimisation: A Joint Constraint
        Approach, arXiv:2508.10340.
    [3] Claus & Boutilier, The Dynamics of Reinforcement Learning in Cooperative Multiagent
        Systems, AAAI 1998 (climbing and penalty games).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.annotations import override

from rllib_hatrpo.envs import ENV_TERMINATED_KEY, GLOBAL_STATE_KEY
from rllib_hatrpo.envs._config import merge_config
from rllib_hatrpo.envs.pettingzoo_env import AGENT_REWARD_KEY

AGENTS: tuple[str, str] = ("agent_0", "agent_1")
PLAYED_ACTION_KEY = "played_action"
JOINT_ACTION_KEY = "joint_action"


class Optimum(NamedTuple):
    """A maximiser (a1, a2) of the differential game's reward and its value."""

    a1: float
    a2: float
    value: float


def _gaussian_2d(a1, a2, mu: tuple[float, float], sigma: tuple[float, float]):
    """Normalised 2-D Gaussian density with independent axes, N((a1, a2); μ, σ)."""
    z1 = (a1 - mu[0]) / sigma[0]
    z2 = (a2 - mu[1]) / sigma[1]
    return np.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2.0 * np.pi * sigma[0] * sigma[1])


def differential_game_reward(a1, a2):
    """Reward of the bimodal differential game of [2].

    R(a1, a2) = 10·N((a1, a2); μ=(5, 5), σ=(1, 3)) + 0.1·a1 + 5.3·N((a1, a2); μ=(1, 1), σ=(1, 1)),
    N the normalised 2-D Gaussian density with independent axes. The first mode peaks at
    10/(2π·3) ≈ 0.531, the second at 5.3/(2π) ≈ 0.844; with the 0.1·a1 slope the global maximum
    is ≈ 1.040 near (5.19, 5.00) (`GLOBAL_OPTIMUM`) and a local one ≈ 0.950 near (1.12, 1.00)
    (`LOCAL_OPTIMUM`). On [-10, 10]² the slope also makes the edge a1 = 10 worth ≈ 1.0.

    Args:
        a1: Agent 0's played action (float or array).
        a2: Agent 1's played action, broadcastable with `a1`.

    Returns:
        A Python float for scalar inputs, else an array of the broadcast shape.
    """
    a1 = np.asarray(a1, dtype=np.float64)
    a2 = np.asarray(a2, dtype=np.float64)
    reward = (
        10.0 * _gaussian_2d(a1, a2, (5.0, 5.0), (1.0, 3.0))
        + 0.1 * a1
        + 5.3 * _gaussian_2d(a1, a2, (1.0, 1.0), (1.0, 1.0))
    )
    return float(reward) if reward.ndim == 0 else reward


# Found with Nelder-Mead (tolerance 1e-12) from (5, 5) and (1, 1); tests check them on a grid.
GLOBAL_OPTIMUM = Optimum(a1=5.192002, a2=4.999997, value=1.040028)
LOCAL_OPTIMUM = Optimum(a1=1.119950, a2=1.000062, value=0.949587)


def penalty_game(k: float = -100.0) -> tuple[tuple[float, ...], ...]:
    """The penalty game [3]: [[10, 0, k], [0, 2, 0], [k, 0, 10]]; k < 0 punishes miscoordination."""
    return ((10.0, 0.0, k), (0.0, 2.0, 0.0), (k, 0.0, 10.0))


MATRIX_GAMES: dict[str, tuple[tuple[float, ...], ...]] = {
    # Optimum 11 at (0, 0), guarded by -30s; (1, 1)/(2, 2) are the traps [3].
    "climbing": ((11.0, -30.0, 0.0), (-30.0, 7.0, 6.0), (0.0, 0.0, 5.0)),
    # Two optima 10 at (0, 0) and (2, 2); miscoordinating costs k (default -100).
    "penalty": penalty_game(),
}
MATRIX_GAME_OPTIMUM: dict[str, float] = {
    name: max(max(row) for row in payoff) for name, payoff in MATRIX_GAMES.items()
}


class _OneStepTeamGame(MultiAgentEnv):
    """Two agents, one step, constant observation 0, same team reward for both."""

    def __init__(self, observation_space: gym.spaces.Box, action_spaces: dict) -> None:
        super().__init__()
        self.possible_agents = list(AGENTS)
        self.agents = list(AGENTS)
        self.observation_spaces = {aid: observation_space for aid in AGENTS}
        self.action_spaces = dict(action_spaces)
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        self.state_space = observation_space
        self._obs = np.zeros(observation_space.shape, dtype=np.float32)
        self._running = False

    @override(MultiAgentEnv)
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed, options=options)
        self._running = True
        return self._observations(), {aid: {GLOBAL_STATE_KEY: self._obs.copy()} for aid in AGENTS}

    @override(MultiAgentEnv)
    def step(self, action_dict: Mapping[str, Any]):
        if not self._running:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step().")
        missing = [aid for aid in AGENTS if aid not in action_dict]
        if missing:
            raise ValueError(f"No action for agent(s) {missing}; both agents act every step.")
        self._running = False
        played = self._play(action_dict)
        reward = self._payoff(*played)
        infos = {
            aid: {
                GLOBAL_STATE_KEY: self._obs.copy(),
                ENV_TERMINATED_KEY: True,
                AGENT_REWARD_KEY: reward,
                PLAYED_ACTION_KEY: played[i],
                JOINT_ACTION_KEY: played,
            }
            for i, aid in enumerate(AGENTS)
        }
        done = {aid: True for aid in (*AGENTS, "__all__")}
        not_truncated = {aid: False for aid in (*AGENTS, "__all__")}
        return self._observations(), {aid: reward for aid in AGENTS}, done, not_truncated, infos

    def _observations(self) -> dict[str, np.ndarray]:
        return {aid: self._obs.copy() for aid in AGENTS}

    def _play(self, action_dict: Mapping[str, Any]) -> tuple:
        raise NotImplementedError

    def _payoff(self, *played) -> float:
        raise NotImplementedError


#: The paper's action domain [2]: both actions bounded to [0, 7].
PAPER_ACTION_LOW, PAPER_ACTION_HIGH = 0.0, 7.0
#: Default start of the mean action, on the edge of the local basin as in the paper's figure.
PAPER_START: tuple[float, float] = (2.5, 1.0)
#: The two action mappings of `DifferentialGameEnv` (env_config "action_mapping").
ACTION_MAPPINGS = ("paper", "scaled")


class DifferentialGameEnv(_OneStepTeamGame):
    """The bimodal differential game of [2] (registered name "differential_game").

    Two action mappings (env_config ``action_mapping``):

    - ``"paper"`` (the default): the game as the paper draws it, actions bounded to the square
      [0, 7]². Each agent's action space is ``Box(-inf, inf, (1,))``, so the Gaussian policy
      samples u_i ∈ ℝ and its log-probabilities are those of the sampled u_i, exactly; RLlib's
      module-to-env connector leaves such actions alone (``unsquash_action`` only rescales
      bounded boxes and ``clip_action`` clips to ±inf), whatever ``normalize_actions`` /
      ``clip_actions`` are. The env plays

          a_i = clip(start_i + u_i, low, high)     (default start (2.5, 1.0), bounds [0, 7])

      so a policy whose mean is 0 (the initial actors) starts with mean action ``start``, and
      the policy's std is the std of the played action away from the edges. A sample beyond an
      edge plays the edge (the reward is flat there in that agent's direction).
    - ``"scaled"`` (the earlier setting): u_i ∈ ``Box(-1, 1, (1,))`` (RLlib clips samples to
      it) and a_i = action_scale · clip(u_i, -1, 1), i.e. a_i ∈ [-10, 10] by default. Passing
      ``action_scale`` alone selects this mapping.

    Both agents receive `differential_game_reward(a1, a2)`. `info[aid]["played_action"]`
    holds a_i and `info[aid]["joint_action"]` the pair (a1, a2).
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        """Builds the game.

        Args:
            config: Env config. Keys:
                action_mapping: "paper" or "scaled" (see the class docstring); default
                    "scaled" if ``action_scale`` is given, else "paper".
                start: "paper" mapping: the played action of u = (0, 0), a pair (default
                    (2.5, 1.0)); must lie in [low, high]².
                low, high: "paper" mapping: the bounds of both actions (default 0 and 7).
                action_scale: "scaled" mapping: a_i = action_scale · clip(u_i, -1, 1)
                    (default 10.0).

        Raises:
            ValueError: An unknown config key or mapping, an option of the other mapping,
                a non-positive `action_scale`, `low >= high`, or a start outside the bounds.
        """
        defaults = {
            "action_mapping": None,
            "start": None,
            "low": None,
            "high": None,
            "action_scale": None,
        }
        cfg = merge_config(config, defaults, type(self).__name__)
        mapping = cfg["action_mapping"]
        if mapping is None:
            mapping = "scaled" if cfg["action_scale"] is not None else "paper"
        if mapping not in ACTION_MAPPINGS:
            raise ValueError(f"action_mapping must be one of {ACTION_MAPPINGS}, got {mapping!r}.")
        self.action_mapping = mapping
        if mapping == "scaled":
            _refuse_options(cfg, ("start", "low", "high"), mapping)
            scale = 10.0 if cfg["action_scale"] is None else float(cfg["action_scale"])
            if scale <= 0:
                raise ValueError(f"action_scale must be > 0, got {scale}.")
            self.action_scale = scale
            self.low, self.high = -scale, scale
            self.start = (0.0, 0.0)
            box = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            _refuse_options(cfg, ("action_scale",), mapping)
            self.action_scale = 1.0
            self.low = PAPER_ACTION_LOW if cfg["low"] is None else float(cfg["low"])
            self.high = PAPER_ACTION_HIGH if cfg["high"] is None else float(cfg["high"])
            if not self.low < self.high:
                raise ValueError(f"low must be < high, got low={self.low}, high={self.high}.")
            start = PAPER_START if cfg["start"] is None else cfg["start"]
            self.start = tuple(float(x) for x in start)
            if len(self.start) != 2 or not all(self.low <= x <= self.high for x in self.start):
                raise ValueError(
                    f"start must be a pair in [{self.low}, {self.high}]², got {cfg['start']!r}."
                )
            box = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        super().__init__(box, {aid: box for aid in AGENTS})

    def played_action(self, policy_action: float, agent_index: int) -> float:
        """The action the env plays for `policy_action` of agent `agent_index` (0 or 1)."""
        if self.action_mapping == "scaled":
            return self.action_scale * float(np.clip(policy_action, -1.0, 1.0))
        return float(np.clip(self.start[agent_index] + policy_action, self.low, self.high))

    def _play(self, action_dict: Mapping[str, Any]) -> tuple[float, float]:
        return tuple(
            self.played_action(float(np.asarray(action_dict[aid]).reshape(-1)[0]), i)
            for i, aid in enumerate(AGENTS)
        )

    def _payoff(self, a1: float, a2: float) -> float:
        return differential_game_reward(a1, a2)


def _refuse_options(cfg: Mapping[str, Any], keys: Sequence[str], mapping: str) -> None:
    given = [key for key in keys if cfg[key] is not None]
    if given:
        raise ValueError(f"option(s) {given} do not apply to action_mapping {mapping!r}.")


class MatrixGameEnv(_OneStepTeamGame):
    """A one-step cooperative matrix game (registered name "matrix_game").

    Agent 0 picks a row, agent 1 a column; both receive payoff[row][col]. Built-in games are in
    `MATRIX_GAMES` ("climbing", "penalty"), their optima in `MATRIX_GAME_OPTIMUM`.
    `info[aid]["played_action"]` holds the agent's action, `info[aid]["joint_action"]` the pair.

    Attributes:
        payoff: The payoff matrix, shape [rows, cols].
        optimum: Its maximum entry, the best team reward.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        """Builds the game.

        Args:
            config: Env config. Keys:
                game: "climbing" (default) or "penalty"; ignored when `payoff` is given.
                payoff: An explicit payoff matrix (list of equal-length lists, n×m).
                penalty_k: The penalty game's k (default -100).

        Raises:
            ValueError: An unknown config key or game, or a malformed payoff matrix.
        """
        defaults = {"game": "climbing", "payoff": None, "penalty_k": -100.0}
        cfg = merge_config(config, defaults, type(self).__name__)
        if cfg["payoff"] is not None:
            payoff = cfg["payoff"]
        elif cfg["game"] == "penalty":
            payoff = penalty_game(float(cfg["penalty_k"]))
        elif cfg["game"] in MATRIX_GAMES:
            payoff = MATRIX_GAMES[cfg["game"]]
        else:
            raise ValueError(f"game must be one of {sorted(MATRIX_GAMES)}, got {cfg['game']!r}.")
        self.payoff = _check_payoff(payoff)
        self.optimum = float(self.payoff.max())
        obs_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        rows, cols = self.payoff.shape
        super().__init__(
            obs_space, {AGENTS[0]: gym.spaces.Discrete(rows), AGENTS[1]: gym.spaces.Discrete(cols)}
        )

    def _play(self, action_dict: Mapping[str, Any]) -> tuple[int, int]:
        played = tuple(int(np.asarray(action_dict[aid]).reshape(-1)[0]) for aid in AGENTS)
        for aid, action in zip(AGENTS, played, strict=True):
            if not self.action_spaces[aid].contains(action):
                raise ValueError(f"Action {action} of {aid} is outside {self.action_spaces[aid]}.")
        return played

    def _payoff(self, row: int, col: int) -> float:
        return float(self.payoff[row, col])


def _check_payoff(payoff: Sequence[Sequence[float]]) -> np.ndarray:
    try:
        matrix = np.asarray(payoff, dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"payoff must be an n×m list of numbers, got {payoff!r}.") from e
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"payoff must be a non-empty n×m matrix, got shape {matrix.shape}.")
    return matrix
