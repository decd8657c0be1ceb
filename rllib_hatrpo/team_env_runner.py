"""`TeamEnvRunner`: HATRPO's vectorised multi-agent EnvRunner (N envs in lockstep).

HATRPO's envs are synchronous teams: every agent acts at every step and all agents leave
together. RLlib's `MultiAgentEnvRunner` handles the general case (agents that come and go,
per-step connectors and callbacks) at the price of per-step Python bookkeeping that costs more
than the physics. This runner samples the common case directly:

- N envs (``num_envs_per_env_runner``) step in lockstep through a
  :class:`rllib_hatrpo.envs.vector.TeamVectorEnv` (an env's own fast implementation, such as
  MaMuJoCo's, or one env after another);
- one forward pass per agent for all N envs (one per group of agents whose actors share a
  layout, :attr:`TeamEnvRunner.group_agents`), the actions drawn from the module's action
  distribution exactly as RLlib's default module-to-env pipeline draws them (the same
  distribution classes, ``to_deterministic()`` without exploration, log-probabilities, and
  ``normalize_actions``/``clip_actions`` applied to the actions sent to the env only);
- the steps stored as arrays and turned into ordinary `MultiAgentEpisode`s once per `sample()`
  (:mod:`rllib_hatrpo.team_episodes`), with the env's own terminated/truncated flags and infos,
  so the learner's connector pipeline, the metrics and ``on_episode_end`` callbacks see what
  RLlib's runner would have produced.

Everything else is RLlib's: the env and module construction, weights and state, checkpoints,
fault tolerance, metrics reduction. RLlib's runner stays one option away:
``config.env_runners(env_runner_cls=MultiAgentEnvRunner)``.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import numpy as np
import torch
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_STEP_TIMER,
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
    RLMODULE_INFERENCE_TIMER,
)

from rllib_hatrpo.envs.vector import SyncTeamVectorEnv, team_vector_env_of
from rllib_hatrpo.team_actions import draw_actions, env_action_fn, to_numpy
from rllib_hatrpo.team_episodes import EpisodeCursor, LockstepRollout
from rllib_hatrpo.threads import limit_threads
from rllib_hatrpo.torch.grouped_actors import GroupedActors, group_actors

logger = logging.getLogger(__name__)

#: Per-episode callbacks this runner cannot call: it builds episodes after the steps.
UNSUPPORTED_CALLBACKS = ("on_episode_created", "on_episode_start", "on_episode_step")
_USE_RLLIB_RUNNER = (
    "or sample with RLlib's runner: config.env_runners(env_runner_cls="
    "ray.rllib.env.multi_agent_env_runner.MultiAgentEnvRunner)."
)


class TeamEnvRunner(MultiAgentEnvRunner):
    """Samples N team envs in lockstep with one forward pass per agent (module docstring).

    Attributes:
        group_agents: Agents whose actors share a layout (e.g. HalfCheetah 2x3's two, the MPE
            agents) share one batched forward pass
            (:class:`rllib_hatrpo.torch.grouped_actors.GroupedActors`): the same actions and
            log-probabilities up to float rounding, and fewer small matrix products. A
            subclass with ``group_agents = False`` runs every actor on its own, as RLlib's
            runner does, and gives RLlib's runner's episodes bit for bit.
    """

    group_agents: bool = True

    @override(MultiAgentEnvRunner)
    def __init__(self, config, **kwargs):
        limit_threads(_cpus_of_env_runner(config, kwargs.get("worker_index")))
        check_team_env_runner_config(config)
        self._team_env = None
        self._cursors: list[EpisodeCursor] = []
        self._current: tuple[dict[str, np.ndarray], list[dict]] | None = None
        super().__init__(config=config, **kwargs)
        if self.module is not None and any(
            self.module[mid].is_stateful() for mid in self.module.keys()
        ):
            raise ValueError(
                f"TeamEnvRunner does not support recurrent (stateful) modules; {_USE_RLLIB_RUNNER}"
            )

    @override(MultiAgentEnvRunner)
    def make_env(self) -> None:
        """RLlib's env (N copies, for spaces and callbacks), then their lockstep vector env."""
        self._close_own_team_env()
        super().make_env()
        self._team_env = team_vector_env_of(self.env.envs)
        self._agents = list(self._team_env.possible_agents)
        self._modules = [self.config.policy_mapping_fn(aid, None) for aid in self._agents]
        self._action_spaces = {
            aid: self.env.envs[0].unwrapped.get_action_space(aid) for aid in self._agents
        }
        self._env_action_fns = {
            aid: env_action_fn(space, self.config.normalize_actions, self.config.clip_actions)
            for aid, space in self._action_spaces.items()
        }
        self._current = None

    @override(MultiAgentEnvRunner)
    def make_module(self) -> None:
        """RLlib's modules, in eval mode once (sampling never trains them)."""
        super().make_module()
        if self.module is not None:
            self.module.foreach_module(lambda mid, module: module.eval())

    @override(MultiAgentEnvRunner)
    def stop(self) -> None:
        self._close_own_team_env()
        super().stop()

    def _close_own_team_env(self) -> None:
        """Closes an env's own fast vector env; a ``SyncTeamVectorEnv`` only borrows RLlib's
        envs, which RLlib closes."""
        if self._team_env is not None and not isinstance(self._team_env, SyncTeamVectorEnv):
            self._team_env.close()
        self._team_env = None

    @override(MultiAgentEnvRunner)
    def _sample(
        self,
        *,
        num_timesteps: int | None = None,
        num_episodes: int | None = None,
        explore: bool,
        random_actions: bool = False,
        force_reset: bool = False,
    ) -> list[MultiAgentEpisode]:
        """Samples ``num_timesteps`` env steps (chunks of ongoing episodes included) or
        ``num_episodes`` whole episodes (from freshly reset envs)."""
        if force_reset or num_episodes is not None or self._current is None:
            self._reset_all(seeded=self._needs_initial_reset)
        if num_episodes is not None:
            self._needs_initial_reset = True
        self._groups = self._group_actors()  # This sample's weights, stacked.
        obs, infos = self._current
        rollout = LockstepRollout(self._agents, obs, infos, self._cursors)
        num_done, env_time, forward_time = 0, 0.0, 0.0
        while (
            num_done < num_episodes
            if num_timesteps is None
            else rollout.num_steps * self.num_envs < num_timesteps
        ):
            t0 = time.perf_counter()
            actions, actions_for_env, extra = self._act(obs, explore, random_actions)
            t1 = time.perf_counter()
            step = self._team_env.step(actions_for_env)
            env_time += time.perf_counter() - t1
            forward_time += t1 - t0
            ended = rollout.add_step(actions, extra, step)
            num_done += len(ended)
            if len(ended):
                seeds = [None] * len(ended)
                reset_obs, reset_infos = self._team_env.reset(ended, seeds)
                cursors = [EpisodeCursor.new(self._agents) for _ in ended]
                rollout.add_resets(ended, reset_obs, reset_infos, cursors)
            obs, _ = rollout.current()
        return self._finish(rollout, num_episodes, env_time, forward_time)

    def _finish(
        self, rollout: LockstepRollout, num_episodes: int | None, env_time: float, fwd: float
    ) -> list[MultiAgentEpisode]:
        """Builds the episodes, calls ``on_episode_end``, logs the sampling metrics."""
        make_episode = partial(
            MultiAgentEpisode,
            observation_space=dict(self.env.envs[0].unwrapped.observation_spaces),
            action_space=dict(self.env.envs[0].unwrapped.action_spaces),
            agent_to_module_mapping_fn=self.config.policy_mapping_fn,
        )
        done, ongoing, self._cursors = rollout.episodes(
            make_episode, self._weights_seq_no, as_numpy=self.episodes_to_numpy
        )
        self._current = rollout.current()
        for episode in done:
            self._call_on_episode_end(episode)
        if num_episodes is not None:
            ongoing = []  # Episode mode returns whole episodes only.
            self._current = None
        for episode in ongoing:
            self._ongoing_episodes_for_metrics[episode.id_].append(episode)
        self._done_episodes_for_metrics.extend(done)
        self._log_sample_metrics(rollout.num_steps * self.num_envs, len(done), env_time, fwd)
        episodes = done + ongoing
        if self.episodes_to_numpy:
            for episode in episodes:
                episode.to_numpy()
        return episodes

    def _reset_all(self, seeded: bool) -> None:
        """Resets every env: seeded ``seed + i`` on the first reset after ``make_env()`` and after
        an episodes-mode ``sample()``, unseeded otherwise, as RLlib's runner does."""
        self._ongoing_episodes_for_metrics.clear()
        indices = np.arange(self.num_envs)
        seeds = (
            [self._seed + int(i) for i in indices]
            if seeded and self._seed is not None
            else [None] * self.num_envs
        )
        obs, infos = self._team_env.reset(indices, seeds)
        self._needs_initial_reset = False  # As RLlib's runner: seeded again after make_env().
        self._current = (obs, infos)
        self._cursors = [EpisodeCursor.new(self._agents) for _ in indices]

    def _group_actors(self) -> list[tuple[list[str], GroupedActors | None, Any]]:
        """The agents in groups that share one batched forward pass (with their stacked
        current weights; None: an agent alone, see :attr:`group_agents`), each with the
        module of its first agent (its forward pass and distribution classes)."""
        modules = {
            aid: self.module[mid] for aid, mid in zip(self._agents, self._modules, strict=True)
        }
        groups = group_actors(modules) if self.group_agents else [[aid] for aid in modules]
        return [
            (
                group,
                GroupedActors([modules[aid] for aid in group]) if len(group) > 1 else None,
                modules[group[0]],
            )
            for group in groups
        ]

    @torch.no_grad()
    def _act(
        self, obs: dict[str, np.ndarray], explore: bool, random_actions: bool
    ) -> tuple[dict, dict, dict]:
        """One forward pass per agent (or per group of agents) over the N envs; returns the
        actions (as stored in the episodes), the actions sent to the env and the extra model
        outputs per agent."""
        actions, extra = {}, {}
        if random_actions:
            for aid in self._agents:
                space = self._action_spaces[aid]
                actions[aid] = np.stack([space.sample() for _ in range(self.num_envs)])
                extra[aid] = {}
            return actions, self._actions_for_env(actions), extra
        for group, grouped, module in self._groups:
            if grouped is None:
                batch = {Columns.OBS: torch.from_numpy(obs[group[0]]).to(self._device)}
                # What forward_exploration/forward_inference run, without their per-call
                # train()/eval() switch: the modules stay in eval mode (make_module).
                forward = module._forward_exploration if explore else module._forward_inference
                dist_inputs = forward(batch)[Columns.ACTION_DIST_INPUTS]
            else:
                stacked = np.stack([obs[aid] for aid in group])
                dist_inputs = grouped.forward(torch.from_numpy(stacked).to(self._device))
                dist_inputs = dist_inputs.reshape(len(group) * self.num_envs, -1)
            dist_cls = (
                module.get_exploration_action_dist_cls()
                if explore
                else module.get_inference_action_dist_cls()
            )
            action, logp = draw_actions(dist_cls, dist_inputs, explore)
            columns = {
                Columns.ACTIONS: to_numpy(action),
                Columns.ACTION_DIST_INPUTS: to_numpy(dist_inputs),
                Columns.ACTION_LOGP: to_numpy(logp),
            }
            for g, aid in enumerate(group):
                rows = slice(g * self.num_envs, (g + 1) * self.num_envs)
                actions[aid] = columns[Columns.ACTIONS][rows]
                extra[aid] = {
                    col: columns[col][rows]
                    for col in (Columns.ACTION_DIST_INPUTS, Columns.ACTION_LOGP)
                }
        return actions, self._actions_for_env(actions), extra

    def _actions_for_env(self, actions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``normalize_actions`` (unsquash) or ``clip_actions``, as RLlib's pipeline applies."""
        return {aid: self._env_action_fns[aid](actions[aid]) for aid in self._agents}

    def _call_on_episode_end(self, episode: MultiAgentEpisode) -> None:
        from ray.rllib.callbacks.utils import make_callback

        make_callback(
            "on_episode_end",
            callbacks_objects=self._callbacks,
            callbacks_functions=self.config.callbacks_on_episode_end,
            kwargs=dict(
                episode=episode,
                prev_episode_chunks=self._ongoing_episodes_for_metrics[episode.id_],
                env_runner=self,
                metrics_logger=self.metrics,
                env=self.env.unwrapped,
                rl_module=self.module,
                env_index=None,
            ),
        )

    def _log_sample_metrics(
        self, env_steps: int, episodes: int, env_time: float, forward_time: float
    ) -> None:
        """The counters RLlib's runner logs per env step, logged once with their sums."""
        if env_steps <= 0:
            return
        m = self.metrics
        m.log_value(NUM_ENV_STEPS_SAMPLED, env_steps, reduce="sum")
        m.log_value(
            NUM_ENV_STEPS_SAMPLED_LIFETIME, env_steps, reduce="lifetime_sum", with_throughput=True
        )
        m.log_value(NUM_EPISODES, episodes, reduce="sum")
        m.log_value(NUM_EPISODES_LIFETIME, episodes, reduce="lifetime_sum")
        for aid, mid in zip(self._agents, self._modules, strict=True):
            m.log_value((NUM_AGENT_STEPS_SAMPLED, str(aid)), env_steps, reduce="sum")
            m.log_value(
                (NUM_AGENT_STEPS_SAMPLED_LIFETIME, str(aid)), env_steps, reduce="lifetime_sum"
            )
            m.log_value((NUM_MODULE_STEPS_SAMPLED, mid), env_steps, reduce="sum")
            m.log_value((NUM_MODULE_STEPS_SAMPLED_LIFETIME, mid), env_steps, reduce="lifetime_sum")
        steps = env_steps // self.num_envs
        m.log_value(ENV_STEP_TIMER, env_time / steps)
        m.log_value(RLMODULE_INFERENCE_TIMER, forward_time / steps)
        self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=env_steps)


