"""Running a ``hatrpo train`` checkpoint's policies: what ``hatrpo evaluate`` does.

Only the actors and the env are rebuilt from a checkpoint (no Ray cluster, no learner, no
EnvRunners); episodes run with deterministic actions (the distribution's mode) unless asked to
explore, and the first episode can be recorded as a GIF or MP4::

    policies = load_checkpoint_policies("runs/spread/seed_0/checkpoint")
    env = make_env(policies.config)
    returns = run_episodes(policies, env, episodes=10)

Errors about the checkpoint, the env or the video file are an :class:`EvaluationError` whose
``setting`` is ``"checkpoint"``, ``"env"`` or ``"render"`` (``hatrpo evaluate`` reports them as
errors of ``CHECKPOINT``, ``--env`` or ``--render``, exit code 2).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rllib_hatrpo.experiments.checkpoints import (
    CHECKPOINT_MARKER,
    MANIFEST_FILE,
    CheckpointError,
    verify_manifest,
)
from rllib_hatrpo.experiments.spec import SettingError, import_object, ref

#: The setting of an error about the checkpoint evaluated.
CHECKPOINT = "checkpoint"
#: The setting of an error about the video recorded.
RENDER = "render"
#: The setting of an error about the env given instead of the checkpoint's.
ENV = "env"


class EvaluationError(SettingError):
    """A checkpoint that cannot be evaluated, or a video that cannot be recorded.

    ``setting`` is :data:`CHECKPOINT` or :data:`RENDER`.
    """


@dataclasses.dataclass
class CheckpointPolicies:
    """The actors of a HATRPO checkpoint and what is needed to run them in its env."""

    path: Path
    config: dict[str, Any]  # the algorithm config's state (AlgorithmConfig.get_state())
    modules: dict[str, Any]  # module ID -> RLModule (the learner's copy)

    def module_for(self, agent: str) -> Any:
        """The module that acts for ``agent`` (the config's policy mapping)."""
        mapping = self.config.get("policy_mapping_fn")
        mid = mapping(agent, None) if callable(mapping) else agent
        return self.modules[mid]


def _checkpoint_dir(path: Path) -> Path:
    """``path`` itself, or ``path/checkpoint`` if given a seed's run directory."""
    path = path.expanduser()
    if (
        not (path / CHECKPOINT_MARKER).is_file()
        and (path / "checkpoint" / CHECKPOINT_MARKER).is_file()
    ):
        return path / "checkpoint"
    return path


def load_checkpoint_policies(path: str | os.PathLike) -> CheckpointPolicies:
    """Loads the config and the actor modules of a HATRPO checkpoint, without Ray running.

    Reads ``class_and_ctor_args.pkl`` (the algorithm's config) and each actor from
    ``learner_group/learner/rl_module/<module_id>`` with ``RLModule.from_checkpoint``; the
    critic, the learner and the EnvRunners are not built. A checkpoint with a
    ``manifest.json`` (``hatrpo train`` writes one) must match it; one without (e.g. from
    ``algo.save_to_path``) is read as it is.

    Raises:
        EvaluationError: ``path`` is not a HATRPO checkpoint, cannot be read, or a file differs from
            its manifest (names the path).
    """
    path = _checkpoint_dir(Path(path))
    where = f"{path} (resolved: {path.resolve()})" if not path.is_absolute() else str(path)
    if not path.is_dir():
        raise EvaluationError(CHECKPOINT, f"no checkpoint directory at {where}")
    meta_file = path / CHECKPOINT_MARKER
    if not meta_file.is_file():
        raise EvaluationError(
            CHECKPOINT, f"{where} is not an RLlib checkpoint (no rllib_checkpoint.json)"
        )
    if (path / MANIFEST_FILE).is_file():  # written by hatrpo train: check the files first
        try:
            verify_manifest(path)
        except CheckpointError as err:
            raise EvaluationError(
                CHECKPOINT, f"{err}. Restore it from a backup, or evaluate another checkpoint."
            ) from err
    try:
        meta = json.loads(meta_file.read_text())
        with (path / meta["class_and_ctor_args_file"]).open("rb") as f:
            ctor = pickle.load(f)
        config = ctor["ctor_args_and_kwargs"][0][0]
        algo_class = ctor["class"]
    except Exception as err:  # any unreadable file: report it, never train from scratch
        raise EvaluationError(
            CHECKPOINT, f"cannot read the checkpoint at {where}: {type(err).__name__}: {err}"
        ) from err
    from rllib_hatrpo.hatrpo import HATRPO

    if not (isinstance(algo_class, type) and issubclass(algo_class, HATRPO)):
        raise EvaluationError(
            CHECKPOINT, f"{where} holds a {algo_class!r}, not a HATRPO checkpoint"
        )
    if not isinstance(config, dict) or not config.get("policies"):
        raise EvaluationError(CHECKPOINT, f"{where}: its config names no policies")
    if config.get("_env_to_module_connector") or config.get("_module_to_env_connector"):
        # Their observation/action transforms are not rebuilt here: refuse rather than run
        # the actors on inputs they were not trained on.
        raise EvaluationError(
            CHECKPOINT,
            f"{where} was trained with custom env-to-module or module-to-env connectors, which "
            "`hatrpo evaluate` does not rebuild; restore it with HATRPO.from_checkpoint(...)",
        )
    from ray.rllib.core.rl_module.rl_module import RLModule

    # RLModule.from_checkpoint reads through pyarrow, which takes a relative path for a URI.
    module_root = path.absolute() / "learner_group" / "learner" / "rl_module"
    modules = {}
    for mid in sorted(config["policies"]):
        try:
            modules[mid] = RLModule.from_checkpoint(module_root / mid)
        except Exception as err:  # missing or corrupted module files
            raise EvaluationError(
                CHECKPOINT,
                f"cannot load module {mid!r} from {module_root / mid}: {type(err).__name__}: {err}",
            ) from err
        modules[mid].eval()
    return CheckpointPolicies(path=path, config=config, modules=modules)


def make_env(config: dict[str, Any], render: bool = False, env: str | None = None) -> Any:
    """Creates the checkpoint's env (with ``render_mode="rgb_array"`` if ``render``).

    Args:
        config: The checkpoint's config (:attr:`CheckpointPolicies.config`).
        render: Ask the env for RGB frames.
        env: Build the env from this instead of the checkpoint's ``env``: a built-in suite
            name or ``package.module:ClassOrFactory``, called with the checkpoint's
            env_config. What a checkpoint whose env was a name registered with
            ``ray.tune.register_env`` in the training script needs (setting ``"env"``).

    Raises:
        EvaluationError: The env cannot be found or built.
    """
    from ray.rllib.env.env_context import EnvContext

    env_desc, env_config = config.get("env"), dict(config.get("env_config") or {})
    if render:
        env_config["render_mode"] = "rgb_array"
    if env is not None:
        env_desc = _env_creator(env, setting=ENV)
    elif isinstance(env_desc, str):
        env_desc = _env_creator(env_desc)
    if not callable(env_desc):
        raise EvaluationError(CHECKPOINT, f"its config has no env to build (env={env_desc!r})")
    try:
        return env_desc(EnvContext(env_config, worker_index=0))
    except (ValueError, TypeError) as err:
        if render:
            raise EvaluationError(RENDER, f"the env cannot render to RGB frames: {err}") from err
        raise


def _env_creator(name: str, setting: str = CHECKPOINT) -> Callable[..., Any]:
    """A built-in env name, a ``package.module:Factory`` path or a name registered with Tune."""
    from rllib_hatrpo.envs import ENV_SUITES

    if name in ENV_SUITES:
        return ENV_SUITES[name].load()
    if ":" in name:
        try:
            env = import_object(name, setting)
        except SettingError as err:
            raise EvaluationError(setting, err.message) from err
        if not callable(env):
            raise EvaluationError(setting, f"{name!r} is not a class or function")
        return env
    from ray.tune.registry import ENV_CREATOR, _global_registry

    if not _global_registry.contains(ENV_CREATOR, name):
        if setting == ENV:
            raise EvaluationError(
                ENV,
                f"unknown env {name!r}; give one of {sorted(ENV_SUITES)} or "
                "package.module:ClassOrFactory",
            )
        raise EvaluationError(
            CHECKPOINT,
            f"its env {name!r} is a name registered with ray.tune.register_env in the training "
            f"process; give the class or factory you registered it with as "
            f"{ref(ENV)} package.module:ClassOrFactory (a module in the current directory "
            "works)",
        )
    return _global_registry.get(ENV_CREATOR, name)


def _act(module: Any, obs: Any, explore: bool) -> np.ndarray:
    import torch
    from ray.rllib.core.columns import Columns

    batch = {Columns.OBS: torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])}
    with torch.no_grad():
        if explore:
            out = module.forward_exploration(batch)
            dist = module.get_exploration_action_dist_cls().from_logits(
                out[Columns.ACTION_DIST_INPUTS]
            )
        else:
            out = module.forward_inference(batch)
            dist = (
                module.get_inference_action_dist_cls()
                .from_logits(out[Columns.ACTION_DIST_INPUTS])
                .to_deterministic()
            )
        return dist.sample()[0].numpy()


