"""Probes: measurements of a model's internals taken at each evaluation and stored in the curves.

``rank`` (the seed paper's section 4.3 / appendix D): the effective rank of each layer's hidden
states on one fixed evaluation batch, ``R_eff = exp(H(p))`` with ``p`` the singular values of the
(B*T, D) hidden-state matrix normalised to sum 1 and ``H`` the Shannon entropy. It ranges from 1
(one direction carries everything) to D (all directions equally used). A model opts in by defining
``probe_layers()`` (:class:`seqbench.api.LayerProbes`), the modules whose outputs are its per-layer
hidden states; a module that returns a tuple is read at its first element. Curve columns:
``rank_layer0``, ``rank_layer1``, ...
"""

from __future__ import annotations

import torch
from torch import nn

from seqbench.capabilities import layer_probes


def effective_rank(hidden: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of ``hidden`` viewed as (rows, D)."""
    matrix = hidden.detach().float().reshape(-1, hidden.shape[-1])  # (B*T, D)
    s = torch.linalg.svdvals(matrix)
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return float(torch.exp(entropy))


@torch.no_grad()
def layer_ranks(module: nn.Module, tokens: torch.Tensor) -> dict[str, float]:
    """``{"rank_layer{i}": R_eff}`` for each of ``module.probe_layers()`` on one forward of ``tokens``."""
    probes = layer_probes(module)
    if probes is None:
        raise ValueError(f"{type(module).__name__} has no probe_layers(): the rank probe cannot read its layers")
    layers = probes.probe_layers()
    captured: dict[int, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(
        lambda _m, _inp, out, i=i: captured.__setitem__(i, out[0] if isinstance(out, tuple) else out))
        for i, layer in enumerate(layers)]
    try:
        module(tokens)
    finally:
        for hook in hooks:
            hook.remove()
    return {f"rank_layer{i}": effective_rank(captured[i]) for i in sorted(captured)}
