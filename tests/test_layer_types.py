"""Every compressible layer type, each along its own output axis, in every format.

Per-channel scales, structured pruning and N:M pruning must see a weight's output channels as
rows, whichever axis the layer stores them on: a ConvTranspose keeps them on axis 1 (in groups
along axis 0), GPT-2's Conv1D stores (in, out), an ONNX LSTM (directions, gates·hidden, in).
The expected rows are written out here from each layer's definition, not from the engine's
``OutputAxis``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import safetensors.torch
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from transformers.pytorch_utils import Conv1D

from compression.compress import compress
from compression.errors import PackedFileError
from compression.graph.channels import remove_channels
from compression.io.loading import load_model
from compression.model import LoadedModel, module_layer_types
from compression.output_axes import OutputAxis
from compression.packing import load_packed, save_packed
from tensor_checks import assert_bitwise_equal, bitwise_copy

PER_CHANNEL_4_BIT = {"quantize": {"scheme": "linear", "bits": 4, "granularity": "per_channel"}}
STRUCTURED_HALF = {"prune": {"method": "structured", "amount": 0.5}}
TWO_OF_FOUR = {"prune": {"method": "n:m", "n": 2, "m": 4}}


def transposed_rows(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A ConvTranspose weight (in, out/groups, k…) as one row per output channel: output
    channel g·out/groups + j reads the input channels of group g through ``weight[:, j]``."""
    inputs_per_group = weight.shape[0] // groups
    return torch.stack([
        weight[group * inputs_per_group:(group + 1) * inputs_per_group, j].reshape(-1)
        for group in range(groups)
        for j in range(weight.shape[1])
    ])


def input_groups(rows: torch.Tensor, kernel: int = 1) -> torch.Tensor:
    """Rows (out, in·kernel) as runs along the input dimension at each kernel position."""
    out = rows.shape[0]
    return rows.reshape(out, -1, kernel).transpose(1, 2).reshape(out, kernel, -1)


def check_per_channel_scales(model: LoadedModel | nn.Module, name: str, rows: torch.Tensor) -> None:
    """One 4-bit scale per output channel, max |w| / 7 of that channel's row."""
    result = compress(model, PER_CHANNEL_4_BIT)
    scale = result.packed.encoded[name].buffers["scale"].reshape(-1)
    assert scale.numel() == rows.shape[0]
    torch.testing.assert_close(scale, rows.abs().amax(dim=1) / 7, rtol=1e-6, atol=0)


def check_structured(model: LoadedModel | nn.Module, name: str, rows_of) -> None:
    """Half of the output channels whole zero rows, the rest untouched."""
    result = compress(model, {**STRUCTURED_HALF, "include": [name]})
    rows = rows_of(result.module.state_dict()[name])
    zero_rows = (rows == 0).all(dim=1)
    assert int(zero_rows.sum()) == rows.shape[0] // 2
    assert bool((rows[~zero_rows] != 0).all())