def _to_env_action(action: np.ndarray, space: Any, config: dict[str, Any]) -> Any:
    """As RLlib's NormalizeAndClipActions connector: unsquash, or clip, Box actions."""
    from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

    if config.get("normalize_actions", True):
        return unsquash_action(action, space)
    if config.get("clip_actions", False):
        return clip_action(action, space)
    return action


def run_episodes(
    policies: CheckpointPolicies,
    env: Any,
    episodes: int,
    seed: int | None = 0,
    explore: bool = False,
    frames: list[np.ndarray] | None = None,
    max_frames: int = 0,
) -> list[float]:
    """Runs ``episodes`` episodes; returns each one's team return.

    The team return sums the team reward, which every agent receives (the package's env
    contract); the first agent's reward is taken. If ``frames`` is a list, the first episode's
    ``env.render()`` frames are appended to it (at most ``max_frames``).
    """
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=None if seed is None else seed + episode)
        record = frames is not None and episode == 0
        if record:
            _record(env, frames, max_frames)
        total, done = 0.0, False
        while not done:
            actions = {}
            for agent, agent_obs in obs.items():
                module = policies.module_for(agent)
                action = _act(module, agent_obs, explore)
                actions[agent] = _to_env_action(action, module.action_space, policies.config)
            obs, rewards, terminateds, truncateds, _ = env.step(actions)
            total += float(next(iter(rewards.values()), 0.0))
            done = bool(terminateds.get("__all__") or truncateds.get("__all__"))
            if record:
                _record(env, frames, max_frames)
        returns.append(total)
    return returns


