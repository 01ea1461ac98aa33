"""The stack of blocks a model runs one after the other, and running the model from block k on.

A BERT encoder's ``BertLayer``s, a Llama's ``LlamaDecoderLayer``s, the children of an
``nn.Sequential``: each block takes the hidden states the block before it returned. When only
weights inside block k change, blocks 0 … k−1 see the same inputs and give the same outputs as
before; their outputs, captured once on the base model, stand in for them, and only block k
and what follows it run. Everything outside the stack (embeddings, masks, rotary tables,
pooling, the head) runs as usual, so the model's own ``forward`` is unchanged.

The stack is trusted only where the capture pass shows it sequential: every block called once
per forward, in order, each given (as the very same tensor) the hidden states the previous one
returned. Anything else keeps the full forward (``BlockReplay.usable`` is False).

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
>>> stack = find_block_stack(model, ["0.weight", "2.weight"])
>>> stack.path, len(stack.blocks), stack.block_of("2.weight")
('', 3, 2)
>>> replay = BlockReplay(stack, budget_bytes=2**20)
>>> x = torch.randn(5, 4)
>>> with replay.capturing():
...     y = model(x)
>>> replay.usable, replay.nbytes
(True, 200)
>>> with torch.no_grad():
...     _ = model[2].weight.mul_(2)  # what a compression of block 2 would change
>>> with replay.starting_at(2):
...     torch.equal(model(x), model[2](model[1](model[0](x))))
True
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class BlockStack:
    """A container (``nn.ModuleList`` or ``nn.Sequential``) at ``path`` whose children run in turn."""

    path: str
    container: nn.ModuleList | nn.Sequential
    blocks: tuple[nn.Module, ...]

    def block_of(self, name: str) -> int | None:
        """The index of the block holding parameter or buffer ``name``, or None outside the stack."""
        prefix = f"{self.path}." if self.path else ""
        if not name.startswith(prefix):
            return None
        index, _, rest = name[len(prefix):].partition(".")
        return int(index) if index.isdigit() and rest and int(index) < len(self.blocks) else None


def find_block_stack(module: nn.Module, weights: Sequence[str]) -> BlockStack | None:
    """The stack that holds most of ``weights`` (parameter names): a ModuleList of two or more
    blocks of one class, or an nn.Sequential of two or more children; None when no such
    container holds any of them. The outermost wins a tie (a stack of blocks, not a list of
    heads inside one block)."""
    best: tuple[int, BlockStack] | None = None
    for path, container in module.named_modules():
        children = tuple(container.children())
        if len(children) < 2:
            continue
        same_class = isinstance(container, nn.ModuleList) and len({type(child) for child in children}) == 1
        if not (same_class or type(container) is nn.Sequential):
            continue
        stack = BlockStack(path, container, children)
        held = sum(stack.block_of(name) is not None for name in weights)
        if held and (best is None or held > best[0]):
            best = (held, stack)
    return None if best is None else best[1]


def _hidden_states(args: tuple, kwargs: dict[str, Any]) -> object:
    return args[0] if args else kwargs.get("hidden_states")


def _first_tensor(output: object) -> object:
    if isinstance(output, (tuple, list)) and output:
        return output[0]
    return output


def _nbytes(output: object) -> int:
    if isinstance(output, torch.Tensor):
        return output.numel() * output.element_size()
    if isinstance(output, (tuple, list)):
        return sum(_nbytes(item) for item in output)
    return 0


def _cloned(output: object) -> object:
    """A copy of a block's output, tensors cloned: the code after a block may write into what it got."""
    if isinstance(output, torch.Tensor):
        return output.clone()
    if isinstance(output, (tuple, list)):
        return type(output)(_cloned(item) for item in output)
    return output


class _CapturedBlock(nn.Module):
    """Stands in for block ``index``: returns what it returned on the base model, for this part."""

    def __init__(self, replay: BlockReplay, index: int) -> None:
        super().__init__()
        self.replay = replay
        self.index = index

    def forward(self, *args: Any, **kwargs: Any) -> object:
        return _cloned(self.replay.outputs[self.index][self.replay.part])


class BlockReplay:
    """Each block's output for each part of the data (one forward call per part), captured once.

    ``part`` says which part the next forward call is. The outputs are one hidden-state tensor
    per block boundary and part (a block's inputs are the previous block's output: nothing is
    kept per layer); capture stops keeping them past ``budget_bytes``. ``usable`` says whether
    the capture can stand in for the blocks: the stack ran as a sequence, once per part, within
    the budget.
    """

    def __init__(self, stack: BlockStack, budget_bytes: int) -> None:
        self.stack = stack
        self.budget_bytes = budget_bytes
        self.outputs: list[list[object]] = [[] for _ in stack.blocks]
        self.part = 0
        self.nbytes = 0
        self.sequential = True

    @property
    def usable(self) -> bool:
        counts = {len(outputs) for outputs in self.outputs}
        return self.sequential and self.nbytes <= self.budget_bytes and len(counts) == 1 and counts != {0}

    @contextmanager
    def capturing(self) -> Iterator[None]:
        """Record each block's output on every forward call made inside, one call per part, and
        check that the stack runs as a sequence (``sequential``)."""
        calls: list[int] = []
        previous: list[object] = [None]

        def before(index: int):
            def hook(block: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
                in_order = (calls[-1] + 1 if calls and calls[-1] + 1 < len(self.stack.blocks) else 0) == index
                if not in_order or (index > 0 and _hidden_states(args, kwargs) is not previous[0]):
                    self.sequential = False
                calls.append(index)
            return hook

        def after(index: int):
            def hook(block: nn.Module, args: tuple, output: object) -> None:
                previous[0] = _first_tensor(output)
                self.nbytes += _nbytes(output)
                if self.nbytes <= self.budget_bytes:
                    self.outputs[index].append(output)
                else:
                    self.outputs = [[] for _ in self.stack.blocks]  # over budget: nothing kept
            return hook

        handles = []
        for index, block in enumerate(self.stack.blocks):
            handles.append(block.register_forward_pre_hook(before(index), with_kwargs=True))
            handles.append(block.register_forward_hook(after(index)))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        if calls and calls[-1] != len(self.stack.blocks) - 1:
            self.sequential = False

    @contextmanager
    def starting_at(self, start: int) -> Iterator[None]:
        """Blocks before ``start`` give their captured outputs instead of running (for the part
        ``part`` names); the container is restored on the way out."""
        container = self.stack.container
        for index in range(start):
            container[index] = _CapturedBlock(self, index)
        try:
            yield
        finally:
            for index in range(start):
                container[index] = self.stack.blocks[index]
