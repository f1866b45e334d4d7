"""RLCF's optional momentum buffer: the only state a method keeps across images.

After each image: ema <- m * ema + (1 - m) * tuned. Every ``every`` images, the point tuning
starts from becomes the EMA. The shared model itself is always restored to its original weights
after a request; the reset point is loaded at the start of each request that uses the buffer.
States are scoped by a caller-given key (tenant + label set in the service) and bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

MAX_STATES = 32


@dataclass
class MomentumState:
    ema: dict[str, torch.Tensor]
    reset_point: dict[str, torch.Tensor] | None = None
    images: int = 0


class MomentumBank:
    def __init__(self, max_states: int = MAX_STATES) -> None:
        self.max_states = max_states
        self._states: OrderedDict[str, MomentumState] = OrderedDict()

    def get(self, key: str) -> MomentumState | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    @torch.no_grad()
    def update(
        self, key: str, start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
        momentum: float, every: int,
    ) -> MomentumState:
        state = self._states.get(key)
        if state is None:
            state = MomentumState(ema={name: value.clone() for name, value in start.items()})
            self._states[key] = state
            while len(self._states) > self.max_states:
                self._states.popitem(last=False)
        for name, value in tuned.items():
            state.ema[name].mul_(momentum).add_(value, alpha=1.0 - momentum)
        state.images += 1
        if state.images % every == 0:
            state.reset_point = {name: value.clone() for name, value in state.ema.items()}
        return state
