"""MACs per layer: counted on the example inputs by torch's flop counter, per input row."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from compression.compress import compress
from compression.graph.channels import remove_channels
from compression.io.loading import load_model
from compression.io.onnx.export import export_onnx
from compression.layer_table import layer_table
from compression.macs import count_macs
from compression.model import LoadedModel, module_layer_types


def loaded(module: nn.Module, *inputs: torch.Tensor) -> LoadedModel:
    return LoadedModel("test", "module", module.eval(), module_layer_types(module), inputs, None)


@pytest.fixture(scope="module")
def simplenet() -> LoadedModel:
    return load_model("simplenet")


def test_a_linear_layer_on_one_row_costs_in_times_out() -> None:
    count = count_macs(loaded(nn.Linear(64, 10), torch.zeros(1, 64)))
    assert count.layers == {"weight": 64 * 10} and count.total == 640 and count.unattributed == 0


def test_macs_are_per_row_whatever_the_example_batch() -> None:
    assert count_macs(loaded(nn.Linear(64, 10), torch.zeros(5, 64))).total == 640


def test_a_convolution_costs_each_output_value_its_kernel_over_its_group() -> None:
    conv = nn.Conv2d(4, 8, 3, groups=2)  # each output reads 2 input channels × 3 × 3
    count = count_macs(loaded(conv, torch.zeros(1, 4, 6, 6)))
    assert count.layers == {"weight": 8 * 4 * 4 * (2 * 3 * 3)}


def test_each_lstm_weight_multiplies_one_vector_per_time_step() -> None:
    lstm = nn.LSTM(4, 8, num_layers=2)
    count = count_macs(loaded(lstm, torch.zeros(1, 3, 4)))  # the engine's batch first: 1 row of 3 × 4
    weights = dict(lstm.named_parameters())
    assert count.layers == {name: 3 * weights[name].numel() for name in module_layer_types(lstm)}


def test_a_transformer_counts_without_error_and_its_total_is_the_layers_plus_the_unattributed() -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    bert = BertModel(config)
    count = count_macs(loaded(bert, torch.ones(2, 7, dtype=torch.long)))
    assert count.reason is None and set(count.layers) == set(module_layer_types(bert))
    assert count.layers["encoder.layer.0.attention.self.query.weight"] == 7 * 16 * 16
    assert count.layers["encoder.layer.1.intermediate.dense.weight"] == 7 * 16 * 32
    assert count.total == sum(count.layers.values()) + count.unattributed
    assert count.unattributed == 2 * 2 * 2 * (7 * 7 * 8)  # layers × heads × (QKᵀ, AV): no weight in them


def test_a_tied_lm_heads_macs_go_to_the_embedding_weight_it_shares() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    count = count_macs(loaded(LlamaForCausalLM(config), torch.ones(1, 5, dtype=torch.long)))
    assert count.layers["model.embed_tokens.weight"] == 5 * 16 * 64


def test_zeros_alone_cut_no_macs(simplenet) -> None:
    pruned = compress(simplenet, {"prune": {"method": "magnitude", "amount": 0.9}})
    after = count_macs(simplenet.with_module(pruned.module, "90 % zeros"))
    assert after.layers == count_macs(simplenet).layers


def test_removing_channels_cuts_an_inner_layer_by_one_minus_p_squared(simplenet) -> None:
    amount = 0.5
    before = count_macs(simplenet)
    after = count_macs(remove_channels(simplenet, amount).as_loaded(simplenet))
    # conv2 loses half its input channels (conv1's outputs) and half its own outputs.
    assert after.layers["conv2.weight"] / before.layers["conv2.weight"] == pytest.approx((1 - amount) ** 2, abs=0.02)
    assert after.layers["conv1.weight"] / before.layers["conv1.weight"] == pytest.approx(1 - amount, abs=0.02)
    assert (1 - amount) ** 2 <= after.total / before.total < 1 - amount


def test_the_layer_table_gives_each_row_its_macs(simplenet) -> None:
    table = layer_table(simplenet)
    assert [row.macs for row in table.layers] == [count_macs(simplenet).layers[row.name] for row in table.layers]
    assert table.layers[0].to_dict()["macs"] == 10 * 24 * 24 * 25  # conv1: 10 × 24 × 24 outputs, 5 × 5 each


def test_an_onnx_model_says_it_cannot_be_counted(tmp_path) -> None:
    mlp = load_model("mlp")
    path = tmp_path / "mlp.onnx"
    path.write_bytes(export_onnx(mlp))
    count = count_macs(load_model(path))
    assert count.total is None and not count.layers and "onnxruntime" in count.reason
    assert all(row.macs is None for row in layer_table(load_model(path)).layers)


def test_a_model_whose_forward_fails_says_why() -> None:
    count = count_macs(loaded(nn.Linear(4, 2), torch.zeros(1, 3)))
    assert count.total is None and "forward failed" in count.reason and "RuntimeError" in count.reason


def test_a_model_without_example_inputs_says_what_to_give() -> None:
    count = count_macs(LoadedModel("bare", "torchscript", nn.Linear(4, 2), {"weight": "Linear"}, (), None))
    assert count.total is None and "example input" in count.reason
