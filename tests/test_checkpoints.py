"""Checkpoints as researchers save them: Hugging Face folders sharded behind an index
(safetensors or pytorch_model.bin), and float16/bfloat16 weights. Each loads in float32, counts
its parameters across shards before loading, says what its files store, compresses and scores;
an index naming a shard outside the folder, or a missing one, is refused in one line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import compression
from compression.cli import main
from compression.errors import ModelLoadError, UnsafeFileError
from compression.io.safety import SAFETENSORS, inspect_file, inspect_hf_folder

transformers = pytest.importorskip("transformers")
HALF_AND_4_BIT = {"prune": {"amount": 0.5, "scope": "global"}, "quantize": {"bits": 4}}
SHARD_SIZE = "20KB"  # a few shards of each tiny model below
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
INDEX = "model.safetensors.index.json"


def _llama() -> torch.nn.Module:
    config = transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=64, vocab_size=256)
    return transformers.LlamaForCausalLM(config)


def _bert() -> torch.nn.Module:
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=100, max_position_embeddings=64)
    return transformers.BertModel(config)


# name → (build, the parameters loaded: a sentence embedder leaves BERT's pooler out)
ARCHITECTURES = {
    "llama": (_llama, lambda model: model.parameters()),
    "bert": (_bert, lambda model: (p for name, p in model.named_parameters() if not name.startswith("pooler."))),
}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> dict[tuple[str, str], tuple[Path, int]]:
    """(architecture, dtype) → (a folder saved in that dtype in shards, the parameters loaded)."""
    built = {}
    for name, (build, loaded) in ARCHITECTURES.items():
        torch.manual_seed(0)
        model = build()
        count = sum(p.numel() for p in loaded(model))
        for dtype_name, dtype in DTYPES.items():
            folder = tmp_path_factory.mktemp(f"{name}-{dtype_name}")
            model.to(dtype).save_pretrained(folder, max_shard_size=SHARD_SIZE)
            built[name, dtype_name] = folder, count
    return built


def shards(folder: Path, index: str = INDEX) -> list[Path]:
    names = json.loads((folder / index).read_text())["weight_map"].values()
    return [folder / name for name in sorted(set(names))]


def tensor_bytes(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with safe_open(path, "pt") as stored:
            tensors = [stored.get_tensor(key) for key in stored.keys()]
            total += sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    return total


def copy_of(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


def edit_index(folder: Path, change) -> None:
    index = json.loads((folder / INDEX).read_text())
    change(index["weight_map"])
    (folder / INDEX).write_text(json.dumps(index))


def _must_not_be_called(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} was called: the limit was not checked first")

    return refuse


# --- sharded half-precision folders --------------------------------------------------------------


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_sharded_half_precision_folder_loads_in_float32_with_every_parameter(sharded, name, dtype_name) -> None:
    folder, count = sharded[name, dtype_name]
    assert len(shards(folder)) >= 3 and not (folder / "model.safetensors").exists()
    model = compression.load_model(folder)
    parameters = list(model.module.parameters())
    assert sum(p.numel() for p in parameters) == count
    assert {p.dtype for p in parameters} == {torch.float32}
    assert f"stored as {dtype_name}, computed in float32" in model.description


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_sharded_weights_come_back_as_stored_upcast(sharded, dtype_name) -> None:
    folder, _ = sharded["llama", dtype_name]
    state = compression.load_model(folder).module.state_dict()
    for path in shards(folder):
        with safe_open(path, "pt") as stored:
            for key in stored.keys():
                assert stored.get_tensor(key).dtype == DTYPES[dtype_name]
                assert torch.equal(state[key], stored.get_tensor(key).float()), key


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_stored_bytes_are_the_shards_tensor_bytes_in_their_dtype(sharded, name, dtype_name) -> None:
    folder, _ = sharded[name, dtype_name]
    stored = compression.load_model(folder).stored_weights
    assert stored.total_bytes == tensor_bytes(shards(folder))
    assert stored.dtypes == (dtype_name,)
    assert str(stored).endswith(f" as {dtype_name}")


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_sharded_half_precision_folder_compresses_and_is_scored(sharded, name, dtype_name) -> None:
    model = compression.load_model(sharded[name, dtype_name][0])
    baseline = compression.evaluate(model)
    result = compression.compress(model, HALF_AND_4_BIT)
    scored = compression.evaluate(model, result.module)
    assert scored.metric == baseline.metric and scored.baseline_value == baseline.value
    assert result.report.sparsity == pytest.approx(0.5, abs=0.01)
    # Ratios stay against the nominal fp32 size: 4 bytes per value, twice what the shards hold.
    assert 0 < result.report.encoded_bytes < model.stored_weights.total_bytes < result.report.dense_fp32_bytes


def test_the_safety_scan_checks_and_counts_every_shard_the_index_names(sharded) -> None:
    folder, _ = sharded["llama", "bfloat16"]
    weights = inspect_hf_folder(folder)
    assert list(weights.files) == shards(folder) and weights.use_safetensors and weights.exact
    assert weights.minimum_parameters == tensor_bytes(shards(folder)) // 2


def test_a_safetensors_shard_whose_header_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path) -> None:
    """0x80 also starts every pickle; one shard in a few hundred has such a header length."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode().ljust(0x180)
    path = tmp_path / "shard.bin"  # no .safetensors name to go by
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    assert path.read_bytes()[:1] == b"\x80"
    report = inspect_file(path)
    assert (report.kind, report.parameter_count) == (SAFETENSORS, 1)


