"""Specification of the packed file: sizes, bit-exact round trips, cheapest encoding, damage."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch
from torch import nn

import sample_models
from compression.bitpack import packed_size
from compression.compress import compress
from compression.errors import PackedFileError
from compression.packing import choose_encoding, load_packed, save_packed

QUANTIZE_SECTIONS = [
    None,
    {"scheme": "linear", "bits": 1},
    {"scheme": "linear", "bits": 2, "granularity": "per_tensor"},
    {"scheme": "linear", "bits": 8},
    {"scheme": "linear", "bits": 16},
    {"scheme": "linear", "bits": 16, "symmetric": False},
    {"scheme": "linear", "bits": 3, "granularity": "per_group", "group_size": 7},
    {"scheme": "linear", "bits": 5, "granularity": "per_group", "group_size": 7, "symmetric": False},
    {"scheme": "pow2", "bits": 2},
    {"scheme": "pow2", "bits": 8, "granularity": "per_tensor"},
    {"scheme": "kmeans", "bits": 1},
    {"scheme": "kmeans", "bits": 8},
    {"scheme": "float", "format": "fp16"},
    {"scheme": "float", "format": "bf16"},
    {"scheme": "float", "format": "fp8_e4m3"},
    {"scheme": "float", "format": "fp8_e5m2"},
]
PRUNE_SECTIONS = {
    "dense": None,
    "0%": {"amount": 0.0},
    "70%": {"amount": 0.7},
    "97%": {"amount": 0.97},
    "100%": {"amount": 1.0},
    "2:4": {"method": "n:m", "n": 2, "m": 4},
    "channels": {"method": "structured", "amount": 0.5, "norm": "l2"},
}


def quantize_id(section: dict | None) -> str:
    return "none" if section is None else "-".join(str(value) for value in section.values())


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()


def recipe_of(prune: dict | None, quantize: dict | None) -> dict:
    return {key: value for key, value in (("prune", prune), ("quantize", quantize)) if value is not None}


def assert_bit_identical(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.dtype, name
        bits = torch.int32 if tensor.dtype == torch.float32 else tensor.dtype
        assert torch.equal(loaded[name].view(bits), tensor.view(bits)), name


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return small_model()


@pytest.fixture(scope="module")
def simplenet() -> nn.Module:
    return sample_models.load_trained("simplenet")


# --- sizes -------------------------------------------------------------------------------


def test_report_file_bytes_equal_the_saved_files_size(model: nn.Module, tmp_path: Path) -> None:
    result = compress(model, {"prune": {"amount": 0.6}, "quantize": {"bits": 4}})
    path = tmp_path / "model.clp"
    save_packed(result.packed, path)
    assert result.report.file_bytes == os.path.getsize(path)


def test_save_packed_returns_the_bytes_written(model: nn.Module, tmp_path: Path) -> None:
    result = compress(model, {"quantize": {"scheme": "pow2", "bits": 4}})
    path = tmp_path / "model.clp"
    assert save_packed(result.packed, path) == os.path.getsize(path)


def test_encoded_bytes_equal_the_sum_of_the_stored_tensors_bytes(simplenet: nn.Module, tmp_path: Path) -> None:
    result = compress(simplenet, {"prune": {"amount": 0.8, "scope": "global"}, "quantize": {"scheme": "kmeans", "bits": 4}})
    path = tmp_path / "simplenet.clp"
    save_packed(result.packed, path)
    with safetensors.safe_open(str(path), framework="pt") as handle:
        stored = sum(handle.get_tensor(key).numel() * handle.get_tensor(key).element_size() for key in handle.keys())
    assert result.report.encoded_bytes == stored


def test_each_layers_encoded_bytes_are_its_stored_parts(model: nn.Module) -> None:
    result = compress(model, {"prune": {"amount": 0.5}, "quantize": {"bits": 3, "granularity": "per_group", "group_size": 5}})
    stored = result.packed.tensors()
    for layer in result.report.layers:
        parts = [tensor for key, tensor in stored.items() if key.startswith(f"{layer.name}::")]
        assert layer.encoded_bytes == sum(part.numel() * part.element_size() for part in parts)


def test_the_file_is_smaller_than_dense_fp32_when_quantized(simplenet: nn.Module) -> None:
    report = compress(simplenet, {"quantize": {"bits": 4}}).report
    assert report.file_bytes < report.dense_fp32_bytes
    assert report.compression_ratio == report.dense_fp32_bytes / report.file_bytes


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("quantize", QUANTIZE_SECTIONS, ids=quantize_id)
@pytest.mark.parametrize("prune", list(PRUNE_SECTIONS.values()), ids=list(PRUNE_SECTIONS))
def test_loading_reproduces_the_compressed_state_dict_bit_for_bit(
    model: nn.Module, prune: dict | None, quantize: dict | None, tmp_path: Path
) -> None:
    result = compress(model, recipe_of(prune, quantize))
    path = tmp_path / "model.clp"
    save_packed(result.packed, path)
    state, _ = load_packed(path)
    assert_bit_identical(state, result.module.state_dict())


def test_a_trained_sample_model_round_trips_bit_for_bit(simplenet: nn.Module, tmp_path: Path) -> None:
    recipe = {
        "prune": {"amount": 0.7, "scope": "global"},
        "quantize": {"bits": 4, "granularity": "per_group", "group_size": 16, "symmetric": False},
        "overrides": {"conv1.weight": {"prune": None, "quantize": {"scheme": "float", "format": "bf16"}}},
        "include": ["fc1.bias"],
    }
    result = compress(simplenet, recipe)
    path = tmp_path / "simplenet.clp"
    save_packed(result.packed, path)
    assert_bit_identical(load_packed(path)[0], result.module.state_dict())


def test_loaded_weights_make_the_same_outputs(simplenet: nn.Module, tmp_path: Path) -> None:
    result = compress(simplenet, {"prune": {"amount": 0.5}, "quantize": {"scheme": "pow2", "bits": 5}})
    path = tmp_path / "simplenet.clp"
    save_packed(result.packed, path)
    rebuilt = sample_models.build_architecture("simplenet").eval()
    rebuilt.load_state_dict(load_packed(path)[0])
    inputs = torch.randn(4, *sample_models.input_shape("simplenet"), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), result.module(inputs))


def test_negative_zero_comes_back_as_positive_zero(tmp_path: Path) -> None:
    layer = nn.Linear(4, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-0.0, 1.0, -2.0, 0.0], [3.0, -0.0, 0.5, -1.0]]))
    result = compress(layer, {"prune": {"threshold": 0.0}})
    path = tmp_path / "layer.clp"
    save_packed(result.packed, path)
    assert load_packed(path)[0]["weight"].view(torch.int32).tolist()[0][0] == 0


def test_the_index_records_the_recipe_and_each_tensors_layout(model: nn.Module, tmp_path: Path) -> None:
    recipe = {"prune": {"amount": 0.9}, "quantize": {"bits": 4}}
    result = compress(model, recipe)
    path = tmp_path / "model.clp"
    save_packed(result.packed, path)
    index = load_packed(path)[1]
    assert index["recipe"] == result.report.recipe
    assert index["encoded"]["3.weight"]["encoding"] == result.report.layer("3.weight").encoding
    layer = result.report.layer("3.weight")
    assert index["encoded"]["3.weight"]["nonzero"] == layer.parameters - layer.zeros
    assert sorted(index["raw"]) == ["0.bias", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var", "1.weight", "3.bias"]


def test_saving_over_an_existing_file_replaces_it(model: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.clp"
    path.write_bytes(b"old contents")
    result = compress(model, {"quantize": {"bits": 2}})
    save_packed(result.packed, path)
    assert_bit_identical(load_packed(path)[0], result.module.state_dict())


# --- encoding choice ---------------------------------------------------------------------


def test_a_very_sparse_tensor_stores_the_gaps_between_non_zeros() -> None:
    encoding, payload = choose_encoding(numel=10_000, nonzero=50, bits=4, gap_width=10, represents_zero=True)
    assert (encoding, payload) == ("deltas", packed_size(50, 4) + packed_size(50, 10))


def test_a_medium_sparse_tensor_stores_a_bitmap() -> None:
    encoding, payload = choose_encoding(numel=10_000, nonzero=3_000, bits=4, gap_width=6, represents_zero=True)
    assert (encoding, payload) == ("bitmap", packed_size(3_000, 4) + packed_size(10_000, 1))


def test_a_dense_tensor_stores_every_code() -> None:
    encoding, payload = choose_encoding(numel=10_000, nonzero=9_000, bits=4, gap_width=3, represents_zero=True)
    assert (encoding, payload) == ("dense", packed_size(10_000, 4))


def test_codes_without_a_zero_never_store_a_sparse_tensor_densely() -> None:
    encoding, _ = choose_encoding(numel=10_000, nonzero=9_900, bits=1, gap_width=3, represents_zero=False)
    assert encoding != "dense"


def test_codes_without_a_zero_store_a_tensor_without_zeros_densely() -> None:
    assert choose_encoding(numel=64, nonzero=64, bits=1, gap_width=0, represents_zero=False)[0] == "dense"


def test_a_tie_in_size_prefers_dense() -> None:
    # 16 values of 8 bits: dense 16 bytes; bitmap 14 + 2 bytes; deltas 14 + 14 · 1 bit = 16 bytes.
    assert choose_encoding(numel=16, nonzero=14, bits=8, gap_width=1, represents_zero=True)[0] == "dense"


def test_an_all_zero_tensor_stores_nothing_but_the_count() -> None:
    assert choose_encoding(numel=1_000, nonzero=0, bits=8, gap_width=0, represents_zero=True) == ("deltas", 0)


@pytest.mark.parametrize(("amount", "expected"), [(0.0, "dense"), (0.6, "bitmap"), (0.995, "deltas")])
def test_compress_stores_each_tensor_in_the_cheapest_layout(amount: float, expected: str) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(100, 40)
    result = compress(layer, {"prune": {"amount": amount}, "quantize": {"bits": 4}})
    parts = result.packed.encoded["weight"].buffers
    payload = sum(parts[key].numel() for key in ("codes", "positions") if key in parts)
    entry = result.packed.encoded["weight"].entry
    assert choose_encoding(4000, entry["nonzero"], 4, entry["gap_width"], True) == (expected, payload)


# --- damaged files -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def packed_bytes(model: nn.Module) -> bytes:
    return compress(model, {"prune": {"amount": 0.5}, "quantize": {"bits": 4}}).packed.to_bytes()


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "damaged.clp"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("keep", ["nothing", "5 bytes", "the length only", "part of the header", "half", "all but one byte"])
def test_a_truncated_file_is_a_packed_file_error(packed_bytes: bytes, keep: str, tmp_path: Path) -> None:
    size = len(packed_bytes)
    cut = {"nothing": 0, "5 bytes": 5, "the length only": 8, "part of the header": 40, "half": size // 2}.get(keep, size - 1)
    path = write(tmp_path, packed_bytes[:cut])
    with pytest.raises(PackedFileError, match="is not a readable packed file"):
        load_packed(path)


def test_garbage_is_a_packed_file_error(tmp_path: Path) -> None:
    path = write(tmp_path, os.urandom(64) + b"not a safetensors file" * 20)
    with pytest.raises(PackedFileError, match="is not a readable packed file"):
        load_packed(path)


def test_a_plain_safetensors_file_is_refused_as_not_ours(tmp_path: Path) -> None:
    path = write(tmp_path, safetensors.torch.save({"weight": torch.zeros(3)}))
    with pytest.raises(PackedFileError, match="safetensors file but not a Compression Lab packed file"):
        load_packed(path)


def test_an_index_that_is_not_json_is_a_packed_file_error(tmp_path: Path) -> None:
    path = write(tmp_path, safetensors.torch.save({"weight": torch.zeros(3)}, metadata={"compression_lab": "{oops"}))
    with pytest.raises(PackedFileError, match="index is not valid JSON"):
        load_packed(path)


def test_another_format_version_is_refused_with_the_version(model: nn.Module, tmp_path: Path) -> None:
    packed = compress(model, {"quantize": {"bits": 4}}).packed
    index = json.loads(packed.metadata()["compression_lab"])
    index["version"] = 99
    path = write(tmp_path, safetensors.torch.save(packed.tensors(), metadata={"compression_lab": json.dumps(index)}))
    with pytest.raises(PackedFileError, match="unsupported packed format 'compression-lab-packed' v99"):
        load_packed(path)


@pytest.mark.parametrize("missing", ["0.weight::codes", "0.weight::scale", "3.bias"])
def test_a_file_missing_one_of_its_tensors_is_a_packed_file_error(model: nn.Module, missing: str, tmp_path: Path) -> None:
    packed = compress(model, {"prune": {"amount": 0.5}, "quantize": {"bits": 4}}).packed
    tensors = {key: value for key, value in packed.tensors().items() if key != missing}
    path = write(tmp_path, safetensors.torch.save(tensors, metadata=packed.metadata()))
    with pytest.raises(PackedFileError, match=missing.split("::")[0].replace(".", r"\.")):
        load_packed(path)


def test_codes_of_the_wrong_length_are_a_packed_file_error(model: nn.Module, tmp_path: Path) -> None:
    packed = compress(model, {"prune": {"amount": 0.5}, "quantize": {"bits": 4}}).packed
    tensors = dict(packed.tensors())
    tensors["3.weight::codes"] = tensors["3.weight::codes"][:-1].clone()
    path = write(tmp_path, safetensors.torch.save(tensors, metadata=packed.metadata()))
    with pytest.raises(PackedFileError, match="tensor '3.weight' is damaged"):
        load_packed(path)


def test_positions_that_disagree_with_the_recorded_count_are_a_packed_file_error(model: nn.Module, tmp_path: Path) -> None:
    packed = compress(model, {"prune": {"amount": 0.5}, "quantize": {"bits": 4}}).packed
    index = json.loads(packed.metadata()["compression_lab"])
    index["encoded"]["3.weight"]["shape"] = [9, 16]  # the bitmap now covers more than the tensor
    path = write(tmp_path, safetensors.torch.save(packed.tensors(), metadata={"compression_lab": json.dumps(index)}))
    with pytest.raises(PackedFileError, match="tensor '3.weight' is damaged"):
        load_packed(path)


def test_a_missing_file_is_a_packed_file_error(tmp_path: Path) -> None:
    with pytest.raises(PackedFileError, match="no such file"):
        load_packed(tmp_path / "absent.clp")


@pytest.mark.parametrize(
    "quantize",
    [{"scheme": "pow2", "bits": 2}, {"scheme": "float", "format": "fp8_e4m3"}, {"scheme": "linear", "bits": 2}],
)
def test_weights_rounded_to_zero_come_back_as_the_same_positive_zero(quantize: dict, tmp_path: Path) -> None:
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():  # tiny negative weights: flushed to zero, never to -0.0
        layer.weight.copy_(torch.tensor([[1.0, -1e-30, -1e-3, 0.5], [-1.0, -1e-20, 0.25, -2e-3]]))
    result = compress(layer, {"quantize": quantize})
    save_packed(result.packed, tmp_path / "tiny.packed")
    state, _ = load_packed(tmp_path / "tiny.packed")
    assert torch.equal(state["weight"].view(torch.int32), result.module.weight.detach().view(torch.int32))
    assert not torch.signbit(result.module.weight[result.module.weight == 0]).any()
