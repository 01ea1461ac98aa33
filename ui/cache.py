"""The engine's answers, cached per process: loaded models, compressions, evaluations.

Base models are loaded once per process and shared read-only by every session; results are
cached by (model, data, recipe JSON), within a byte budget (:mod:`ui.result_cache`). The engine
never mutates what it is given, so sharing is safe.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

import compression
from compression.io.families import CAUSAL_LM, SEQ2SEQ
from compression.macs import MacCount
from compression.preview import MagnitudeIndex, PackedSizes
from ui import server_models, uploads
from ui.result_cache import ENTRY_OVERHEAD_BYTES, ResultCache, tensor_bytes
from ui.model_ids import FOLDED_PREFIX, SERVER_PREFIX, load_options


@st.cache_resource(max_entries=6, show_spinner=False)
def base_model(model_id: str, data_id: str | None) -> compression.LoadedModel:
    """The loaded model, shared by every session of this process (read-only). Sample models
    and uploads alike are held to the upload limits (MiniLM is well inside them), models of the
    server's folder (``server/``) to the engine's own (they never crossed the network); a
    ``folded/`` id is the model after it with its BatchNorm layers folded; ``family/`` and
    ``shaped/`` ones the model after them loaded as the family and with the input sizes they hold."""
    if model_id.startswith(FOLDED_PREFIX):
        source_id = model_id.removeprefix(FOLDED_PREFIX)
        return folded(source_id, data_id)[0].as_loaded(base_model(source_id, data_id))
    source, data, keywords = load_arguments(model_id, data_id)
    return compression.load_model(source, data, **keywords)


def load_arguments(model_id: str, data_id: str | None) -> tuple[str | Path, str | None, dict[str, Any]]:
    """What ``compression.load_model`` is given for a model id that is not a folded one: the
    model's source, the data's and the keywords (a pool's workers load the model from them)."""
    options = load_options(model_id)
    if options.source_id.startswith(SERVER_PREFIX):
        source, limits = server_models.path(options.source_id), {}
    else:
        source = uploads.source(options.source_id)
        limits = {"max_parameters": uploads.MAX_UPLOAD_PARAMETERS, "max_file_bytes": uploads.MAX_UPLOAD_BYTES}
    keywords = {"family": options.family, "input_shapes": options.input_shapes or None, **limits}
    return source, uploads.source(data_id) if data_id else None, keywords


def load_upload(files: list[tuple[str, bytes]], data: tuple[str, bytes] | None = None) -> tuple[str, str | None]:
    """Check, store and load an upload (model files, optional .npz); return (model_id, data_id).

    A refused upload raises ``CompressionError`` with the engine's message and leaves no file
    of its own behind (:func:`ui.uploads.stored`).
    """
    with uploads.stored(files, data) as (model_id, data_id):
        base_model(model_id, data_id)
    return model_id, data_id


# Compressed, folded and channel-removed models of this process together: a 135M-parameter
# model's compressed copy holds about 0.6 GB, simplenet's 0.2 MB.
RESULT_BYTES = 2 * 1024**3
SCORES_KEPT = 512


def held_bytes(value: Any) -> int:
    """Bytes a cached result holds: its module's tensors, a compression's packed codes and maps."""
    result = value[0] if isinstance(value, tuple) else value
    tensors = list(result.module.state_dict().values())
    packed = getattr(result, "packed", None)
    if packed is not None:  # its raw tensors are the base model's own: not counted again
        tensors += [buffer for encoded in packed.encoded.values() for buffer in encoded.buffers.values()]
    report = getattr(result, "report", None)
    maps = sum(layer.sparsity_map.zero_fraction.nbytes for layer in report.layers) if report is not None else 0
    return tensor_bytes(tensors) + maps


_RESULTS: ResultCache[Any] = ResultCache(RESULT_BYTES, held_bytes)  # one per server process
_SCORES: ResultCache[dict[str, Any]] = ResultCache(SCORES_KEPT * ENTRY_OVERHEAD_BYTES, lambda scores: 0)


def compressed(
    model_id: str, data_id: str | None, recipe_json: str, progress: Callable[[float], None] | None = None,
) -> compression.CompressionResult:
    """One compression per (model, data, recipe); a slider returning to a value is instant.
    ``progress`` hears the calibrated layers' fraction done (``compression.compress``)."""
    return _RESULTS.get(("compressed", model_id, data_id, recipe_json),
                        lambda: compression.compress(base_model(model_id, data_id), recipe_json, progress=progress))


def kept_compression(model_id: str, data_id: str | None, recipe_json: str) -> compression.CompressionResult | None:
    """The compression :func:`compressed` keeps for these arguments, or None; computes nothing."""
    return _RESULTS.peek(("compressed", model_id, data_id, recipe_json))


def folded(model_id: str, data_id: str | None) -> tuple[compression.FusionResult, compression.FusionCheck]:
    """Conv+BatchNorm folding of a model and what it changed: traced, folded and measured once."""

    def fold() -> tuple[compression.FusionResult, compression.FusionCheck]:
        model = base_model(model_id, data_id)
        result = compression.fuse_conv_bn(model)
        return result, compression.check_fusion(model, result)

    return _RESULTS.get(("folded", model_id, data_id), fold)


def smaller_model(
    model_id: str, data_id: str | None, amount: float, norm: str, scope: str
) -> tuple[compression.ChannelResult, float | None]:
    """Structured pruning with the channels removed, and its metric (None without data): an
    fx trace, shape propagation and an evaluation, done once per setting rather than per rerun."""

    def remove() -> tuple[compression.ChannelResult, float | None]:
        model = base_model(model_id, data_id)
        result = compression.remove_channels(model, amount, norm=norm, scope=scope)
        # Scored against the base model: a fidelity metric compares with the original outputs.
        value = compression.evaluate(model, result.module).value if model.evaluation is not None else None
        return result, value

    return _RESULTS.get(("smaller", model_id, data_id, amount, norm, scope), remove)


@st.cache_data(max_entries=32, show_spinner=False)
def smaller_macs(model_id: str, data_id: str | None, amount: float, norm: str, scope: str) -> tuple[MacCount, MacCount]:
    """MACs per input of the base model and of :func:`smaller_model`'s copy, counted once per
    setting (a forward pass under torch's flop counter: 0.8 s on MiniLM)."""
    model = base_model(model_id, data_id)
    smaller, _ = smaller_model(model_id, data_id, amount, norm, scope)
    return compression.count_macs(model), compression.count_macs(smaller.as_loaded(model))


@st.cache_data(
    max_entries=12, show_spinner=False,
    # Keyed by each tensor's storage and in-place version counter rather than by the model
    # alone: an in-place write into the shared weights (copy_, mul_, an optimizer step) bumps
    # a counter and the fingerprint is computed again, so the page would show the change
    # rather than a stale hash. (Writes through ``.data`` or a numpy view bump no counter.)
    hash_funcs={compression.LoadedModel: lambda model: [
        (name, tensor.data_ptr(), tensor._version) for name, tensor in model.module.state_dict().items()
    ]},
)
def weights_fingerprint(model_id: str, model: compression.LoadedModel) -> str:
    """The base model's weights fingerprint (``compression.model.weights_fingerprint``), once per
    model: 8 ms on mlp, 70 ms on MiniLM, and the Model page shows it on every visit."""
    return compression.model.weights_fingerprint(model.module)


LIVE_SAMPLES = 64
LIVE_SAMPLES_ABOVE_PARAMETERS = 5_000_000
# Parameters × tokens a live view of a language model scores: tinylm's 1.2M parameters get 32 of
# its 139 windows of 128 tokens (all 139 take 1 to 5 s on two cores, 32 take 0.2 to 1 s).
LIVE_PARAMETER_TOKENS = 6_000_000_000
TOKEN_FAMILIES = (CAUSAL_LM, SEQ2SEQ)  # scored window by window: the cost grows with every token


def live_samples(model: compression.LoadedModel) -> int | None:
    """Rows the live views evaluate on: all for small models, the first 64 for large ones
    (MiniLM's 512 sentences take about 9 s on two cores; 64 take about 1 s), and for a language
    model as many windows as :data:`LIVE_PARAMETER_TOKENS` allows, in whole batches."""
    data = model.evaluation
    if data is None:
        return None
    parameters = sum(p.numel() for p in model.module.parameters())
    if model.family in TOKEN_FAMILIES:
        tokens = max(data.inputs[0][0].numel(), 1)
        windows = LIVE_PARAMETER_TOKENS // (parameters * tokens)
        samples = max(windows // data.batch_size * data.batch_size, data.batch_size)  # a short batch is padded
    elif parameters > LIVE_SAMPLES_ABOVE_PARAMETERS:
        samples = LIVE_SAMPLES
    else:
        return None
    return samples if data.size > samples else None


def evaluation(model_id: str, data_id: str | None, recipe_json: str | None, samples: int | None = None) -> dict[str, Any]:
    """The metric of the compressed model (or the base model when ``recipe_json`` is None)."""

    def score() -> dict[str, Any]:
        model = base_model(model_id, data_id)
        module = compressed(model_id, data_id, recipe_json).module if recipe_json else None
        result = compression.evaluate(model, module, samples=samples)
        return {"metric": result.metric, "value": result.value, "baseline_value": result.baseline_value,
                **result.extras}

    return dict(_SCORES.get((model_id, data_id, recipe_json, samples), score))


def scored(model_id: str, data_id: str | None, recipe_json: str | None, samples: int | None = None) -> dict[str, Any] | None:
    """The metric :func:`evaluation` keeps for these arguments, or None; computes nothing."""
    scores = _SCORES.peek((model_id, data_id, recipe_json, samples))
    return dict(scores) if scores is not None else None


@st.cache_data(max_entries=256, show_spinner=False)
def packed_sizes(model_id: str, data_id: str | None, recipe_json: str) -> PackedSizes:
    """The packed file's sizes for magnitude pruning alone, from the model's sorted weights
    without compressing (one scan of the weights: about 0.2 s at 135M)."""
    return MagnitudeIndex.of(base_model(model_id, data_id)).sizes(compression.Recipe.from_json(recipe_json))


METRIC_ON_DEMAND_ABOVE_PARAMETERS = 50_000_000


def metric_on_demand(model: compression.LoadedModel) -> bool:
    """Whether a compressed model's metric waits until asked for: above 50M parameters one
    compression and its scoring take seconds (3.4 s to compress 135M on two cores), too long
    for every slider move. MiniLM (23M) is still scored live."""
    return sum(p.numel() for p in model.module.parameters()) > METRIC_ON_DEMAND_ABOVE_PARAMETERS