# --- tampered indexes ----------------------------------------------------------------------------


@pytest.mark.parametrize("outside", ["../x.safetensors", "/tmp/x.safetensors", "sub/x.safetensors", ".."])
def test_an_index_naming_a_shard_outside_the_folder_is_refused_in_one_line(sharded, tmp_path, outside) -> None:
    folder = copy_of(sharded["llama", "bfloat16"][0], tmp_path / "model")
    shutil.copy(shards(folder)[0], tmp_path / "x.safetensors")  # a real file there: never read
    edit_index(folder, lambda weight_map: weight_map.update({"lm_head.weight": outside}))
    with pytest.raises(UnsafeFileError, match=rf"model/{INDEX} names shard '{outside}', outside the folder") as refused:
        compression.load_model(folder)
    assert "\n" not in str(refused.value)


def test_an_index_naming_a_missing_shard_is_refused_in_one_line(sharded, tmp_path) -> None:
    folder = copy_of(sharded["llama", "bfloat16"][0], tmp_path / "model")
    missing = shards(folder)[1]
    missing.unlink()
    message = rf"{INDEX} names shard '{missing.name}', which is not in the folder"
    with pytest.raises(ModelLoadError, match=message) as refused:
        compression.load_model(folder)
    assert "\n" not in str(refused.value)


def test_an_index_without_a_weight_map_is_refused(sharded, tmp_path) -> None:
    folder = copy_of(sharded["llama", "bfloat16"][0], tmp_path / "model")
    (folder / INDEX).write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ModelLoadError, match=f"{INDEX} has no weight_map"):
        compression.load_model(folder)


def test_a_shard_the_index_does_not_name_is_never_read_nor_counted(sharded, tmp_path) -> None:
    """transformers opens only the shards the index names; a stray file is ignored, unread."""
    original, count = sharded["llama", "bfloat16"]
    folder = copy_of(original, tmp_path / "model")
    (folder / "model-00009-of-00009.safetensors").write_bytes(b"not a safetensors file")
    model = compression.load_model(folder)
    assert sum(p.numel() for p in model.module.parameters()) == count
    assert model.stored_weights.total_bytes == tensor_bytes(shards(original))