def check_team_env_runner_config(config: Any) -> None:
    """Refuses settings :class:`TeamEnvRunner` would otherwise ignore.

    Raises:
        ValueError: Custom env-to-module or module-to-env connectors, per-step or
            per-episode-start callbacks, ``count_steps_by="agent_steps"``, or
            ``restart_failed_sub_environments=True``.
    """
    problems = []
    if config._env_to_module_connector is not None:
        problems.append("env_runners(env_to_module_connector=...) is set")
    if config._module_to_env_connector is not None:
        problems.append("env_runners(module_to_env_connector=...) is set")
    for name in UNSUPPORTED_CALLBACKS:
        if getattr(config, f"callbacks_{name}", None):
            problems.append(f"callbacks({name}=...) is set")
    for cls in _callback_classes(config):
        for name in UNSUPPORTED_CALLBACKS:
            if getattr(cls, name, None) is not getattr(RLlibCallback, name):
                problems.append(f"{cls.__name__} overrides {name}")
    if config.restart_failed_sub_environments:
        problems.append(
            "fault_tolerance(restart_failed_sub_environments=True) (an env that raises stops "
            "this EnvRunner, which restart_failed_env_runners=True recreates)"
        )
    if config.count_steps_by != "env_steps":
        problems.append(f"multi_agent(count_steps_by={config.count_steps_by!r})")
    if problems:
        raise ValueError(
            "TeamEnvRunner (HATRPO's vectorised sampler) cannot honour: "
            + "; ".join(problems)
            + ". It builds the episodes after the steps, so per-step connectors and "
            "callbacks never run; use on_episode_end or on_sample_end callbacks, "
            + _USE_RLLIB_RUNNER
        )


def _callback_classes(config: Any) -> list[type]:
    classes = config.callbacks_class
    if not isinstance(classes, list | tuple):
        classes = [classes]
    return [cls for cls in classes if isinstance(cls, type)]


def _cpus_of_env_runner(config: Any, worker_index: int | None) -> int | None:
    """CPUs of this EnvRunner: ``num_cpus_per_env_runner`` for a remote one; None (leave the
    threads alone) for the local one, which shares the driver's process with the learner."""
    if not worker_index:
        return None
    return max(1, int(config.num_cpus_per_env_runner or 1))
