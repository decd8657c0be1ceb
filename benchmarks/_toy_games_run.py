"""One run of the toy-game benchmark (``toy_games.py``): config, training loop and the
per-iteration rows of ``runs.csv``.

A run trains one (game, allocator, seed) in-process with the package's real learner: a
``MultiAgentEnvRunner`` (no Ray cluster) samples, ``learner.update`` learns, and the actors'
weights go back to the runner as ``EnvRunnerGroup.sync_weights`` would push them.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from _common import assert_weights_synced, peek, push_actor_weights, quiet_logs

from rllib_hatrpo.metrics import (
    KL,
    KL_BUDGET,
    KL_TOTAL,
    LINE_SEARCH_ACCEPTED,
    NATGRAD_SQ_NORM,
    NUM_PROPOSALS,
    PREPASS_NATGRAD_SQ_NORM,
    SKIPPED_STEPS,
    TOTAL_KL_BUDGET,
    UPDATE_RANK,
)

AGENTS = ("agent_0", "agent_1")
GAMES = ("differential", "climbing", "penalty")
#: Matrix games by benchmark name: the MatrixGameEnv env_config of each. "penalty_mild" is the
#: penalty game with a small miscoordination cost (k = -10 instead of -100).
MATRIX_GAME_CONFIGS: dict[str, dict[str, Any]] = {
    "climbing": {"game": "climbing"},
    "penalty": {"game": "penalty"},
    "penalty_mild": {"game": "penalty", "penalty_k": -10.0},
}
#: The columns that identify a run in runs.csv.
RUN_KEYS = ["game", "allocator", "seed"]
PER_AGENT_METRICS = {  # learner metric -> runs.csv column prefix
    KL_BUDGET: "kl_budget",
    KL: "kl",
    NATGRAD_SQ_NORM: "natgrad_sq_norm",
    PREPASS_NATGRAD_SQ_NORM: "prepass_q",
    LINE_SEARCH_ACCEPTED: "accepted",
    UPDATE_RANK: "rank",
}
OVERALL_METRICS = (TOTAL_KL_BUDGET, KL_TOTAL, SKIPPED_STEPS, NUM_PROPOSALS)
# Differential game: "beat the local optimum" needs a deterministic return above its value
# plus this margin (a policy sitting on the local optimum matches its rounded value).
ESCAPE_MARGIN = 0.01


def env_spec(game: str, params: dict[str, Any]) -> tuple[type, dict[str, Any]]:
    """The env class and env_config of a game name."""
    from rllib_hatrpo.envs import DifferentialGameEnv, MatrixGameEnv

    if game == "differential":
        env_config = params.get("env_config") or {"action_scale": params["action_scale"]}
        return DifferentialGameEnv, dict(env_config)
    if game in MATRIX_GAME_CONFIGS:
        return MatrixGameEnv, dict(MATRIX_GAME_CONFIGS[game])
    raise ValueError(f"unknown game {game!r}; choose from {(*GAMES, *MATRIX_GAME_CONFIGS)}")


def make_config(game: str, allocator: str, seed: int, params: dict[str, Any]):
    """The HATRPOConfig of one run: package defaults except batch, δ, allocator and seed
    (and the actors' initial log-std when ``--initial-log-std`` is given)."""
    from rllib_hatrpo import HATRPOConfig

    env_cls, env_config = env_spec(game, params)
    training = {
        "train_batch_size_per_learner": params["batch_size"],
        "kl_threshold": params["kl_threshold"],
        "kl_allocator": allocator,
    }
    if params["initial_log_std"] is not None:
        training["initial_log_std"] = params["initial_log_std"]
    return (
        HATRPOConfig()
        .environment(env_cls, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=params["num_envs"])
        .training(**training)
        .debugging(seed=seed)
    )


def policy_snapshot(learner, game: str, env, radius: float) -> dict[str, float]:
    """Deterministic joint action, its payoff, and each policy's spread, from the actors'
    forward pass on the game's constant observation 0."""
    import torch
    from ray.rllib.core.columns import Columns

    from rllib_hatrpo.envs import LOCAL_OPTIMUM, differential_game_reward

    row: dict[str, float] = {}
    played = []
    marginals: list[np.ndarray] = []
    for aid in AGENTS:
        module = learner.module[aid]
        obs = torch.zeros((1, *module.observation_space.shape), dtype=torch.float32)
        with torch.no_grad():
            logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS][0]
        if game == "differential":
            mean, log_std = logits[:1], logits[1:]
            row[f"policy_mean_{aid}"] = float(mean[0])
            action = env.played_action(float(mean[0]), AGENTS.index(aid))
            row[f"policy_std_{aid}"] = env.action_scale * float(torch.exp(log_std[0]))
            row[f"greedy_prob_{aid}"] = math.nan
        else:
            probs = torch.softmax(logits, dim=-1)
            action = int(torch.argmax(logits))
            row[f"policy_std_{aid}"] = math.nan
            row[f"greedy_prob_{aid}"] = float(probs[action])
            marginals.append(probs.double().numpy())
        row[f"action_{aid}"] = float(action)
        played.append(action)
    if game == "differential":
        row["det_return"] = differential_game_reward(*played)
    else:
        row["det_return"] = float(env.payoff[played[0], played[1]])
        # Probability that the stochastic joint policy plays an optimal cell.
        joint = np.outer(marginals[0], marginals[1])
        row["p_optimum"] = float(joint[env.payoff >= env.optimum - 1e-9].sum())
    row["success"] = float(is_success(game, played, row["det_return"], env, radius))
    if game == "differential":
        row["global_basin"] = float(in_global_basin(played))
    # Differential game: the deterministic return beats the local optimum's value by more than
    # ESCAPE_MARGIN (the run left the local optimum, to the global one or elsewhere); matrix
    # games: = success.
    row["escaped"] = (
        float(row["det_return"] > LOCAL_OPTIMUM.value + ESCAPE_MARGIN)
        if game == "differential"
        else row["success"]
    )
    return row