def test_a_sharded_folder_over_max_parameters_is_refused_before_it_is_loaded(sharded, monkeypatch) -> None:
    for target in ("transformers.AutoModelForCausalLM.from_pretrained", "transformers.modeling_utils.safe_open",
                   "torch.load", "compression.io.state_dict.load_file"):
        monkeypatch.setattr(target, _must_not_be_called(target))
    folder, count = sharded["llama", "bfloat16"]
    with pytest.raises(ModelLoadError, match=rf"holds {count:,} parameters, over the limit max_parameters=1,000\."):
        compression.load_model(folder, max_parameters=1000)


# --- sharded pytorch_model.bin ---------------------------------------------------------------------


class OpensFile:
    """Unpickling calls open(marker, "w")."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def save_bin_shards(model: torch.nn.Module, folder: Path, count: int = 3) -> list[Path]:
    """As transformers 4 wrote them (save_pretrained(safe_serialization=False)): shards of
    torch.save state dicts and pytorch_model.bin.index.json."""
    model.config.save_pretrained(folder)
    state = model.state_dict()
    names = [f"pytorch_model-{i + 1:05d}-of-{count:05d}.bin" for i in range(count)]
    weight_map = {key: names[i % count] for i, key in enumerate(state)}
    for name in names:
        torch.save({key: state[key].clone() for key, shard in weight_map.items() if shard == name}, folder / name)
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return [folder / name for name in names]


def test_sharded_pytorch_model_bin_loads_with_its_stored_bytes(tmp_path) -> None:
    torch.manual_seed(0)
    original = _bert().to(torch.float16)
    save_bin_shards(original, tmp_path)
    model = compression.load_model(tmp_path)
    stored = sum(t.numel() * 2 for t in original.state_dict().values())  # every tensor float16
    assert model.stored_weights.bytes_by_dtype == {"float16": stored}
    assert {p.dtype for p in model.module.parameters()} == {torch.float32}
    assert compression.evaluate(model).value == pytest.approx(1.0)


def test_a_payload_in_one_pytorch_model_bin_shard_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "created_by_payload"
    folder = tmp_path / "model"
    folder.mkdir()
    torch.manual_seed(0)
    paths = save_bin_shards(_bert(), folder)
    torch.save({"pooler.dense.weight": OpensFile(marker)}, paths[1])
    with pytest.raises(UnsafeFileError, match=rf"{paths[1].name}:data\.pkl refers to 'io\.open'"):
        compression.load_model(folder)
    assert not marker.exists()


# --- half-precision state dicts of zoo architectures -----------------------------------------------


@pytest.mark.parametrize(("suffix", "dtype_name"), [(".safetensors", "bfloat16"), (".pt", "float16")])
def test_a_half_precision_state_dict_loads_in_float32_and_reports_its_stored_bytes(tmp_path, suffix, dtype_name):
    base = compression.load_model("mlp")
    state = {key: value.to(DTYPES[dtype_name]) for key, value in base.module.state_dict().items()}
    path = tmp_path / f"mlp{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    model = compression.load_model(path)
    assert model.stored_weights.bytes_by_dtype == {dtype_name: sum(t.numel() * 2 for t in state.values())}
    assert {t.dtype for t in model.module.state_dict().values()} == {torch.float32}
    assert f"stored as {dtype_name}" in model.description
    assert compression.evaluate(model).value == pytest.approx(compression.evaluate(base).value, abs=0.02)


def test_a_float32_state_dict_reports_its_bytes_without_an_upcast_note(tmp_path) -> None:
    path = tmp_path / "mlp.safetensors"
    save_file(compression.load_model("mlp").module.state_dict(), path)
    model = compression.load_model(path)
    assert model.stored_weights.dtypes == ("float32",) and "stored as" not in model.description


# --- the command line --------------------------------------------------------------------------------


def test_info_says_what_the_checkpoint_stores_beside_the_float32_it_loads(sharded, capsys) -> None:
    folder, _ = sharded["llama", "bfloat16"]
    assert main(["info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    stored = tensor_bytes(shards(folder))
    assert info["checkpoint"] == {"bytes": stored, "dtypes": {"bfloat16": stored}}
    assert main(["info", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("checkpoint: ") and " as bfloat16 (loaded as float32: " in line for line in lines)