def check_n_m(model: LoadedModel | nn.Module, name: str, rows_of, kernel: int = 1) -> None:
    """Two non-zeros in every four consecutive weights along the input dimension."""
    result = compress(model, {**TWO_OF_FOUR, "include": [name]})
    groups = input_groups(rows_of(result.module.state_dict()[name]), kernel)
    runs = groups.reshape(*groups.shape[:2], -1, 4)
    assert bool(((runs != 0).sum(dim=-1) == 2).all())


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    """Weights away from zero (no accidental zero to blur a count) and eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            signs = torch.randint(0, 2, parameter.shape, generator=generator) * 2 - 1
            parameter.copy_(signs * (0.1 + torch.rand(parameter.shape, generator=generator)))
    return module.eval()


# --- eager modules ---------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2])
def test_a_conv_transpose_has_one_scale_per_output_channel_on_axis_1(dims: int, groups: int) -> None:
    layer = seeded(getattr(nn, f"ConvTranspose{dims}d")(8, 6, 2, groups=groups))
    assert module_layer_types(layer) == {"weight": f"ConvTranspose{dims}d"}
    assert compress(layer, {}).module.weight.shape == layer.weight.shape
    check_per_channel_scales(layer, "weight", transposed_rows(layer.weight.detach(), groups))


@pytest.mark.parametrize("groups", [1, 2])
def test_structured_pruning_of_a_conv_transpose_zeroes_whole_output_channels(groups: int) -> None:
    layer = seeded(nn.ConvTranspose2d(8, 6, 3, groups=groups))
    check_structured(layer, "weight", lambda weight: transposed_rows(weight, groups))
    if groups == 1:  # output channel j is the slice weight[:, j]
        pruned = compress(layer, STRUCTURED_HALF).module.weight
        assert sum(bool((pruned[:, j] == 0).all()) for j in range(6)) == 3


def test_n_m_pruning_of_a_conv_transpose_runs_along_its_input_channels() -> None:
    layer = seeded(nn.ConvTranspose2d(8, 6, 3, groups=2))  # 4 input channels per group
    check_n_m(layer, "weight", lambda weight: transposed_rows(weight, 2), kernel=9)


def test_gpt2_conv1d_is_read_as_in_by_out() -> None:
    layer = seeded(Conv1D(12, 8))  # nf=12 outputs, nx=8 inputs: weight (8, 12)
    assert module_layer_types(layer) == {"weight": "Conv1D"}
    check_per_channel_scales(layer, "weight", layer.weight.detach().t())
    check_structured(layer, "weight", lambda weight: weight.t())
    check_n_m(layer, "weight", lambda weight: weight.t())


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_every_recurrent_weight_is_compressible_with_gate_units_as_rows(kind: str) -> None:
    layer = seeded(getattr(nn, kind)(8, 4, num_layers=2, bidirectional=True))
    expected = {
        f"weight_{part}_l{level}{suffix}": kind
        for level in range(2) for suffix in ("", "_reverse") for part in ("ih", "hh")
    }
    assert module_layer_types(layer) == expected
    for name in ("weight_ih_l0", "weight_hh_l1_reverse"):
        weight = layer.get_parameter(name).detach()
        check_per_channel_scales(layer, name, weight)
    check_structured(layer, "weight_ih_l1", lambda weight: weight)
    check_n_m(layer, "weight_ih_l0", lambda weight: weight)


def test_an_lstm_projection_weight_is_compressible() -> None:
    layer = seeded(nn.LSTM(8, 6, proj_size=4))
    assert set(module_layer_types(layer)) == {"weight_ih_l0", "weight_hh_l0", "weight_hr_l0"}
    check_per_channel_scales(layer, "weight_hr_l0", layer.weight_hr_l0.detach())


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell", "RNNCell"])
def test_recurrent_cells_offer_both_weights_with_gate_units_as_rows(kind: str) -> None:
    cell = seeded(getattr(nn, kind)(8, 4))
    assert module_layer_types(cell) == {"weight_ih": kind, "weight_hh": kind}
    check_per_channel_scales(cell, "weight_ih", cell.weight_ih.detach())
    check_structured(cell, "weight_hh", lambda weight: weight)
    check_n_m(cell, "weight_ih", lambda weight: weight)


def test_multihead_attention_offers_its_input_projection_and_output_linear() -> None:
    attention = seeded(nn.MultiheadAttention(8, 2, add_bias_kv=True))
    assert module_layer_types(attention) == {"in_proj_weight": "MultiheadAttention", "out_proj.weight": "Linear"}
    check_per_channel_scales(attention, "in_proj_weight", attention.in_proj_weight.detach())
    check_structured(attention, "in_proj_weight", lambda weight: weight)
    check_n_m(attention, "in_proj_weight", lambda weight: weight)


def test_multihead_attention_with_other_key_sizes_offers_three_projections() -> None:
    attention = seeded(nn.MultiheadAttention(8, 2, kdim=4, vdim=12))
    assert set(module_layer_types(attention)) == {"q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"}
    check_per_channel_scales(attention, "v_proj_weight", attention.v_proj_weight.detach())


def test_an_embedding_stays_opt_in_with_one_row_per_token() -> None:
    model = seeded(nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 4)))
    assert module_layer_types(model) == {"1.weight": "Linear"}
    assert "0.weight" not in compress(model, PER_CHANNEL_4_BIT).packed.encoded
    result = compress(model, {**PER_CHANNEL_4_BIT, "include": ["0.weight"]})
    assert result.packed.encoded["0.weight"].buffers["scale"].numel() == 10


# --- the whole compression on a model of every type ---------------------------------------------


class EveryLayer(nn.Module):
    """A small model with a layer of each type that keeps channels on another axis or in
    another kind of weight."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(4, 8, 2, stride=2, groups=2)
        self.lstm = nn.LSTM(8, 8, batch_first=True, bidirectional=True)
        self.cell = nn.GRUCell(16, 8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = Conv1D(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = self.up(x).transpose(1, 2)  # n × 2t × 8
        sequence, _ = self.lstm(sequence)
        state = self.cell(sequence[:, -1])
        query = state.unsqueeze(1)
        attended, _ = self.attention(query, query, query)
        return self.head(attended.squeeze(1))


def every_layer() -> nn.Module:
    return seeded(EveryLayer())


EVERY_LAYER_AXES = {
    "up.weight": OutputAxis(1, groups=2),
    "lstm.weight_ih_l0": OutputAxis(),
    "lstm.weight_hh_l0": OutputAxis(),
    "lstm.weight_ih_l0_reverse": OutputAxis(),
    "lstm.weight_hh_l0_reverse": OutputAxis(),
    "cell.weight_ih": OutputAxis(),
    "cell.weight_hh": OutputAxis(),
    "attention.in_proj_weight": OutputAxis(),
    "attention.out_proj.weight": OutputAxis(),
    "head.weight": OutputAxis(1),
}
RECIPES = [
    {"prune": {"method": "structured", "amount": 0.5, "scope": "global"}, "quantize": {"bits": 4}},
    {"prune": {"method": "n:m"}, "quantize": {"scheme": "pow2", "bits": 4, "granularity": "per_channel"}},
    {"prune": {"amount": 0.7}, "quantize": {"bits": 3, "granularity": "per_group", "group_size": 4, "symmetric": False}},
    {"quantize": {"scheme": "kmeans", "bits": 2}},
    {"prune": {"method": "structured", "amount": 0.3}},
]


def test_a_plain_module_and_a_loaded_model_get_the_same_output_axes() -> None:
    module = every_layer()
    loaded = LoadedModel("every", "module", module, module_layer_types(module), (), None)
    assert loaded.output_axes == EVERY_LAYER_AXES
    plain = compress(module, PER_CHANNEL_4_BIT)
    assert_bitwise_equal(plain.module.state_dict(), compress(loaded, PER_CHANNEL_4_BIT).module.state_dict())


@pytest.mark.parametrize("recipe", RECIPES)
def test_compress_leaves_the_input_unchanged_and_the_packed_file_loads_back_bit_for_bit(recipe, tmp_path: Path) -> None:
    module = every_layer()
    before = bitwise_copy(module.state_dict())
    result = compress(module, recipe)
    assert_bitwise_equal(module.state_dict(), before)
    save_packed(result.packed, tmp_path / "every.packed")
    state, index = load_packed(tmp_path / "every.packed")
    assert_bitwise_equal(state, result.module.state_dict())
    assert index["version"] == 2
    assert index["encoded"]["up.weight"]["output_axis"] == {"axis": 1, "groups": 2}
    assert "output_axis" not in index["encoded"]["lstm.weight_ih_l0"]
    assert result.module(torch.randn(2, 4, 3)).shape == (2, 4)


def test_a_model_with_every_output_axis_0_still_writes_the_first_format(tmp_path: Path) -> None:
    result = compress(seeded(nn.Sequential(nn.Linear(8, 4), nn.LSTMCell(4, 4))), {"quantize": {"bits": 4}})
    save_packed(result.packed, tmp_path / "plain.packed")
    assert load_packed(tmp_path / "plain.packed")[1]["version"] == 1


@pytest.mark.parametrize("output_axis", [{"axis": 2, "groups": 1}, {"axis": 1, "groups": 3}, {"axis": 1}, [1, 2]])
def test_an_output_axis_that_does_not_fit_its_tensor_is_a_damaged_packed_file(output_axis, tmp_path: Path) -> None:
    packed = compress(every_layer(), {"quantize": {"bits": 4}}).packed
    index = json.loads(packed.metadata()["compression_lab"])
    index["encoded"]["up.weight"]["output_axis"] = output_axis  # up.weight: (4, 4, 2), axis 1 in 2 groups
    path = tmp_path / "damaged.packed"
    path.write_bytes(safetensors.torch.save(packed.tensors(), metadata={"compression_lab": json.dumps(index)}))
    with pytest.raises(PackedFileError, match="tensor 'up.weight' is damaged"):
        load_packed(path)


def test_the_sparsity_map_shows_output_channels_as_rows() -> None:
    layer = seeded(Conv1D(12, 8))
    report = compress(layer, STRUCTURED_HALF).report.layer("weight")
    assert report.shape == (8, 12)
    assert report.sparsity_map.matrix_shape == (12, 8)
    assert sorted(set(report.sparsity_map.zero_fraction[:, 0].tolist())) == [0.0, 1.0]


# --- other formats ---------------------------------------------------------------------------


def test_a_torchscript_file_lists_the_same_layers_and_axes_as_its_module(tmp_path: Path) -> None:
    module = every_layer()
    torch.jit.script(module).save(str(tmp_path / "every.pt"))
    loaded = load_model(tmp_path / "every.pt")
    assert loaded.layer_types == module_layer_types(module)
    assert loaded.output_axes == EVERY_LAYER_AXES
    check_per_channel_scales(loaded, "up.weight", transposed_rows(module.up.weight.detach(), 2))
    check_per_channel_scales(loaded, "head.weight", module.head.weight.detach().t())


class Decoder(nn.Module):
    """A .pt2's graph keeps conv_transpose, lstm and the cells as operators of their own; GPT-2's
    Conv1D becomes addmm with its (in, out) weight, and ``x @ W`` a matmul."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2)
        self.gru = nn.GRU(6, 8, batch_first=True, num_layers=2)
        self.cell = nn.LSTMCell(8, 8)
        self.head = Conv1D(4, 8)
        self.mix = nn.Parameter(torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = self.up(x).flatten(2).transpose(1, 2)
        sequence, _ = self.gru(sequence)
        hidden, _ = self.cell(sequence[:, -1])
        return self.head(hidden) @ self.mix


PROGRAM_LAYERS = {
    "up.weight": ("ConvTranspose2d", OutputAxis(1, groups=2)),
    **{f"gru.weight_{part}_l{level}": ("GRU", OutputAxis()) for level in (0, 1) for part in ("ih", "hh")},
    "cell.weight_ih": ("LSTMCell", OutputAxis()),
    "cell.weight_hh": ("LSTMCell", OutputAxis()),
    "head.weight": ("Linear", OutputAxis(1)),
    "mix": ("Linear", OutputAxis(1)),
}


def test_a_pt2_program_finds_each_layer_and_its_axis_in_its_graph(tmp_path: Path) -> None:
    module = seeded(Decoder())
    x = torch.randn(2, 4, 3, 3)
    torch.export.save(torch.export.export(module, (x,)), tmp_path / "decoder.pt2")
    loaded = load_model(tmp_path / "decoder.pt2")
    assert {name: (kind, loaded.output_axes[name]) for name, kind in loaded.layer_types.items()} == PROGRAM_LAYERS
    check_per_channel_scales(loaded, "up.weight", transposed_rows(module.up.weight.detach(), 2))
    check_per_channel_scales(loaded, "head.weight", module.head.weight.detach().t())
    check_per_channel_scales(loaded, "gru.weight_hh_l1", module.gru.weight_hh_l1.detach())
    check_structured(loaded, "up.weight", lambda weight: transposed_rows(weight, 2))
    result = compress(loaded, RECIPES[0])
    save_packed(result.packed, tmp_path / "decoder.packed")
    assert_bitwise_equal(load_packed(tmp_path / "decoder.packed")[0], result.module.state_dict())


def lstm_graph(direction: str, hidden: int = 4, inputs: int = 8) -> onnx.ModelProto:
    """X (seq, batch, inputs) → an ONNX LSTM with W (dirs, 4·hidden, inputs), R, B → Y."""
    directions = 2 if direction == "bidirectional" else 1
    generator = np.random.default_rng(0)

    def weight(*shape: int) -> np.ndarray:
        return (generator.choice([-1.0, 1.0], shape) * (0.1 + generator.random(shape))).astype(np.float32)

    initializers = [
        numpy_helper.from_array(weight(directions, 4 * hidden, inputs), "W"),
        numpy_helper.from_array(weight(directions, 4 * hidden, hidden), "R"),
        numpy_helper.from_array(weight(directions, 8 * hidden), "B"),
    ]
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=hidden, direction=direction)
    graph = helper.make_graph(
        [node], "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [5, "n", inputs])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [5, directions, "n", hidden])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def onnx_model(tmp_path: Path, proto: onnx.ModelProto, name: str) -> LoadedModel:
    path = tmp_path / name
    onnx.save(proto, str(path))
    return load_model(path)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_an_onnx_lstm_has_one_output_channel_per_direction_and_gate_unit(tmp_path: Path, direction: str) -> None:
    loaded = onnx_model(tmp_path, lstm_graph(direction), "lstm.onnx")
    directions = 2 if direction == "bidirectional" else 1
    assert loaded.layer_types == {"W": "LSTM", "R": "LSTM"}
    assert loaded.output_axes["W"] == OutputAxis(1, groups=directions)
    w = loaded.module.W.detach()
    assert w.shape == (directions, 16, 8)
    check_per_channel_scales(loaded, "W", w.reshape(directions * 16, 8))
    check_structured(loaded, "R", lambda weight: weight.reshape(directions * 16, 4))
    check_n_m(loaded, "W", lambda weight: weight.reshape(directions * 16, 8))
    result = compress(loaded, RECIPES[0])
    assert result.module(*loaded.example_inputs).shape == loaded.module(*loaded.example_inputs).shape


def test_an_onnx_conv_transpose_keeps_its_output_channels_on_axis_1(tmp_path: Path) -> None:
    generator = np.random.default_rng(1)
    weight = (0.1 + generator.random((4, 3, 2, 2))).astype(np.float32)  # in 4, out 6 in 2 groups
    node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], group=2, strides=[2, 2])
    graph = helper.make_graph(
        [node], "up",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", 4, 3, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", 6, 6, 6])],
        [numpy_helper.from_array(weight, "W")],
    )
    loaded = onnx_model(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "up.onnx")
    assert loaded.layer_types == {"W": "ConvTranspose2d"}
    assert loaded.output_axes["W"] == OutputAxis(1, groups=2)
    check_per_channel_scales(loaded, "W", transposed_rows(torch.from_numpy(weight), 2))


# --- counts and refusals -----------------------------------------------------------------------


class CellVoiceDetector(nn.Module):
    """The shape of a streaming voice-activity model: a convolutional encoder, a decoder built
    from an LSTM cell that carries its state between calls, and a 1×1 convolution head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(1, 32, 8, stride=4), nn.ReLU(), nn.Conv1d(32, 64, 3), nn.ReLU())
        self.decoder = nn.LSTMCell(64, 64)
        self.head = nn.Conv1d(64, 1, 1)

    def forward(self, audio: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        features = self.encoder(audio.unsqueeze(1)).mean(dim=2)
        hidden, cell = self.decoder(features, (hidden, cell))
        return torch.sigmoid(self.head(hidden.unsqueeze(2))).squeeze(2)


def test_a_recurrent_model_built_from_lstm_cells_offers_all_its_weight_matrices(tmp_path: Path) -> None:
    module = seeded(CellVoiceDetector())
    weights = {name for name, parameter in module.named_parameters() if parameter.ndim >= 2}
    assert set(module_layer_types(module)) == weights
    torch.jit.script(module).save(str(tmp_path / "vad.pt"))
    scripted = load_model(tmp_path / "vad.pt")
    parameters = dict(scripted.module.named_parameters())
    offered = sum(parameters[name].numel() for name in scripted.compressible)
    assert offered == sum(parameters[name].numel() for name in weights)
    assert {"decoder.weight_ih", "decoder.weight_hh"} <= set(scripted.compressible)


def test_channel_removal_leaves_layers_it_cannot_follow_whole_and_unmasked() -> None:
    module = every_layer()
    result = remove_channels(module, 0.5, example_inputs=(torch.randn(2, 4, 3),))
    assert "ConvTranspose1d" in result.skipped["up"] and "only exact Linear" in result.skipped["up"]
    assert "LSTM" in result.skipped["lstm"]
    overridden = set(result.masked_recipe.get("overrides", {}))
    assert {"up.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0_reverse", "cell.weight_ih", "head.weight"} <= overridden
    masked = compress(module, result.masked_recipe).module
    assert torch.equal(masked.up.weight, compress(module, {}).module.up.weight)
