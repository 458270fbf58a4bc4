"""Small building blocks shared by encoder and decoder parts."""

from __future__ import annotations

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by its config name."""
    return _ACTIVATIONS[name]()


def mlp(in_features: int, hidden_dims: tuple[int, ...], out_features: int, act: str) -> nn.Sequential:
    """Linear layers with an activation between them and none after the last (it outputs parameters)."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), activation(act)]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def halved_sides(side: int, n: int) -> list[int]:
    """Spatial sides after each of ``n`` stride-2, padding-1, 3x3 convolutions: 28 -> 14 -> 7 -> 4."""
    sides = [side]
    for _ in range(n):
        sides.append((sides[-1] - 1) // 2 + 1)
    return sides
