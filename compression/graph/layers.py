"""The layers the graph rewrites change, and how often a traced graph uses each module."""
from __future__ import annotations

from collections import Counter

from torch import fx, nn

# Exact types: a subclass (QAT convolutions, for one) may compute something else in forward.
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def module_references(graph: fx.Graph) -> Counter[str]:
    """How often each module is called or has a tensor read (``conv.weight`` counts for ``conv``):
    a rewrite changes a module in place only where nothing else uses it.

    >>> traced = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    >>> module_references(traced.graph)["0"]
    1
    """
    counts: Counter[str] = Counter()
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            parts = node.target.split(".")
            counts.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return counts
