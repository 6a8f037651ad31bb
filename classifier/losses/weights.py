"""Class statistics from the training counts: prior, inverse-frequency and effective-number weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _counts(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if (counts <= 0).any():
        raise ValueError(f"every class needs at least one training sample, got counts {counts.tolist()}")
    return counts


def class_prior(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    counts = _counts(class_counts)
    return (counts / counts.sum()).float()


def inverse_frequency_weights(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """w_j = K * (1/n_j) / sum_k (1/n_k): weights proportional to 1/n_j that sum to the number of classes K."""
    inv = 1.0 / _counts(class_counts)
    return (inv * len(inv) / inv.sum()).float()


def effective_number_weights(class_counts: Sequence[int] | torch.Tensor, *, beta: float = 0.9999) -> torch.Tensor:
    """Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of Samples":
    E_n = (1 - beta^n) / (1 - beta); w_j proportional to 1/E_{n_j}, normalised to sum to K.
    beta -> 0 gives uniform weights; beta -> 1 gives inverse frequency."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta={beta} must be in [0, 1)")
    counts = _counts(class_counts)
    effective = (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)) / (1.0 - beta)
    inv = 1.0 / effective
    return (inv * len(inv) / inv.sum()).float()
