"""Which layers a layer's output channels reach, followed through the traced graph."""
from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

from compression.graph.channels.links import Layout, Step, Through, Traced, link_to, rank, shared
from compression.graph.layers import CONV_TYPES


@dataclass(frozen=True)
class Consumer:
    """A layer reading the channels: ``group`` input columns per channel, ``steps`` on the way."""

    node: fx.Node
    group: int
    steps: tuple[Step, ...]


@dataclass
class Reach:
    """Everything one prunable layer's output channels reach, all of it mappable."""

    norms: list[fx.Node]
    consumers: list[Consumer]


def follow_layer(graph: Traced, layer_module: nn.Module, layer: str) -> Reach | str:
    """Where ``layer``'s output channels go, or why they cannot be removed."""
    if type(layer_module) not in (*CONV_TYPES, nn.Linear):
        return f"a {type(layer_module).__name__}: only exact Linear and Conv1d/2d/3d layers are followed"
    if isinstance(layer_module, CONV_TYPES) and layer_module.groups != 1:
        return f"a grouped convolution (groups={layer_module.groups}): its channels are tied in groups"
    calls = [node for node in graph.module.graph.nodes if node.op == "call_module" and node.target == layer]
    if not calls:
        return "not called as a module in the traced forward"
    problem = shared(graph, layer)
    if problem:
        return f"it {problem}"
    producer = calls[0]
    if isinstance(layer_module, nn.Linear):
        layout = Layout("flat") if rank(producer) == 2 else Layout("features")
    else:
        spatial = layer_module.weight.ndim - 2
        if rank(producer) == spatial + 1:
            return "runs on unbatched input: its channels are dimension 0"
        layout = Layout("channels", spatial)
    return _follow(graph, producer, layout, layer_module.weight.shape[0])


def _follow(graph: Traced, producer: fx.Node, layout: Layout, channels: int) -> Reach | str:
    reach = Reach([], [])
    pending: list[tuple[fx.Node, Layout, tuple[Step, ...]]] = [(producer, layout, ())]
    while pending:
        node, layout, steps = pending.pop()
        for user in node.users:
            link = link_to(graph, node, user, layout, channels)
            if isinstance(link, str):
                return link
            if isinstance(link, Through):
                reach.norms.extend([user] if link.norm else [])
                pending.append((user, link.layout, (*steps, link.step)))
            elif isinstance(link, int):
                reach.consumers.append(Consumer(user, link, steps))
    return reach
