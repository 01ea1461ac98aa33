"""The model's score with one layer compressed, paying only for what that layer can change.

A sensitivity point compresses one layer and scores the model. Done plainly (``compress`` then
``evaluate``) it deep-copies the whole model, lists every other tensor in the packed file, and
runs the whole model over evaluation data padded to its longest row. ``LayerScorer`` gives the
same figures, up to float rounding (bench/sensitivity_scan.py measures both ways):

- ``compress`` sees the one tensor alone; the packed file's sizes are the whole model's, the
  other tensors counted raw from their headers, as ``compress(model, recipe)`` counts them;
- the compressed weight goes into one shared copy of the model, whose other tensors are the
  base model's own (never written), and the base weight goes back after;
- text rows run in batches of similar length (``length_buckets``), where the base model's
  scores are the same that way;
- blocks of a sequential stack before the layer's own give the outputs captured on the base
  model (``graph.block_stack``): only the layer's block and what follows it run;
- a weight that comes out of compression unchanged is the base model: its score is the baseline.

TorchScript and ONNX modules, recipes that calibrate (their methods look at every layer's
inputs), and weights tied under another name are left to ``compress`` and ``evaluate``
(``handles`` says which).

>>> from compression.io.loading import load_model
>>> from compression.recipe import Recipe
>>> model = load_model("mlp")
>>> scorer = LayerScorer(model)
>>> recipe = Recipe.from_dict({"quantize": {"bits": 2}, "exclude": ["fc1.weight", "fc3.weight"]})
>>> point = scorer.measure("fc2.weight", recipe)
>>> point.report.layers[0].name, point.packed.file_bytes == compress(model, recipe).report.file_bytes
('fc2.weight', True)
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

import torch
from torch import nn

from compression.compress import CompressionReport, compress, tied_names
from compression.evaluation import Evaluation, evaluation_subset, require_evaluation, summarize
from compression.graph.block_stack import BlockReplay, find_block_stack
from compression.metrics import Summary, metric
from compression.model import ForeignRuntimeModule, LoadedModel
from compression.packing import PackedModel
from compression.recipe import Recipe
from compression.workflows.length_buckets import Buckets, bucketed, in_batches, same_summary

# Block outputs kept for the replay, at most (MiniLM: 6 blocks × 8,512 tokens × 384 floats = 78 MB).
REPLAY_BUDGET_BYTES = 512 * 2**20


@dataclass(frozen=True, eq=False)
class LayerPoint:
    """One point: the compression of the layer alone, the whole model's packed file as
    ``compress(model, recipe)`` makes it, and the model's score."""

    report: CompressionReport
    packed: PackedModel
    evaluation: Evaluation


def _tensor_alone(model: LoadedModel, name: str, tensor: torch.Tensor) -> LoadedModel:
    """A model holding nothing but ``tensor`` under its own ``name``: what ``compress`` needs to
    compress that one tensor as it would within the whole model."""
    root = owner = nn.Module()
    *path, leaf = name.split(".")
    for part in path:
        child = nn.Module()
        owner.add_module(part, child)
        owner = child
    owner.register_buffer(leaf, tensor)
    return LoadedModel(
        name=model.name, format=model.format, module=root,
        layer_types={name: model.layer_types[name]} if name in model.layer_types else {},
        example_inputs=(), evaluation=None,
        output_axes={name: model.output_axes[name]} if name in model.output_axes else {},
    )


def _shared_copy(module: nn.Module) -> nn.Module:
    """A copy of the module objects that shares every parameter and buffer with ``module``."""
    tensors = [*module.parameters(), *module.buffers()]
    return copy.deepcopy(module, {id(tensor): tensor for tensor in tensors})


