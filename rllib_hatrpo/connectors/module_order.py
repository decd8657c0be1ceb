"""Puts the env-to-module batch into the order of the RLModule's modules.

RLlib 2.60's env-to-module pieces collect the agents that act next from a ``set``
(``MultiAgentEpisode.get_agents_to_act``), so the per-module batch, and with it the order
in which ``MultiRLModule.forward_exploration`` runs the modules and draws their actions from
torch's global RNG, follows ``PYTHONHASHSEED``. With this piece at the end of the pipeline
every module samples in the MultiRLModule's order (the env's agent order), so one seed gives
one run.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.utils.annotations import override


class ModuleOrder(ConnectorV2):
    """Re-keys a per-module batch in the order of ``rl_module.keys()``."""

    @override(ConnectorV2)
    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, **kwargs) -> Any:
        ordered = {mid: batch[mid] for mid in rl_module.keys() if mid in batch}
        ordered.update((key, value) for key, value in batch.items() if key not in ordered)
        return ordered
