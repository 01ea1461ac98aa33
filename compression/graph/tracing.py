"""torch.fx tracing for the rewrites that follow a model's graph (fusion, channel removal).

One place says why a module cannot be traced, so both rewrites refuse it in the same words.
"""
from __future__ import annotations

import torch
from torch import fx, nn

from compression.errors import CompressionError
from compression.model import ForeignRuntimeModule

# What symbolic tracing raises on code it cannot follow.
TRACE_ERRORS = (ValueError, TypeError, RuntimeError, AttributeError, NotImplementedError, AssertionError, KeyError)


def traced(module: nn.Module, name: str, purpose: str) -> fx.GraphModule:
    """``module`` traced by torch.fx, or a CompressionError saying why ``purpose`` cannot use it."""
    if isinstance(module, torch.jit.ScriptModule):
        raise CompressionError(
            f"{name} is a TorchScript module, which torch.fx cannot trace; {purpose} needs an "
            "fx-traceable torch.nn.Module. Load the weights into the model's Python class."
        )
    if isinstance(module, ForeignRuntimeModule):
        raise CompressionError(
            f"{name} is an imported ONNX graph, run by {module.runtime}: {purpose} rewrites torch "
            "layers, which it has none of. Prune and quantize its weights (they are written back "
            "into the ONNX file), or load the model's PyTorch version for this."
        )
    try:
        return fx.symbolic_trace(module)
    except TRACE_ERRORS as error:
        raise CompressionError(
            f"{name} ({type(module).__name__}) cannot be traced by torch.fx.symbolic_trace "
            f"({type(error).__name__}: {error}); {purpose} follows the traced graph and needs an "
            "fx-traceable module. Python control flow on tensor values (if x.sum() > 0) is the "
            "usual cause: express it with tensor ops (torch.where)."
        ) from error