def in_global_basin(played: list) -> bool:
    """Differential game: the joint action is closer to the global than to the local optimum."""
    from rllib_hatrpo.envs import GLOBAL_OPTIMUM, LOCAL_OPTIMUM

    to_global = math.hypot(played[0] - GLOBAL_OPTIMUM.a1, played[1] - GLOBAL_OPTIMUM.a2)
    to_local = math.hypot(played[0] - LOCAL_OPTIMUM.a1, played[1] - LOCAL_OPTIMUM.a2)
    return to_global < to_local


def is_success(game: str, played: list, det_return: float, env, radius: float) -> bool:
    """The success criterion for one deterministic joint action: differential game, within
    ``radius`` of the global optimum (``radius`` None: `in_global_basin`); matrix games, an
    optimal cell."""
    from rllib_hatrpo.envs import GLOBAL_OPTIMUM

    if game == "differential" and radius is None:
        return in_global_basin(played)
    if game == "differential":
        return math.hypot(played[0] - GLOBAL_OPTIMUM.a1, played[1] - GLOBAL_OPTIMUM.a2) <= radius
    return det_return >= env.optimum - 1e-9


def learner_row(results: dict[str, Any]) -> dict[str, float]:
    """The allocator's per-agent and per-iteration metrics from ``learner.update``'s results."""
    from ray.rllib.utils.metrics import ALL_MODULES

    row = {}
    for aid in AGENTS:
        for key, prefix in PER_AGENT_METRICS.items():
            row[f"{prefix}_{aid}"] = peek(results[aid].get(key))
    for key in OVERALL_METRICS:
        row[key] = peek(results[ALL_MODULES][key])
    return row


def train_run(game: str, allocator: str, seed: int, params: dict[str, Any]) -> list[dict]:
    """Trains one (game, allocator, seed) run in-process; returns its runs.csv rows."""
    _quiet_worker()
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    cfg = make_config(game, allocator, seed, params)
    cfg.validate()
    runner = MultiAgentEnvRunner(config=cfg)
    learner = cfg.build_learner(spaces=runner.get_spaces())
    env_cls, env_config = env_spec(game, params)
    env = env_cls(env_config)
    base = {"game": game, "allocator": allocator, "seed": seed}
    rows = [
        {
            **base,
            "iteration": 0,
            "env_steps": 0,
            **policy_snapshot(learner, game, env, params["radius"]),
        }
    ]
    env_steps = 0
    for iteration in range(1, params["iterations"] + 1):
        t0 = time.perf_counter()
        episodes = runner.sample(num_timesteps=params["batch_size"])
        t1 = time.perf_counter()
        # One-step episodes: each agent's return is the team reward of its episode.
        rewards = [r for e in episodes for r in e.agent_episodes[AGENTS[0]].get_rewards()]
        env_steps += sum(len(e) for e in episodes)
        results = learner.update(episodes=episodes, timesteps={})
        t2 = time.perf_counter()
        push_actor_weights(learner, runner)
        if iteration == 1:
            assert_weights_synced(runner, learner)
        rows.append(
            {
                **base,
                "iteration": iteration,
                "env_steps": env_steps,
                "team_return": float(np.mean(rewards)),
                **policy_snapshot(learner, game, env, params["radius"]),
                **learner_row(results),
                "sample_s": t1 - t0,
                "learn_s": t2 - t1,
            }
        )
    runner.stop()
    return rows


def _quiet_worker() -> None:
    """One torch thread per worker process (2 workers on 2 cores); no RLlib chatter."""
    import ray.rllib  # noqa: F401  (configures Ray's loggers; quiet them afterwards)
    import torch

    torch.set_num_threads(1)
    quiet_logs(("ray", "ray.rllib", "ray.rllib.core.rl_module.rl_module", "rllib_hatrpo"))
