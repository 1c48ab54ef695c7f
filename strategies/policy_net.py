"""A trained policy's network in numpy, for the many decisions of a tick: the same layers as
stable-baselines3's MlpPolicy (flattened observation -> the policy net's linear layers and
activations -> the action net's logits), read from the model's parameters at each tick (online
training updates them between ticks).

The first layer is linear, so its output for an observation that differs from another in a few
entries is the other's plus those entries' columns: a tick's observations differ from the ones
encoded at its start only in the hosts the moves decided so far touched. Logits are computed
in other orders than torch's, so an action may differ from the model's own `predict` only where
two actions' logits tie to float32 precision (tests/test_rl.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from orchestrator.errors import BadInput

ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: np.tanh, nn.ReLU: lambda x: np.maximum(x, 0.0)}


def _weights(linear: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(W [in, out], b [out]) of a linear layer, float32 as the model keeps them."""
    assert isinstance(linear, nn.Linear)
    return linear.weight.detach().numpy().T, linear.bias.detach().numpy()


class PolicyNet:
    """The policy network of `model` (an MlpPolicy of MaskablePPO or A2C); `refresh` reads its
    parameters (at the start of each tick)."""

    def __init__(self, model: BaseAlgorithm) -> None:
        policy = model.policy
        layers = list(policy.mlp_extractor.policy_net)
        supported = (isinstance(policy.features_extractor, FlattenExtractor)
                     and len(layers) > 0 and len(layers) % 2 == 0
                     and all(isinstance(m, nn.Linear) for m in layers[0::2])
                     and all(type(m) in ACTIVATIONS for m in layers[1::2]))
        if not supported:
            raise BadInput("the model's policy network is not an MlpPolicy of linear layers "
                           "with Tanh or ReLU activations; train it with `greenwise-mc train`")
        self.policy = policy
        self.activations = [ACTIVATIONS[type(m)] for m in layers[1::2]]
        self.refresh()

    def refresh(self) -> None:
        net = self.policy.mlp_extractor.policy_net
        self.w1, self.b1 = _weights(net[0])  # float32, as the model keeps it
        self.columns = self.w1.astype(np.float64)  # the first layer, per observation entry
        self.rest = list(map(_weights, list(net)[2::2]))
        self.out = _weights(self.policy.action_net)

    def logits(self, first: np.ndarray) -> np.ndarray:
        """The action logits from the first layer's pre-activations (then float32, as the
        model computes)."""
        h = self.activations[0](first.astype(np.float32))
        for (w, b), activation in zip(self.rest, self.activations[1:], strict=True):
            h = activation(h @ w + b)
        w, b = self.out
        return h @ w + b
