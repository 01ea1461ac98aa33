"""Which channels each layer keeps: the engine's structured masks, and the recipe masking the same ones."""
from __future__ import annotations

from typing import Any

import torch
from torch import fx

from compression.graph.channels.following import Reach
from compression.pruning import as_rows, compute_masks
from compression.recipe import PruneSpec


def channel_keeps(
    traced: fx.GraphModule,
    reaches: dict[str, Reach],
    skipped: dict[str, str],
    amount: float,
    norm: str,
    scope: str,
) -> dict[str, torch.Tensor]:
    """The engine's structured keep-rows of each layer in ``reaches``, none of them empty.

    A layer the mask would empty is skipped, and the rest masked again without it: with scope
    ``global`` the pool, and so the cut, changes, exactly as in ``compress`` with that layer's
    pruning switched off.
    """
    spec = PruneSpec(method="structured", amount=float(amount), norm=norm, scope=scope)
    while True:
        weights = {layer: traced.get_submodule(layer).weight.detach() for layer in reaches}
        masks = compute_masks(weights, {layer: spec for layer in weights})
        keeps = {layer: as_rows(mask.keep)[:, 0] for layer, mask in masks.items()}
        emptied = [layer for layer, keep in keeps.items() if not keep.any()]
        if not emptied:
            return keeps
        for layer in emptied:
            channels = keeps[layer].numel()
            skipped[layer] = (
                f"structured pruning at amount={amount} would remove all {channels} of its output "
                "channels; a layer keeps at least one"
            )
            del reaches[layer]


def masked_recipe(amount: float, norm: str, scope: str, skipped_weights: list[str]) -> dict[str, Any]:
    """The recipe whose masked model the smaller copy equals: the same structured pruning, off
    for each weight of a skipped layer."""
    recipe: dict[str, Any] = {"prune": {"method": "structured", "amount": float(amount), "norm": norm, "scope": scope}}
    if skipped_weights:
        recipe["overrides"] = {weight: {"prune": None} for weight in skipped_weights}
    return recipe