def _record(env: Any, frames: list[np.ndarray], max_frames: int) -> None:
    if len(frames) >= max_frames:
        return
    frame = env.render()
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3):
        raise EvaluationError(
            RENDER,
            f"{type(env).__name__}.render() returned {type(frame).__name__}, not an RGB frame",
        )
    frames.append(frame)


def render_fps(env: Any, default: float = 30.0) -> float:
    """The env's ``metadata["render_fps"]``, looked up through wrapper layers."""
    seen, todo = set(), [env]
    while todo:
        obj = todo.pop(0)
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        fps = (getattr(obj, "metadata", None) or {}).get("render_fps")
        if fps:
            return float(fps)
        todo += [getattr(obj, name, None) for name in ("env", "single_agent_env", "unwrapped")]
    return default


def check_video_path(path: Path) -> None:
    """Checks, before any episode runs, that ``path`` is a GIF or an MP4 this install can write.

    Raises:
        EvaluationError: Another suffix, or MP4 without imageio and an FFmpeg backend
            (``render``).
    """
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise EvaluationError(RENDER, f"the file must end in .gif or .mp4, got {path}")
    if suffix == ".mp4" and not any(_importable(m) for m in ("imageio_ffmpeg", "av")):
        raise EvaluationError(
            RENDER,
            "writing MP4 needs imageio with an FFmpeg backend (pip install imageio-ffmpeg) or "
            "PyAV (pip install av); or give a .gif path",
        )
    if suffix == ".mp4" and not _importable("imageio"):
        raise EvaluationError(RENDER, "writing MP4 needs imageio (pip install imageio)")


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


#: Default width of recorded frames (pixels; frames are shrunk to it, never enlarged).
DEFAULT_VIDEO_WIDTH = 320
#: A GIF keeps every k-th frame so that it plays at no more than this rate: GIF stores every
#: frame whole, so a 20 fps, 480-pixel MuJoCo episode of 500 frames took 12.6 MB.
GIF_MAX_FPS = 15.0


def prepare_frames(
    frames: Sequence[np.ndarray], fps: float, *, width: int, gif: bool
) -> tuple[list[np.ndarray], float]:
    """Shrinks frames to ``width`` pixels (aspect kept) and, for a GIF, thins them in time.

    A GIF keeps every k-th frame, k = ceil(fps / GIF_MAX_FPS), and plays at fps / k, so the
    video lasts as long as the episode.

    Returns:
        (the frames, their playback rate in frames per second).
    """
    from PIL import Image

    step = max(1, math.ceil(fps / GIF_MAX_FPS)) if gif else 1
    out = []
    for frame in frames[::step]:
        height, frame_width = frame.shape[:2]
        if frame_width > width:
            size = (width, max(1, round(height * width / frame_width)))
            frame = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
        out.append(frame)
    return out, fps / step


def write_video(frames: Sequence[np.ndarray], path: Path, fps: float) -> None:
    """Writes RGB frames as a GIF (imageio, else matplotlib's PillowWriter) or an MP4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        import imageio.v3 as iio

        iio.imwrite(path, np.stack(frames), fps=fps)
        return
    if _importable("imageio"):
        import imageio.v3 as iio

        iio.imwrite(path, np.stack(frames), duration=1000.0 / fps, loop=0)  # ms per frame
        return
    from matplotlib.animation import PillowWriter
    from matplotlib.figure import Figure

    height, width = frames[0].shape[:2]
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    image = ax.imshow(frames[0])
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi=100):
        for frame in frames:
            image.set_data(frame)
            writer.grab_frame()
