"""Module state with the float64 input-normalisation statistics at full precision.

RLlib's ``TorchRLModule.get_state``/``set_state`` cast float64 tensors to float32 on both sides,
which would round the running mean/std that checkpoints and the learner→EnvRunner weight sync
carry. The HATRPO actors and the critic mix this in before ``TorchRLModule``.
"""

from __future__ import annotations

from typing import Any

from rllib_hatrpo.core.running_mean_std import (
    check_state_layout,
    float64_buffers,
    load_float64_buffers,
)


class ExactNormalizerState:
    """``get_state``/``set_state`` that keep float64 buffers exact and refuse another layout."""

    def state_label(self) -> str:
        """How errors about a state of another layout name this module."""
        return type(self).__name__

    def get_state(self, *args, **kwargs) -> dict[str, Any]:
        """RLlib's ``get_state`` with the float64 normaliser statistics at full precision."""
        state = super().get_state(*args, **kwargs)
        state.update({k: v for k, v in float64_buffers(self).items() if k in state})
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """RLlib's ``set_state``, then the float64 normaliser statistics at full precision.

        Raises:
            ValueError: ``state`` was saved by a module of another layout (e.g. another
                ``input_normalization``); RLlib itself would load it silently.
        """
        check_state_layout(self, state, self.state_label())
        super().set_state(state)
        load_float64_buffers(self, state)