class LayerScorer:
    """Scores ``model`` with one layer compressed, point after point, as a sensitivity scan asks.

    Setting up costs two passes over the evaluation data (padded, and bucketed with the block
    outputs captured); ``samples`` scores only the first rows, as ``evaluate`` does.
    """

    def __init__(self, model: LoadedModel, samples: int | None = None) -> None:
        self.model = model
        self._data = evaluation_subset(require_evaluation(model), samples)
        self._scorer = metric(self._data.metric)
        self._state = model.module.state_dict()
        self._tied = tied_names(self._state)
        self._eager = not isinstance(model.module, (torch.jit.ScriptModule, ForeignRuntimeModule))
        if not self._eager:
            return
        self._working = _shared_copy(model.module)
        self._named = dict([*self._working.named_parameters(remove_duplicate=False),
                            *self._working.named_buffers(remove_duplicate=False)])
        # A graph module may be an exported program with static shapes: its batches stay as they are.
        by_length = not isinstance(self._working, torch.fx.GraphModule)
        buckets = bucketed(self._data) if by_length else in_batches(self._data)
        self._buckets, self._base, self._replay = self._capture(buckets)
        padded = self._base
        if self._buckets.by_length:
            padded, _ = summarize(self._working, self._data, self._scorer)
            if not same_summary(self._base, padded):
                self._buckets, self._base, self._replay = self._capture(in_batches(self._data))
        self.baseline_value = self._scorer.baseline(padded, self._data.labels)

    def handles(self, name: str, recipe: Recipe) -> bool:
        """Whether ``measure`` can score this point (else: ``compress`` and ``evaluate``)."""
        return self._eager and recipe.calibration is None and name in self._named and name not in self._tied

    @property
    def bucketed(self) -> bool:
        """Whether rows run in length buckets (else in the evaluator's own batches)."""
        return self._eager and self._buckets.by_length

    @property
    def replay_bytes(self) -> int:
        """What the captured block outputs hold (0 where no stack is replayed)."""
        return 0 if not self._eager or self._replay is None else self._replay.nbytes

    def first_block(self, name: str) -> int:
        """The block from which the model must run when ``name`` changes: its block in the stack
        (the earliest one holding it, for a tensor held under several names), else 0."""
        if not self._eager or self._replay is None:
            return 0
        tensor = self._named[name]
        blocks = [self._replay.stack.block_of(key) for key, other in self._named.items() if other is tensor]
        return 0 if any(block is None for block in blocks) else min(blocks)

    def measure(self, name: str, recipe: Recipe) -> LayerPoint:
        """Compress ``name`` by ``recipe`` (which compresses it alone: ``single_layer_recipe``)
        and score the model with that weight in place of the base one."""
        result = compress(_tensor_alone(self.model, name, self._state[name]), recipe)
        # The file compress(model, recipe) would write: this tensor encoded, every other one raw.
        raw = {key: tensor for key, tensor in self._state.items()
               if key not in result.packed.encoded and key not in self._tied}
        packed = replace(result.packed, raw=raw, aliases=dict(self._tied))
        values = result.module.get_buffer(name)
        if torch.equal(values, self._state[name]):
            evaluation = Evaluation(self._data.metric, self.baseline_value, self.baseline_value,
                                    dict(self._scorer.baseline_extras))
        else:
            evaluation = self._evaluate_with(name, values)
        return LayerPoint(result.report, packed, evaluation)

    def _capture(self, buckets: Buckets) -> tuple[Buckets, Summary, BlockReplay | None]:
        """The base summary over ``buckets`` and, where the model has a sequential stack, each
        block's output per bucket (None where there is none, or it would exceed the budget)."""
        stack = find_block_stack(self._working, list(self.model.compressible))
        replay = None if stack is None else BlockReplay(stack, REPLAY_BUDGET_BYTES)
        with replay.capturing() if replay is not None else nullcontext():
            summaries = [summarize(self._working, part, self._scorer)[0] for part in buckets.parts]
        usable = replay is not None and replay.usable and len(replay.outputs[0]) == len(buckets.parts)
        return buckets, buckets.in_original_order(summaries), replay if usable else None

    def _evaluate_with(self, name: str, values: torch.Tensor) -> Evaluation:
        start = self.first_block(name)
        with _swapped(self._working, name, values), \
                self._replay.starting_at(start) if start else nullcontext():
            summaries = []
            for index, part in enumerate(self._buckets.parts):
                if self._replay is not None:
                    self._replay.part = index
                summaries.append(summarize(self._working, part, self._scorer)[0])
        summary = self._buckets.in_original_order(summaries)
        value, extras = self._scorer.score(summary, self._base, self._data.labels)
        return Evaluation(self._data.metric, value, self.baseline_value, extras)


@contextmanager
def _swapped(module: nn.Module, name: str, values: torch.Tensor) -> Iterator[None]:
    """``module`` with the tensor named ``name`` replaced by ``values`` in every module holding
    it (tied names too), by rebinding: the base tensor itself is never written."""
    original = dict([*module.named_parameters(remove_duplicate=False),
                     *module.named_buffers(remove_duplicate=False)])[name]
    holders = [
        (owner, key)
        for owner in module.modules()
        for key, tensor in [*owner.named_parameters(recurse=False, remove_duplicate=False),
                            *owner.named_buffers(recurse=False, remove_duplicate=False)]
        if tensor is original
    ]
    values = values.to(original.dtype)
    replacement = nn.Parameter(values, requires_grad=False) if isinstance(original, nn.Parameter) else values
    for owner, key in holders:
        setattr(owner, key, replacement)
    try:
        yield
    finally:
        for owner, key in holders:
            setattr(owner, key, original)
