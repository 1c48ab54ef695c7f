"""Rewards (Eq. 9-11): normalized power and latency terms, -1 on SLA violation."""

from __future__ import annotations

from typing import Literal

import numpy as np

RewardKind = Literal["power-latency", "power", "latency"]
REWARDS: tuple[RewardKind, ...] = ("power-latency", "power", "latency")
WEIGHTS: dict[str, tuple[float, float]] = {  # (alpha, beta)
    "power-latency": (0.5, 0.5),  # GreenWise: balanced
    "power": (1.0, 0.0),  # Power-Aware: low power only (the paper's text swaps the formula)
    "latency": (0.0, 1.0),  # Latency-Aware: low latency only
}
SLA_PENALTY = -1.0
INVALID_ACTION_PENALTY = -1.0  # choosing a masked action, e.g. the current host (paper's Random)


def reward(kind: str, power_w: float, latency_ms: float, p_max: float, l_max: float) -> float:
    """r_t for a service drawing `power_w` at `latency_ms` against the SLA `l_max`."""
    if latency_ms > l_max:
        return SLA_PENALTY
    alpha, beta = WEIGHTS[kind]
    return alpha * (1.0 - power_w / p_max) + beta * (1.0 - latency_ms / l_max)


def rewards(kind: str, power_w: np.ndarray, latency_ms: np.ndarray, p_max: float,
            l_max: np.ndarray) -> np.ndarray:
    """`reward` elementwise over arrays (the same arithmetic)."""
    alpha, beta = WEIGHTS[kind]
    return np.where(latency_ms > l_max, SLA_PENALTY,
                    alpha * (1.0 - power_w / p_max) + beta * (1.0 - latency_ms / l_max))
