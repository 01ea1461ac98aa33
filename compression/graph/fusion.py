"""Conv+BatchNorm folding: an inference copy of a model with each BatchNorm merged into its layer.

In eval mode a BatchNorm is a fixed per-channel affine map, ``(x - mean) / sqrt(var + eps) *
gamma + beta``. When it reads a convolution's output that nothing else reads, the map folds
into that convolution's weight and bias: one op less per pair at inference, and the same
outputs up to float rounding. Linear -> BatchNorm1d pairs fold the same way.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
>>> result = fuse_conv_bn(model)
>>> result.pairs
(('0', '1'),)
>>> x = torch.randn(2, 3, 8, 8)
>>> torch.allclose(result.module(x), model(x), atol=1e-6)
True
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from compression.display_text import DisplayText
from compression.evaluation import evaluate, max_output_difference
from compression.graph.layers import BATCHNORM_TYPES, CONV_TYPES, module_references
from compression.graph.tracing import traced as fx_traced
from compression.model import LoadedModel, named_module


@dataclass(frozen=True, eq=False)
class FusionResult:
    """The folded copy of a model: ``module`` to run, ``pairs`` of (layer, batchnorm) names folded."""

    module: nn.Module
    pairs: tuple[tuple[str, str], ...]

    def as_loaded(self, original: LoadedModel) -> LoadedModel:
        """``original`` with the folded module: same evaluation data and example inputs,
        compressible layers listed anew (folded convolutions gain a bias), and an empty cache."""
        return original.with_module(self.module, DisplayText(
            "batchnorm_folded", f"{len(self.pairs)} BatchNorm layers folded into the layer before", count=len(self.pairs)))


@dataclass(frozen=True)
class FusionCheck:
    """What folding changed, measured: stored values, and on the evaluation data (None without
    it) the largest output change and the metric before and after, both against the original."""

    values_before: int
    values_after: int
    max_output_difference: float | None
    value_before: float | None
    value_after: float | None


def check_fusion(model: LoadedModel, result: FusionResult) -> FusionCheck:
    """Measure ``result`` (of ``fuse_conv_bn(model)``) against ``model``."""
    def stored_values(module: nn.Module) -> int:
        return sum(t.numel() for t in module.state_dict().values())

    difference = before = after = None
    if model.evaluation is not None:
        difference = max_output_difference(model, result.module)
        before, after = evaluate(model).value, evaluate(model, result.module).value
    return FusionCheck(stored_values(model.module), stored_values(result.module), difference, before, after)


def fuse_conv_bn(model: LoadedModel | nn.Module) -> FusionResult:
    """Fold every BatchNorm that reads only a Conv1d/2d/3d's (or a Linear's) output into it.

    ``model`` is not changed. The copy is traced by ``torch.fx`` and folded in eval mode,
    whatever mode ``model`` is in: BatchNorm's running statistics are folded, as inference
    uses them. A pair is folded only where it is exact: the layer's output goes to the
    BatchNorm alone and each module is called once. Linear -> BatchNorm1d pairs also need the
    model's example inputs, to see that the BatchNorm normalises the Linear's output features.
    The folded module is a ``torch.fx.GraphModule``; without any pair it is a plain copy.
    """
    name, module, example_inputs = named_module(model)
    module = copy.deepcopy(module).eval()  # the traced module shares its submodules with this copy
    traced = fx_traced(module, name, "Conv+BatchNorm fusion")
    candidates = _candidate_pairs(traced)
    if example_inputs and candidates:
        with torch.no_grad():
            ShapeProp(traced).propagate(*example_inputs)  # records each node's output shape
    pairs = [(layer, norm) for layer, norm in candidates if _normalises_channels(traced, layer, norm)]
    if not pairs:
        return FusionResult(module, ())
    for layer, norm in pairs:
        _fold(traced, layer, norm)
    traced.graph.lint()
    traced.recompile()
    return FusionResult(traced.eval(), tuple((layer.target, norm.target) for layer, norm in pairs))


def _candidate_pairs(traced: fx.GraphModule) -> list[tuple[fx.Node, fx.Node]]:
    """(layer, batchnorm) call nodes where the BatchNorm alone reads the layer's output."""
    references = module_references(traced.graph)
    pairs = []
    for norm_node in traced.graph.nodes:
        if norm_node.op != "call_module" or norm_node.kwargs or len(norm_node.args) != 1:
            continue
        layer_node = norm_node.args[0]
        if not isinstance(layer_node, fx.Node) or layer_node.op != "call_module" or len(layer_node.users) != 1:
            continue
        layer = traced.get_submodule(layer_node.target)
        norm = traced.get_submodule(norm_node.target)
        matches = type(norm) in BATCHNORM_TYPES and (
            type(layer) in CONV_TYPES or (type(layer) is nn.Linear and type(norm) is nn.BatchNorm1d)
        )
        # A BatchNorm without running statistics normalises with the batch's, even in eval mode.
        if (
            matches
            and norm.running_mean is not None
            and norm.running_var is not None
            and references[layer_node.target] == references[norm_node.target] == 1
        ):
            pairs.append((layer_node, norm_node))
    return pairs


def _normalises_channels(traced: fx.GraphModule, layer_node: fx.Node, norm_node: fx.Node) -> bool:
    """Whether the BatchNorm's channel dimension (1) is the layer's output-feature dimension.

    A convolution's is, for batched input (BatchNorm2d/3d refuse unbatched input). A Linear's
    output features are its last dimension: dimension 1 only for 2-D output, which only the
    recorded shapes tell; a single-feature BatchNorm scales every feature alike.
    """
    layer = traced.get_submodule(layer_node.target)
    shape = layer_node.meta.get("tensor_meta")
    if isinstance(layer, nn.Linear):
        norm = traced.get_submodule(norm_node.target)
        return shape is not None and (len(shape.shape) == 2 or norm.num_features == 1)
    return shape is None or len(shape.shape) == layer.weight.ndim


def _fold(traced: fx.GraphModule, layer_node: fx.Node, norm_node: fx.Node) -> None:
    layer = traced.get_submodule(layer_node.target)
    norm = traced.get_submodule(norm_node.target)
    fuse = fuse_linear_bn_eval if isinstance(layer, nn.Linear) else fuse_conv_bn_eval
    traced.set_submodule(layer_node.target, fuse(layer, norm))  # a new layer; the old one is left alone
    norm_node.replace_all_uses_with(layer_node)
    traced.graph.erase_node(norm_node)
    traced.delete_submodule(norm_node.target)
