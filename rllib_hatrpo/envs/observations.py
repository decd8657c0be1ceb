"""Observation and action spaces of `PettingZooEnv`: vectors, images and the global state.

- **Vectors** (every `Box` that is not an image): float32, flattened to 1-D (bounds cast, ±inf
  kept), as HATRPO's MLP networks read them.
- **Images**: a `Box` of rank 3, read as (height, width, channels), keeps its shape, and the
  networks get a convolutional encoder (`rllib_hatrpo.torch.cnn`). uint8 images stay uint8 all
  the way to the learner (4× less memory than float32; the networks scale them to [0, 1]);
  images of any other dtype become float32 and reach the networks unscaled.
- **Concatenated observations** (`global_state="concat_obs"`): images that share height and
  width are stacked along the channel axis, in agent order, as SuperSuit's `frame_stack_v1`
  stacks frames; they stay uint8 if every agent's are. Anything else (vectors, or images of
  different sizes) is flattened to float32 and concatenated, as for vectors.

Examples:
    >>> import gymnasium as gym, numpy as np
    >>> image = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    >>> observation_space("piston_0", image).shape, observation_space("piston_0", image).dtype
    ((32, 32, 3), dtype('uint8'))
    >>> concat_space([image, image]).shape
    (32, 32, 6)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

logger = logging.getLogger(__name__)

#: Rank of an image observation: (height, width, channels).
IMAGE_RANK = 3


def is_image(space: gym.Space) -> bool:
    """Whether `space` is an image, a `Box` of rank 3 (height, width, channels)."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == IMAGE_RANK


def float32_box(space: gym.spaces.Box) -> gym.spaces.Box:
    """The same `Box`, flattened to 1-D, with float32 bounds (±inf kept)."""
    return gym.spaces.Box(
        low=space.low.astype(np.float32).reshape(-1),
        high=space.high.astype(np.float32).reshape(-1),
        dtype=np.float32,
    )


def image_box(space: gym.spaces.Box) -> gym.spaces.Box:
    """An image `Box` with its shape kept: uint8 stays uint8, any other dtype becomes float32."""
    dtype = np.uint8 if space.dtype == np.uint8 else np.float32
    return gym.spaces.Box(low=space.low.astype(dtype), high=space.high.astype(dtype), dtype=dtype)


def observation_space(agent_id: str, space: gym.Space) -> gym.spaces.Box:
    """Checks that `space` is a `Box`; returns it as the wrapper's observation space.

    Images (rank 3) keep their shape (`image_box`); every other `Box` becomes a float32 1-D
    `Box` (`float32_box`), and its observations are reshaped the same way.

    Raises:
        ValueError: `space` is not a `Box`.
    """
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(
            f"Agent {agent_id!r} has observation space {space}; PettingZooEnv supports only Box "
            "observation spaces (flatten or one-hot encode others, e.g. with SuperSuit)."
        )
    if is_image(space):
        return image_box(space)
    if len(space.shape) != 1:
        logger.info("Agent %r: observation space %s is flattened to 1-D.", agent_id, space)
    return float32_box(space)


def state_space_of(space: gym.Space | None, probe: np.ndarray, env_name: str) -> gym.spaces.Box:
    """The wrapper's space of `env.state()`, given the env's `state_space` and one state.

    An image state (rank 3) keeps its shape and, if uint8, its dtype; any other state is a
    float32 1-D `Box`. Without a `Box` `state_space`, the bounds are ±inf (0..255 for a uint8
    image).

    Args:
        space: The env's `state_space`, or None.
        probe: One value of `env.state()`, as the env returned it.
        env_name: The env's name, for the error.

    Raises:
        ValueError: `probe` does not have as many entries as `space`.
    """
    if not isinstance(space, gym.spaces.Box):
        if probe.ndim == IMAGE_RANK and probe.dtype == np.uint8:
            return gym.spaces.Box(0, 255, shape=probe.shape, dtype=np.uint8)
        if probe.ndim == IMAGE_RANK:
            return gym.spaces.Box(-np.inf, np.inf, shape=probe.shape, dtype=np.float32)
        return gym.spaces.Box(-np.inf, np.inf, shape=(probe.size,), dtype=np.float32)
    if int(np.prod(space.shape)) != probe.size:
        raise ValueError(
            f"{env_name}.state() has {probe.size} entries, but its state_space is {space}."
        )
    return image_box(space) if is_image(space) else float32_box(space)


def convert(value: object, space: gym.spaces.Box) -> np.ndarray:
    """`value` as an array of `space` (a fresh copy): its dtype, reshaped to its shape."""
    return np.array(value, dtype=space.dtype).reshape(space.shape)


def stacks_channels(spaces: Sequence[gym.spaces.Box]) -> bool:
    """Whether concatenated observations of `spaces` stack along the channel axis."""
    return all(is_image(s) and s.shape[:2] == spaces[0].shape[:2] for s in spaces)


def concat_space(spaces: Sequence[gym.spaces.Box]) -> gym.spaces.Box:
    """The space of the agents' concatenated observations (module docstring), in their order."""
    if stacks_channels(spaces):
        dtype = np.uint8 if all(s.dtype == np.uint8 for s in spaces) else np.float32
        return gym.spaces.Box(
            low=np.concatenate([s.low.astype(dtype) for s in spaces], axis=-1),
            high=np.concatenate([s.high.astype(dtype) for s in spaces], axis=-1),
            dtype=dtype,
        )
    if any(is_image(s) for s in spaces):
        logger.warning(
            "global_state='concat_obs' over observations %s: images of different sizes (or "
            "mixed with vectors) are flattened into one float32 vector; resize them to one "
            "height and width (SuperSuit resize_v1) to stack them as channels.",
            [s.shape for s in spaces],
        )
    return gym.spaces.Box(
        low=np.concatenate([s.low.astype(np.float32).reshape(-1) for s in spaces]),
        high=np.concatenate([s.high.astype(np.float32).reshape(-1) for s in spaces]),
        dtype=np.float32,
    )


def concat(observations: Sequence[np.ndarray], space: gym.spaces.Box) -> np.ndarray:
    """The concatenated observations, in `space` (from `concat_space`)."""
    if len(space.shape) == IMAGE_RANK:
        return np.concatenate(observations, axis=-1, dtype=space.dtype)
    if all(o.ndim == 1 and o.dtype == np.float32 for o in observations):
        return np.concatenate(observations)
    return np.concatenate([o.astype(np.float32).reshape(-1) for o in observations])


def convert_action_space(agent_id: str, space: gym.Space) -> gym.Space:
    """Returns `Box` action spaces as float32 and `Discrete`/`MultiDiscrete` unchanged.

    Raises:
        ValueError: Any other space (HATRPO's actors have Gaussian and categorical heads only).
    """
    if isinstance(space, gym.spaces.Box):
        return gym.spaces.Box(
            low=space.low.astype(np.float32), high=space.high.astype(np.float32), dtype=np.float32
        )
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return space
    raise ValueError(
        f"Agent {agent_id!r} has action space {space}; PettingZooEnv supports Box, Discrete "
        "and MultiDiscrete action spaces."
    )
