"""Env settings checked before anything is built: MaMuJoCo's robot and joint partition.

MaMuJoCo (gymnasium-robotics ``mamujoco_v1``) reports an unknown robot or partition only when
the env is built, in the EnvRunners, as ``NotImplementedError: Custom env not implemented!`` or
``UNKNOWN partitioning config``. :func:`check_mamujoco` asks gymnasium-robotics' own body
graphs (``obsk.get_parts_and_edges``, pure Python, no MuJoCo model) first, and lists the robots
and partitions it knows (read from that function's source, so that they follow the installed
version)::

    check_mamujoco({"scenario": "HalfChetah"}, {"scenario": "options"})  # SettingError

No Ray import.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Mapping
from typing import Any

from rllib_hatrpo.experiments.spec import SettingError

#: MaMuJoCoEnv's defaults of the two settings checked (``rllib_hatrpo.envs.mamujoco``).
DEFAULT_SCENARIO, DEFAULT_AGENT_CONF = "HalfCheetah", "2x3"
#: Robots whose partition is any ``<agents>x<segments per agent>``.
_ANY_NXM = ("ManySegmentAnt", "ManySegmentSwimmer")


@functools.cache
def known_partitions() -> dict[str, tuple[str, ...]]:
    """Robot -> the partitions gymnasium-robotics' ``get_parts_and_edges`` names for it.

    ``ManySegmentAnt`` and ``ManySegmentSwimmer`` take any ``NxM`` and map to ``("NxM",)``.
    Empty if gymnasium-robotics is not installed (nothing is then checked).
    """
    try:
        from gymnasium_robotics.envs.multiagent_mujoco import obsk
    except ImportError:
        return {}
    table: dict[str, list[str]] = {}
    robots: list[str] = []
    for line in inspect.getsource(obsk.get_parts_and_edges).splitlines():
        labels = re.search(r"label in \[([^\]]*)\]", line)
        if labels:
            robots = re.findall(r"\"([^\"]+)\"", labels.group(1))
            for robot in robots:
                table.setdefault(robot, [])
            continue
        partition = re.search(r"partitioning == \"([^\"]+)\"", line)
        if partition:
            for robot in robots:
                table[robot].append(partition.group(1))
    for robot in _ANY_NXM:
        if robot in table:
            table[robot] = ["NxM"]
    return {robot: tuple(partitions) for robot, partitions in table.items()}


def _accepted(scenario: str, agent_conf: Any) -> bool:
    """Whether gymnasium-robotics builds the body graph of ``scenario`` split as ``agent_conf``."""
    from gymnasium_robotics.envs.multiagent_mujoco import obsk

    try:
        obsk.get_parts_and_edges(scenario, agent_conf)
    except Exception:  # it raises a bare Exception (or an AssertionError) for both
        return False
    return True


def check_mamujoco(env_config: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Checks ``scenario`` and ``agent_conf`` of a MaMuJoCo env config.

    Args:
        env_config: The env config (MaMuJoCoEnv's defaults fill what it leaves out).
        sources: Config key -> the setting it came from (``"scenario"``, ``"agent_conf"`` or
            ``"env_config"``); a key not in it is the default, reported as its own setting.

    Raises:
        SettingError: An unknown robot (lists the robots) or a partition that robot does not
            have (lists its partitions).
    """
    table = known_partitions()
    if not table:
        return
    kwargs = env_config.get("env_kwargs") or {}
    scenario = env_config.get("scenario", DEFAULT_SCENARIO)
    if scenario not in table:
        raise SettingError(
            sources.get("scenario", "scenario"),
            f"unknown MaMuJoCo robot {scenario!r}; choose one of {', '.join(table)}",
        )
    if isinstance(kwargs, Mapping) and kwargs.get("agent_factorization") is not None:
        return  # a partition of the user's own: gymnasium-robotics checks it
    agent_conf = env_config.get("agent_conf", DEFAULT_AGENT_CONF)
    if not _accepted(scenario, agent_conf):
        partitions = ", ".join(table[scenario]) or "none"
        raise SettingError(
            sources.get("agent_conf", "agent_conf"),
            f"MaMuJoCo {scenario} has no partition {agent_conf!r}; choose one of {partitions}",
        )
