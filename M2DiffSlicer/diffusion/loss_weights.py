"""LossWeights: the weights of the M2Diff training loss, kept free of torch so that TrainConfig can read them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..options import reject_unknown_fields


@dataclasses.dataclass
class LossWeights:
    """Weights of the multi-task loss; the defaults are the paper's eq. 9 (lambda1 = 0.4, lambda2 = 0.2, no VLB)."""

    task: float = 0.4  # lambda1, on each decoder's MSE to the SD-PET
    consistency: float = 0.2  # lambda2, on MSE(x0_pet, x0_mri)
    # On each decoder's VLB term (bits per dim); not in the paper. 1 is IDDPM's hybrid loss (lambda = 0.001 x T):
    # it trains the learned variance that ancestral sampling uses, and its gradients reach the shared network.
    vlb: float = 0.0
    output: float = 0.0  # on MSE(x0, output): the decoders' mean that sampling returns; not in the paper

    def to_dict(self) -> dict[str, float]:
        """JSON-ready copy."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> LossWeights:
        """Inverse of to_dict; unknown keys raise a ValueError."""
        reject_unknown_fields(cls, values)
        return cls(**{key: float(value) for key, value in values.items()})
