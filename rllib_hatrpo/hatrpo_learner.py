"""Framework-independent part of the HATRPO learner: connector wiring and learner state.

State that is neither a module weight nor an optimizer (the agent-order RNG and the
allocator's state, e.g. the KKT share EMA) is added to ``get_state``/``set_state`` so that
checkpoints carry it: RLlib's ``Learner.get_state`` stores only modules, optimizers, metrics
and the weights sequence number.
"""

from __future__ import annotations

import random
from typing import Any

from ray.rllib.connectors.learner import AddOneTsToEpisodesAndTruncate
from ray.rllib.core.learner.learner import Learner
from ray.rllib.utils.annotations import override

from rllib_hatrpo.connectors.central_critic_gae import CentralCriticGAE
from rllib_hatrpo.core.allocation import KLAllocator, make_allocator
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.threads import cpus_of, limit_threads

#: Key of HATRPO's own entries in the learner state.
HATRPO_LEARNER_STATE = "hatrpo"


class HATRPOLearner(Learner):
    """Adds the central-critic GAE connector, the allocator and the order RNG."""

    @override(Learner)
    def build(self) -> None:
        # A remote learner has num_cpus_per_learner; the local one shares the driver's
        # process (num_cpus_for_main_process) with the local EnvRunner.
        limit_threads(
            cpus_of(self.config.num_cpus_per_learner)
            if self.config.num_learners
            else cpus_of(self.config.num_cpus_for_main_process)
        )
        super().build()
        if (
            self._learner_connector is not None
            and self.config.add_default_connectors_to_learner_pipeline
        ):
            # One bootstrap step per episode chunk (loss_mask False), then GAE with V(s).
            self._learner_connector.prepend(AddOneTsToEpisodesAndTruncate())
            self._learner_connector.append(
                CentralCriticGAE(gamma=self.config.gamma, lambda_=self.config.lambda_)
            )
        self.allocator: KLAllocator = make_allocator(
            self.config.kl_allocator, self.config.kl_allocator_config
        )
        # Seeded from the config and checkpointed; with several learners the torch learner
        # also broadcasts rank 0's state before every update, so all draw the same orders.
        self.order_rng = random.Random(self.config.seed)

    @property
    def actor_ids(self) -> list[str]:
        """The agents' module IDs in the env's agent order (the critic excluded)."""
        return [mid for mid in self.module.keys() if mid != SHARED_CRITIC_ID]

    @property
    def total_kl_budget(self) -> float:
        """δ_total: the configured joint budget, or n · kl_threshold."""
        return self.config.get_total_kl_budget(len(self.actor_ids))

    @override(Learner)
    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(HATRPO_LEARNER_STATE, components, not_components):
            state[HATRPO_LEARNER_STATE] = {
                "order_rng": self.order_rng.getstate(),
                "allocator": self.allocator.get_state(),
            }
        return state

    @override(Learner)
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        if HATRPO_LEARNER_STATE in state:
            own = state[HATRPO_LEARNER_STATE]
            self.order_rng.setstate(_as_rng_state(own["order_rng"]))
            self.allocator.set_state(own["allocator"])


def _as_rng_state(state: Any) -> tuple:
    """random.Random.setstate needs tuples; serialisers may hand back lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
