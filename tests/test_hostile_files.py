"""Hostile and broken input, engine level: every case gets one clear CompressionError, nothing a
file carries ever runs, and nothing is read that should not be.

Payloads would create a marker file if any unpickler ran them; every test that plants one
checks the marker never appears. Cases already covered elsewhere (tests/test_safety.py,
tests/test_loading.py, tests/test_onnx_import.py) are repeated here only where this file
takes them further (another format, through ``load_model`` rather than ``inspect_file``).
"""
from __future__ import annotations

import functools
import io
import json
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save_file
from torch import nn

import compression.io.safety.archives as safety_archives
import sample_models
from compression.compress import compress
from compression.errors import DataError, ModelLoadError, UnsafeFileError
from compression.io.evaluation_data import InputSpec, evaluation_from_npz
from compression.io.loading import load_model
from compression.io.onnx.export import export_onnx
from compression.io.safety import TORCH_EXPORT, TORCHSCRIPT, inspect_file

RUNS_CODE = r"run code"  # every pickle refusal says loading "would import and run code"


# --- payloads ----------------------------------------------------------------------------------


class OpensFile:
    """Unpickling calls open(marker, "w")."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class RunsShell:
    """Unpickling calls os.system("touch marker")."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Executes:
    """Unpickling calls exec() on Python source that creates the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


PAYLOADS = [OpensFile, RunsShell, Executes]


@pytest.fixture
def marker(tmp_path: Path):
    """The file a payload would create; asserted absent after the test."""
    path = tmp_path / "created_by_payload"
    yield path
    assert not path.exists(), "a payload ran"


def torch_saved(obj: object, **options) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **options)
    return buffer.getvalue()


def pickled_payload(marker: Path, payload=OpensFile) -> bytes:
    return pickle.dumps({"fc1.weight": payload(marker)}, protocol=2)


# --- valid files of every format, to break -----------------------------------------------------


class Small(nn.Module):
    """Not a zoo architecture: only files that carry their code can bring it."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 3)
        self.register_buffer("offset", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + self.offset


class NormOnly(nn.Module):
    """Parameters, but no Linear or Conv layer: nothing to prune or quantize."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * 2


class WritesFile(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, "written_by_the_model.pt")
        return x


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def mlp_state() -> dict[str, torch.Tensor]:
    return dict(sample_models.load_trained("mlp").state_dict())


@pytest.fixture(scope="module")
def small() -> nn.Module:
    torch.manual_seed(0)
    return Small().eval()


@pytest.fixture(scope="module")
def exported(small: nn.Module, folder: Path) -> Path:
    path = folder / "small.pt2"
    torch.export.save(torch.export.export(small, (torch.randn(2, 4),)), path)
    return path


@pytest.fixture(scope="module")
def scripted(small: nn.Module, folder: Path) -> Path:
    path = folder / "small_scripted.pt"
    torch.jit.save(torch.jit.script(small), path)
    return path


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return export_onnx(load_model("mlp"))


@pytest.fixture(scope="module")
def valid(folder: Path, mlp_state, exported: Path, scripted: Path, onnx_bytes: bytes) -> dict[str, Path]:
    """One loadable file per format."""
    files = {
        "pt": folder / "mlp.pt",
        "legacy_pt": folder / "mlp_legacy.pth",
        "safetensors": folder / "mlp.safetensors",
        "torchscript": scripted,
        "pt2": exported,
        "onnx": folder / "mlp.onnx",
        "npz": folder / "digits.npz",
    }
    torch.save(mlp_state, files["pt"])
    torch.save(mlp_state, files["legacy_pt"], _use_new_zipfile_serialization=False)
    save_file(mlp_state, files["safetensors"])
    files["onnx"].write_bytes(onnx_bytes)
    split = sample_models.digits_split("mlp")
    np.savez(files["npz"], x=split.x_test.numpy(), y=split.y_test.numpy())
    return files


def rewrite_zip(source: Path, target: Path, edit: Callable[[str, bytes], list[tuple[str, bytes]]]) -> Path:
    """Copy an archive member by member; ``edit(name, data)`` returns the members to write instead."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for member in original.infolist():
            for name, data in edit(member.filename, original.read(member)):
                copy.writestr(name, data)
    return target


def replace_member(suffix: str, data: bytes) -> Callable[[str, bytes], list[tuple[str, bytes]]]:
    return lambda name, original: [(name, data if name.endswith(suffix) else original)]


def load_npz(path: Path, model: str = "mlp"):
    return load_model(model, path)


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@functools.cache
def _digits_split():
    return sample_models.digits_split("mlp")


def digits(**changes: np.ndarray | None) -> dict[str, np.ndarray]:
    split = _digits_split()
    arrays = {"x": split.x_test.numpy(), "y": split.y_test.numpy(), **changes}
    return {key: value for key, value in arrays.items() if value is not None}


# --- pickles that would run code ---------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_state_dict_file_carrying_a_payload_is_refused_and_never_runs(tmp_path, marker, suffix, payload):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(torch_saved({"fc1.weight": payload(marker)}))
    with pytest.raises(UnsafeFileError, match=rf"^model{suffix}:data\.pkl refers to .*{RUNS_CODE}"):
        load_model(path)


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_legacy_torch_save_carrying_a_payload_is_refused_and_never_runs(tmp_path, marker, payload):
    path = tmp_path / "legacy.pth"
    path.write_bytes(torch_saved({"fc1.weight": payload(marker)}, _use_new_zipfile_serialization=False))
    with pytest.raises(UnsafeFileError, match=rf"legacy\.pth \(pickle \d\) refers to .*{RUNS_CODE}"):
        load_model(path)


def test_plain_pickle_with_a_payload_is_refused_and_never_runs(tmp_path, marker):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickled_payload(marker))
    with pytest.raises(UnsafeFileError, match=RUNS_CODE):
        load_model(path)


@pytest.mark.parametrize("protocol", [0, 1])
def test_text_protocol_pickle_with_a_payload_is_not_recognised_and_never_runs(tmp_path, marker, protocol):
    path = tmp_path / "old_protocol.pt"
    path.write_bytes(pickle.dumps(OpensFile(marker), protocol=protocol))
    with pytest.raises(ModelLoadError, match="not a recognised model file"):
        load_model(path)


@pytest.mark.parametrize("wrapper_key", ["state_dict", "model_state_dict"])
def test_checkpoint_dict_with_a_payload_beside_its_state_dict_is_refused(tmp_path, marker, mlp_state, wrapper_key):
    path = tmp_path / "checkpoint.pth"
    torch.save({wrapper_key: mlp_state, "optimizer": OpensFile(marker), "epoch": 3}, path)
    with pytest.raises(UnsafeFileError, match=RUNS_CODE):
        load_model(path)


# The code of a scripted nn.Linear: linear.py, or linear/___torch_mangle_<n>.py once this process
# has scripted another class of that name (as earlier tests do).
LINEAR_CODE = r"code/__torch__/torch/nn/modules/linear(?:/___torch_mangle_\d+)?\.py"


def replace_matching(pattern: str, data: bytes) -> Callable[[str, bytes], list[tuple[str, bytes]]]:
    return lambda name, original: [(name, data if re.search(f"/{pattern}$", name) else original)]


@pytest.mark.parametrize("member", [r"data\.pkl", r"constants\.pkl", LINEAR_CODE + r"\.debug_pkl"])
def test_torchscript_archive_with_a_payload_pickle_is_refused(tmp_path, marker, scripted, member):
    path = rewrite_zip(scripted, tmp_path / "scripted.pt", replace_matching(member, pickled_payload(marker)))
    with pytest.raises(UnsafeFileError, match=rf"scripted\.pt:{member} refers to .*{RUNS_CODE}"):
        load_model(path)


def test_torchscript_member_in_upper_case_is_still_scanned(tmp_path, marker, scripted):
    """torch's zip reader finds constants.pkl under CONSTANTS.PKL."""

    def edit(name: str, data: bytes) -> list[tuple[str, bytes]]:
        if name.endswith("/constants.pkl"):
            return [(name.replace("constants.pkl", "CONSTANTS.PKL"), pickled_payload(marker))]
        return [(name, data)]

    with pytest.raises(UnsafeFileError, match=RUNS_CODE):
        load_model(rewrite_zip(scripted, tmp_path / "upper.pt", edit))


def test_archive_with_two_data_pickles_differing_in_case_is_refused(tmp_path, marker, valid):
    """Which of two equal names torch reads is not what inspection can know."""

    def edit(name: str, data: bytes) -> list[tuple[str, bytes]]:
        if name.endswith("/data.pkl"):
            return [(name.replace("data.pkl", "DATA.PKL"), pickled_payload(marker)), (name, data)]
        return [(name, data)]

    with pytest.raises(ModelLoadError, match=r"two members named 'mlp/data\.pkl' \(ignoring case\)"):
        load_model(rewrite_zip(valid["pt"], tmp_path / "twice.pt", edit))


@pytest.mark.parametrize(
    "code",
    [
        "torch.ops.aten.from_file('/etc/passwd')",
        "torch.ops.c10d.broadcast_(x)",
        "torch.ops.debugprims.load_tensor('/etc/passwd')",
    ],
)
def test_torchscript_code_reaching_files_or_network_is_refused(tmp_path, scripted, code):
    def edit(name: str, data: bytes) -> list[tuple[str, bytes]]:
        if re.search(f"/{LINEAR_CODE}$", name):
            return [(name, data + f"\n# {code}\n".encode())]
        return [(name, data)]

    with pytest.raises(UnsafeFileError, match="reaches outside the model"):
        load_model(rewrite_zip(scripted, tmp_path / "reaching.pt", edit))


def test_torchscript_calling_torch_save_is_refused_by_load_model(tmp_path):
    path = tmp_path / "writer.pt"
    torch.jit.save(torch.jit.script(WritesFile()), path)
    with pytest.raises(UnsafeFileError, match="calls 'save'"):
        load_model(path)
    assert not (tmp_path / "written_by_the_model.pt").exists()


# .pt2: every way torch.export.load deserialises a member.


def _edit_config(config_suffix: str, change: Callable[[dict], None]) -> Callable[[str, bytes], list[tuple[str, bytes]]]:
    def edit(name: str, data: bytes) -> list[tuple[str, bytes]]:
        if name.endswith(config_suffix):
            document = json.loads(data)
            change(document)
            data = json.dumps(document).encode()
        return [(name, data)]

    return edit


def _add_member(edit, path: str, data: bytes):
    def with_member(name: str, original: bytes) -> list[tuple[str, bytes]]:
        written = edit(name, original)
        if name.endswith("archive_format"):
            written.append((name.replace("archive_format", path), data))
        return written

    return with_member


def _pt2_pickled_weight(marker: Path) -> Callable:
    def change(document: dict) -> None:
        first = next(iter(document["config"].values()))
        document["config"]["extra"] = {**first, "use_pickle": True, "path_name": "weight_9"}

    return _add_member(_edit_config("model_weights_config.json", change), "data/weights/weight_9", torch_saved(OpensFile(marker)))


def _pt2_opaque_constant(marker: Path) -> Callable:
    """use_pickle says no and tensor_meta describes bytes, but torch pickle.loads every
    opaque_obj_ constant."""
    payload = pickle.dumps(OpensFile(marker), protocol=2)

    def change(document: dict) -> None:
        document["config"]["evil"] = {
            "path_name": "opaque_obj_0", "is_param": False, "use_pickle": False,
            "tensor_meta": {"dtype": 1, "sizes": [{"as_int": len(payload)}], "requires_grad": False,  # uint8
                            "device": {"type": "cpu", "index": None}, "strides": [{"as_int": 1}],
                            "storage_offset": {"as_int": 0}, "layout": 7},
        }

    return _add_member(_edit_config("model_constants_config.json", change), "data/constants/opaque_obj_0", payload)


def _pt2_raw_member_read_as_pickle(marker: Path, path_name: str) -> Callable:
    """Two config entries, one reading weight_0 as raw bytes, one unpickling it."""

    def change(document: dict) -> None:
        first = next(iter(document["config"].values()))
        document["config"]["evil"] = {**first, "use_pickle": True, "path_name": path_name}

    payload = torch_saved(OpensFile(marker))
    payload += b"\0" * ((-len(payload)) % 4)  # raw bytes must fill whole float32s
    edit = _edit_config("model_weights_config.json", change)

    def with_payload(name: str, data: bytes) -> list[tuple[str, bytes]]:
        return edit(name, payload if name.endswith("data/weights/weight_0") else data)

    return with_payload


def _pt2_sample_inputs(marker: Path) -> Callable:
    return replace_member("sample_inputs/model.pt", torch_saved(((OpensFile(marker),), {})))


PT2_PAYLOADS = {
    "pickled weight": _pt2_pickled_weight,
    "opaque constant": _pt2_opaque_constant,
    "raw weight also unpickled": lambda marker: _pt2_raw_member_read_as_pickle(marker, "weight_0"),
    "raw weight unpickled in upper case": lambda marker: _pt2_raw_member_read_as_pickle(marker, "WEIGHT_0"),
    "sample inputs": _pt2_sample_inputs,
}


@pytest.mark.parametrize("where", PT2_PAYLOADS)
def test_pt2_with_a_payload_in_any_deserialised_member_is_refused(tmp_path, marker, exported, where):
    path = rewrite_zip(exported, tmp_path / "program.pt2", PT2_PAYLOADS[where](marker))
    with pytest.raises(UnsafeFileError, match=rf"^program\.pt2:data/.*refers to 'io\.open'.*{RUNS_CODE}"):
        load_model(path)


def test_pt2_embedding_torchscript_that_calls_torch_save_is_refused(tmp_path, exported):
    writer = tmp_path / "writer.pt"
    torch.jit.save(torch.jit.script(WritesFile()), writer)
    path = rewrite_zip(exported, tmp_path / "embeds.pt2", replace_member("sample_inputs/model.pt", writer.read_bytes()))
    with pytest.raises(UnsafeFileError, match="calls 'save'"):
        load_model(path)


def test_pt2_embedding_another_program_is_refused(tmp_path, exported):
    path = rewrite_zip(exported, tmp_path / "inner.pt2", replace_member("sample_inputs/model.pt", exported.read_bytes()))
    with pytest.raises(UnsafeFileError, match="embeds a torch.export program"):
        load_model(path)


def test_pt2_with_compiled_native_code_in_upper_case_is_refused(tmp_path, exported):
    path = rewrite_zip(exported, tmp_path / "native.pt2", _add_member(lambda n, d: [(n, d)], "data/LIB.SO", b"\x7fELF"))
    with pytest.raises(UnsafeFileError, match="compiled native code"):
        load_model(path)


# --- zip archives: bombs, lying sizes, members, nesting ----------------------------------------


def _bomb(path: Path, member: str, size: int = 8 * 1024**2) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, b"\0" * size)
    return path


@pytest.mark.parametrize("name", ["bomb.pt", "bomb.pth", "bomb.pt2"])
def test_zip_bomb_model_is_refused_before_decompressing(tmp_path, name):
    with pytest.raises(UnsafeFileError, match=r"\(ratio [\d,]+, limit 100\): this looks like a zip bomb"):
        load_model(_bomb(tmp_path / name, "bomb/data.pkl"))


def test_zip_bomb_nested_in_a_pt2_member_is_refused(tmp_path, exported):
    inner = _bomb(tmp_path / "inner.zip", "inner/data.pkl", 20 * 1024**2).read_bytes()
    path = rewrite_zip(exported, tmp_path / "nested.pt2", replace_member("sample_inputs/model.pt", inner))
    with pytest.raises(UnsafeFileError, match=r"nested\.pt2:data/sample_inputs/model\.pt: .*zip bomb"):
        load_model(path)


def test_zip_bomb_npz_is_refused(tmp_path):
    with pytest.raises(UnsafeFileError, match="zip bomb"):
        load_npz(_bomb(tmp_path / "bomb.npz", "x.npy"))


def _declare_sizes(path: Path, compressed: int | None, uncompressed: int | None) -> Path:
    """Overwrite the first central-directory entry's sizes (the local header keeps the truth)."""
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    if compressed is not None:
        struct.pack_into("<I", data, entry + 20, compressed)
    if uncompressed is not None:
        struct.pack_into("<I", data, entry + 24, uncompressed)
    path.write_bytes(bytes(data))
    return path


def test_zip_whose_directory_understates_a_member_is_refused_as_corrupt(tmp_path, valid):
    path = tmp_path / "lying.pt"
    path.write_bytes(valid["pt"].read_bytes())
    with pytest.raises(ModelLoadError, match=r"member 'mlp/data\.pkl' is truncated or corrupt \(Bad CRC-32"):
        load_model(_declare_sizes(path, 10, 10))


def test_bomb_declaring_its_compressed_size_as_its_size_is_only_decompressed_that_far(tmp_path):
    """A 50 MB member whose directory declares ratio 1: the ratio check passes, zipfile stops
    at the declared size, and the CRC then fails (nothing near 50 MB is ever held)."""
    path = tmp_path / "quiet_bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", pickle.dumps({}, protocol=2) + b"\0" * (50 * 1024**2))
    compressed = zipfile.ZipFile(path).infolist()[0].compress_size
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_model(_declare_sizes(path, None, compressed))


def test_npz_whose_directory_understates_a_member_is_a_data_error(tmp_path, valid):
    path = tmp_path / "lying.npz"
    path.write_bytes(valid["npz"].read_bytes())
    with pytest.raises(DataError, match="truncated|corrupt|not a readable"):
        load_npz(_declare_sizes(path, 200, 200))


def test_declared_total_over_the_file_limit_is_refused_as_a_bomb(tmp_path, valid):
    path = tmp_path / "huge.pt"
    path.write_bytes(valid["pt"].read_bytes())
    with pytest.raises(UnsafeFileError, match="declares .* bytes uncompressed.*zip bomb"):
        load_model(_declare_sizes(path, 0xFFFF0000, 0xFFFF0000))


@pytest.mark.parametrize(("name", "error"), [("many.pt", ModelLoadError), ("many.npz", DataError)])
def test_archive_with_too_many_members_is_refused(tmp_path, monkeypatch, name, error):
    monkeypatch.setattr(safety_archives, "MAX_ARCHIVE_MEMBERS", 10)
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("many/data.pkl", pickle.dumps({}, protocol=2))
        for index in range(20):
            archive.writestr(f"many/data/{index}.npy", b"")
    with pytest.raises(error, match="has 21 members; at most 10 are accepted"):
        load_model(path) if name.endswith(".pt") else load_npz(path)


def test_zip_holding_a_model_archive_is_not_taken_for_one(tmp_path, valid):
    path = tmp_path / "zipped.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mlp.pt", valid["pt"].read_bytes())
    with pytest.raises(ModelLoadError, match="not one written by torch.save"):
        load_model(path)


def test_npz_holding_an_archive_as_x_is_refused(tmp_path, valid):
    path = tmp_path / "nested.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", valid["pt"].read_bytes())
    with pytest.raises(DataError, match=r"member 'x\.npy' is not a readable \.npy array"):
        load_npz(path)


def test_bytes_before_the_archive_are_refused(tmp_path, valid):
    """Python's zipfile would shift every offset to skip them; torch's reader would not."""
    path = tmp_path / "prefixed.pt"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100 + valid["pt"].read_bytes())
    with pytest.raises(ModelLoadError, match="directory is 104 bytes away from where it says it is"):
        load_model(path)


def test_pt2_cut_before_its_directory_is_not_read_as_its_stored_sample_inputs(tmp_path, exported):
    data = exported.read_bytes()
    path = tmp_path / "cut.pt2"
    path.write_bytes(data[:-100])  # the last end record left is the stored sample-input archive's
    with pytest.raises(ModelLoadError, match="truncated or corrupt zip archive"):
        load_model(path)


# --- truncated and empty files -----------------------------------------------------------------

CUTS = [1, 8, 64, 0.25, 0.5, 0.9, -22, -1]  # bytes kept (a fraction of the file, or all but -n)


@pytest.mark.parametrize("cut", CUTS, ids=str)
@pytest.mark.parametrize("kind", ["pt", "legacy_pt", "safetensors", "torchscript", "pt2", "onnx"])
def test_truncated_model_file_is_refused_with_one_clear_message(tmp_path, valid, kind, cut):
    data = valid[kind].read_bytes()
    keep = cut if isinstance(cut, int) and cut > 0 else len(data) + cut if isinstance(cut, int) else int(len(data) * cut)
    path = tmp_path / f"cut{valid[kind].suffix}"
    path.write_bytes(data[:keep])
    with pytest.raises(ModelLoadError) as caught:
        load_model(path)
    assert not isinstance(caught.value, UnsafeFileError)
    message = str(caught.value)
    assert message.startswith(path.name), message
    assert any(word in message for word in ("truncated", "corrupt", "not a recognised", "not an ONNX", "unexpected EOF")), message


@pytest.mark.parametrize("cut", CUTS, ids=str)
def test_truncated_npz_is_a_data_error(tmp_path, valid, cut):
    data = valid["npz"].read_bytes()
    keep = cut if isinstance(cut, int) and cut > 0 else len(data) + cut if isinstance(cut, int) else int(len(data) * cut)
    path = tmp_path / "cut.npz"
    path.write_bytes(data[:keep])
    with pytest.raises(DataError, match=r"^cut\.npz (is|is not) .*(truncated or corrupt|not an \.npz archive)"):
        load_npz(path)


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model.bin", "model.safetensors", "model.pt2", "model.onnx"])
def test_zero_byte_model_file_is_reported_empty(tmp_path, name):
    (tmp_path / name).touch()
    with pytest.raises(ModelLoadError, match=rf"model file {name} is empty \(0 bytes\)"):
        load_model(tmp_path / name)


def test_zero_byte_npz_is_reported_empty(tmp_path):
    (tmp_path / "data.npz").touch()
    with pytest.raises(DataError, match=r"data file data\.npz is empty \(0 bytes\)"):
        load_npz(tmp_path / "data.npz")


# --- extensions that lie -----------------------------------------------------------------------


def test_safetensors_name_on_a_zip_is_refused(tmp_path, valid):
    path = tmp_path / "model.safetensors"
    path.write_bytes(valid["pt"].read_bytes())
    with pytest.raises(ModelLoadError, match="named .safetensors but is a zip archive"):
        load_model(path)


@pytest.mark.parametrize(("kind", "name"), [("safetensors", "weights.pt"), ("onnx", "graph.pt"), ("pt", "state.onnx")])
def test_content_not_extension_decides_how_a_model_file_is_read(tmp_path, valid, kind, name):
    path = tmp_path / name
    path.write_bytes(valid[kind].read_bytes())
    assert load_model(path).compressible


def test_onnx_name_on_a_pickle_payload_is_refused_and_never_runs(tmp_path, marker):
    path = tmp_path / "model.onnx"
    path.write_bytes(pickled_payload(marker))
    with pytest.raises(UnsafeFileError, match=RUNS_CODE):
        load_model(path)


def test_npz_name_on_a_pickle_payload_is_refused_and_never_runs(tmp_path, marker):
    path = tmp_path / "data.npz"
    path.write_bytes(pickled_payload(marker))
    with pytest.raises(DataError, match=r"data\.npz is not an \.npz archive \(numpy\.savez writes a zip"):
        load_npz(path)


def test_npz_name_on_a_single_npy_array_says_how_to_save_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    with path.open("wb") as stream:
        np.save(stream, np.zeros((3, 64), np.float32))
    with pytest.raises(DataError, match=r"single \.npy array .* numpy\.savez\(path, x=inputs, y=labels\)"):
        load_npz(path)


def test_npz_name_on_a_torch_archive_names_the_arrays_it_found(tmp_path, valid):
    path = tmp_path / "data.npz"
    path.write_bytes(valid["pt"].read_bytes())
    with pytest.raises(DataError, match=r"member 'mlp/data\.pkl' is not an \.npy array"):
        load_npz(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.safetensors", "onnx", "safetensors header claims .* the file is corrupt or not safetensors"),
        ("image.pt", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, r"not a recognised model file \(it starts with b'\\x89PNG"),
        ("notes.pt2", b"just some text", "not a recognised model file"),
        ("model.bin", b"\x08" + b"\xff" * 40, "not an ONNX file"),
    ],
)
def test_content_that_is_not_what_the_extension_says_gets_a_clear_refusal(tmp_path, valid, name, content, message):
    path = tmp_path / name
    path.write_bytes(valid[content].read_bytes() if isinstance(content, str) else content)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


# --- safetensors headers -----------------------------------------------------------------------


def _safetensors(path: Path, header: object, data: bytes = b"") -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _entry(dtype: str, shape: list, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        (b"{}", None, "header claims 10,000 bytes but the file has only 2"),  # length patched below
        (b'{"a": tru', b"", "garbage safetensors header: not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, b"", "garbage safetensors header: it nests too deeply"),
        ([1, 2], b"", "garbage safetensors header: not a JSON object"),
        (b'{"\xff": 1}', b"", "garbage safetensors header: not valid JSON"),
        ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 4, 12)}, bytes(12),
         "tensor 'b' starts at byte 4 .* without overlap or gap"),
        ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 12, 20)}, bytes(20),
         "tensor 'b' starts at byte 12 .* without overlap or gap"),
        ({"a": _entry("F32", [2], 0, 8)}, bytes(100), "tensors cover 8 bytes of data but the file holds 100"),
        ({"a": _entry("F32", [0], 8, 0)}, bytes(8), r"data_offsets \[8, 0\], which end before they begin"),
        ({"a": _entry("F32", [2], 0, 8)}, bytes(4), "truncated: tensor 'a' ends at byte 8 of the data but the file holds only 4"),
        ({"a": _entry("F32", [3], 0, 8)}, bytes(8), "tensor 'a' spans 8 bytes but its dtype and shape need 12"),
        ({"a": _entry("F128", [1], 0, 16)}, bytes(16), "garbage safetensors header: entry 'a'"),
        ({"a": _entry("F32", [True], 0, 4)}, bytes(4), "garbage safetensors header: entry 'a'"),
        ({"a": _entry("F32", [-1], 0, 4)}, bytes(4), "garbage safetensors header: entry 'a'"),
        ({"a": {"dtype": "F32", "shape": [1]}}, bytes(4), "garbage safetensors header: entry 'a'"),
    ],
    ids=["length-beyond-file", "not-json", "deep-json", "not-an-object", "not-utf8", "overlap", "gap",
         "trailing-bytes", "reversed-offsets", "out-of-range", "dtype-shape-mismatch", "unknown-dtype",
         "bool-dimension", "negative-dimension", "no-offsets"],
)
def test_safetensors_with_a_bad_header_is_refused_before_reading_tensors(tmp_path, monkeypatch, header, data, message):
    monkeypatch.setattr("compression.io.state_dict.load_file", _must_not_be_called("safetensors.load_file"))
    path = _safetensors(tmp_path / "bad.safetensors", header, data or b"")
    if data is None:
        path.write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_safetensors_header_length_of_two_to_the_63_is_refused(tmp_path):
    path = tmp_path / "huge_header.safetensors"
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(ModelLoadError, match="header claims 9,223,372,036,854,775,808 bytes"):
        load_model(path)


# --- NaN and infinite weights ------------------------------------------------------------------


def _with_value(state: dict[str, torch.Tensor], name: str, value: float) -> dict[str, torch.Tensor]:
    changed = {key: tensor.clone() for key, tensor in state.items()}
    changed[name].view(-1)[0] = value
    return changed


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("kind", ["pt", "legacy_pt", "safetensors", "fp16_pt", "torchscript", "pt2", "onnx"])
def test_non_finite_weights_are_refused_in_every_format(tmp_path, mlp_state, small, onnx_bytes, kind, value):
    if kind in ("torchscript", "pt2"):
        module = Small().eval()
        module.load_state_dict(_with_value(small.state_dict(), "fc.weight", value))
        path = tmp_path / ("bad.pt" if kind == "torchscript" else "bad.pt2")
        if kind == "torchscript":
            torch.jit.save(torch.jit.script(module), path)
        else:
            torch.export.save(torch.export.export(module, (torch.randn(2, 4),)), path)
        name = "fc.weight"
    elif kind == "onnx":
        proto = onnx.load_model_from_string(onnx_bytes)
        bias = next(init for init in proto.graph.initializer if init.name == "fc1.bias")
        array = numpy_helper.to_array(bias).copy()
        array[0] = value
        bias.CopyFrom(numpy_helper.from_array(array, "fc1.bias"))
        path = tmp_path / "bad.onnx"
        path.write_bytes(proto.SerializeToString())
        name = "fc1.bias"
    else:
        name = "fc2.weight"
        state = _with_value(mlp_state, name, value)
        path = tmp_path / ("bad.safetensors" if kind == "safetensors" else "bad.pt")
        if kind == "safetensors":
            save_file(state, path)
        elif kind == "fp16_pt":
            torch.save({key: tensor.half() for key, tensor in state.items()}, path)
        else:
            torch.save(state, path, _use_new_zipfile_serialization=kind == "pt")
    with pytest.raises(ModelLoadError, match=rf"tensor '{name}' holds NaN or infinite values"):
        load_model(path)


def test_non_finite_batch_norm_statistics_are_refused(tmp_path):
    state = _with_value(dict(sample_models.load_trained("bn_cnn").state_dict()), "bn1.running_var", float("nan"))
    torch.save(state, tmp_path / "bn.pt")
    with pytest.raises(ModelLoadError, match="'bn1.running_var' holds NaN or infinite values"):
        load_model(tmp_path / "bn.pt")


# --- no prunable layer -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_model_without_prunable_layers_loads_and_compresses_to_an_empty_report(tmp_path, suffix):
    """Nothing to prune or quantize is a valid, empty result (the Model page warns), not a crash."""
    path = tmp_path / f"norm_only{suffix}"
    if suffix == ".pt":
        torch.jit.save(torch.jit.script(NormOnly().eval()), path)
    else:
        torch.export.save(torch.export.export(NormOnly().eval(), (torch.randn(2, 4),)), path)
    model = load_model(path)
    assert model.compressible == ()
    for recipe in (
        {"prune": {"method": "magnitude", "amount": 0.5}},
        {"prune": {"method": "structured", "amount": 0.5}},
        {"quantize": {"scheme": "linear", "bits": 8}},
    ):
        report = compress(model, recipe).report
        assert (len(report.layers), report.sparsity) == (0, 0.0)


# --- parameter and size limits, checked before anything is materialised ------------------------


def _must_not_be_called(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} was called: the limit was not checked first")

    return refuse


@pytest.mark.parametrize("kind", ["pt", "legacy_pt", "safetensors", "torchscript", "pt2", "onnx"])
def test_model_over_max_parameters_is_refused_before_it_is_loaded(tmp_path, monkeypatch, valid, kind):
    for target in ("torch.load", "torch.jit.load", "torch.export.load", "compression.io.state_dict.load_file",
                   "compression.io.onnx.importing.read_onnx"):
        monkeypatch.setattr(target, _must_not_be_called(target))
    path = valid[kind]
    if kind == "torchscript":  # the small fixture's storages are too few bytes for a bound
        path = tmp_path / "wide.pt"
        torch.jit.save(torch.jit.script(Small(width=4096).eval()), path)
    if kind == "pt2":
        path = tmp_path / "wide.pt2"
        torch.export.save(torch.export.export(Small(width=512).eval(), (torch.randn(2, 512),)), path)
    with pytest.raises(ModelLoadError, match=r"holds (at least )?[\d,]+ parameters, over the limit max_parameters=1,000"):
        load_model(path, max_parameters=1000)


@pytest.mark.parametrize("emptied", [False, True], ids=["member-kept", "member-emptied"])
def test_pt2_declaring_a_huge_weight_in_a_tiny_file_is_refused_without_loading(tmp_path, monkeypatch, exported, emptied):
    """torch.export.load would allocate torch.zeros(declared size) for an empty raw payload."""
    monkeypatch.setattr("torch.export.load", _must_not_be_called("torch.export.load"))

    def change(document: dict) -> None:
        first = next(iter(document["config"].values()))
        first["tensor_meta"]["sizes"] = [{"as_int": 1_000_000}, {"as_int": 1_000_000}]

    edit = _edit_config("model_weights_config.json", change)
    path = rewrite_zip(
        exported, tmp_path / "huge.pt2",
        lambda name, data: edit(name, b"" if emptied and name.endswith("weight_0") else data),
    )
    message = "declares 1,000,000,000,000 values but is empty" if emptied else r"holds 1,000,000,000,0\d\d parameters, over the limit"
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_pt2_constant_declaring_values_over_an_empty_member_is_refused(tmp_path, monkeypatch, exported):
    """torch.export.load would allocate torch.zeros(declared size) for an empty raw payload."""
    monkeypatch.setattr("torch.export.load", _must_not_be_called("torch.export.load"))

    def change(document: dict) -> None:
        document["config"]["big"] = {
            "path_name": "tensor_constant_0", "is_param": False, "use_pickle": False,
            "tensor_meta": {"dtype": 7, "sizes": [{"as_int": 10**6}, {"as_int": 10**6}], "requires_grad": False,
                            "device": {"type": "cpu", "index": None}, "strides": [{"as_int": 10**6}, {"as_int": 1}],
                            "storage_offset": {"as_int": 0}, "layout": 7},
        }

    edit = _add_member(_edit_config("model_constants_config.json", change), "data/constants/tensor_constant_0", b"")
    with pytest.raises(ModelLoadError, match=r"payload 'data/constants/tensor_constant_0' declares 1,000,000,000,000 values but is empty"):
        load_model(rewrite_zip(exported, tmp_path / "zeros.pt2", edit))


@pytest.mark.parametrize("sizes", [[{"as_int": -3}, {"as_int": 4}], [{"as_int": "12"}], [{"as_expr": {"expr_str": "s0"}}]])
def test_pt2_weight_sizes_that_are_not_plain_counts_are_refused(tmp_path, exported, sizes):
    def change(document: dict) -> None:
        next(iter(document["config"].values()))["tensor_meta"]["sizes"] = sizes

    path = rewrite_zip(exported, tmp_path / "sizes.pt2", _edit_config("model_weights_config.json", change))
    with pytest.raises(ModelLoadError, match="stored tensors have fixed, non-negative sizes"):
        load_model(path)


def test_pt2_program_json_nesting_too_deeply_is_refused(tmp_path, exported):
    path = rewrite_zip(exported, tmp_path / "deep.pt2", replace_member("models/model.json", b"[" * 200_000 + b"]" * 200_000))
    with pytest.raises(ModelLoadError, match="nests too deeply"):
        load_model(path)


def test_safetensors_declaring_a_huge_tensor_in_a_tiny_file_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr("compression.io.state_dict.load_file", _must_not_be_called("safetensors.load_file"))
    path = _safetensors(tmp_path / "huge.safetensors", {"w": _entry("F32", [10**6, 10**6], 0, 4 * 10**12)}, bytes(8))
    with pytest.raises(ModelLoadError, match="truncated: tensor 'w' ends at byte 4,000,000,000,000"):
        load_model(path)


@pytest.mark.parametrize("kind", ["pt", "legacy_pt", "safetensors", "torchscript", "pt2", "onnx"])
def test_model_file_over_max_file_bytes_is_refused_unread(monkeypatch, valid, kind):
    monkeypatch.setattr("torch.load", _must_not_be_called("torch.load"))
    with pytest.raises(ModelLoadError, match=r"model file .* bytes, over the limit max_file_bytes=1,000\."):
        load_model(valid[kind], max_file_bytes=1000)


def test_npz_over_max_file_bytes_is_refused(valid):
    with pytest.raises(DataError, match=r"data file digits\.npz is [\d,]+ bytes, over the limit max_file_bytes=100,000"):
        load_model("mlp", valid["npz"], max_file_bytes=100_000)


# --- evaluation data (.npz) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (digits(y=np.zeros(7, np.int64)), "x has 450 samples but y has 7 labels"),
        (digits(y=np.full(450, 10)), r"labels from 10 to 10, but the model has 10 classes"),
        (digits(y=np.full(450, -1)), r"labels from -1 to -1, .* labels must be integers in \[0, 10\)"),
        (digits(y=np.zeros(450, np.float32)), "y must be a 1-D array of integer class labels"),
        (digits(y=np.zeros((450, 1), np.int64)), "y must be a 1-D array of integer class labels"),
        (digits(x=np.zeros((450, 8, 8), np.float32)), r"per-sample shape \(8, 8\) but the model takes \(64,\)"),
        (digits(x=np.zeros((450, 65), np.float32)), r"per-sample shape \(65,\) but the model takes \(64,\)"),
        (digits(x=np.full((450, 64), np.nan, np.float32)), "x holds NaN or infinite values"),
        (digits(x=np.full((450, 64), -np.inf, np.float32)), "x holds NaN or infinite values"),
        (digits(x=np.zeros((450, 64), np.complex64)), "x has dtype complex64; expected numbers"),
        (digits(x=np.array(["a"] * 450)), "x has dtype <U1; expected numbers"),
        (digits(x=np.zeros(450, dtype=[("a", "f4")])), "x has dtype"),
        (digits(x=np.array(3.0, np.float32)), r"x is empty \(shape \(\)\)"),
        ({"y": np.zeros(2, np.int64)}, "no array named 'x'"),
        (digits(images=np.zeros(2)), "allowed names are 'x', 'y', 'attention_mask'"),
        (digits(attention_mask=np.ones((450, 64), np.int64)), "attention_mask is only for text models"),
    ],
    ids=["lengths", "label-too-high", "label-negative", "float-labels", "2d-labels", "wrong-rank", "wrong-width",
         "nan-x", "inf-x", "complex-x", "string-x", "structured-x", "scalar-x", "no-x", "unknown-array",
         "mask-on-digits"],
)
def test_npz_that_does_not_fit_the_model_is_a_data_error(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_npz(write_npz(tmp_path / "data.npz", **arrays))


def test_npz_object_array_is_refused_and_never_unpickled(tmp_path, marker):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([OpensFile(marker), None], dtype=object))
    with pytest.raises(DataError, match=r"x is an object array \(pickled Python objects\), which is never loaded"):
        load_npz(path)


def _npy_member(shape: tuple, descr: str = "<f4", payload: bytes = bytes(64)) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": descr, "fortran_order": False, "shape": shape})
    return stream.getvalue() + payload


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"x.npy": _npy_member((10**12, 64))}, r"'x\.npy' declares shape \(1000000000000, 64\) of float32 .* holds only 64"),
        ({"x.npy": _npy_member((10**7, 64))}, r"declares shape \(10000000, 64\) .* the file is truncated or corrupt"),
        ({"x.npy": _npy_member((-4, 64))}, "negative dimension"),
        ({"x": b"raw bytes, not an array"}, r"member 'x' is not an \.npy array"),
        ({"x.npy": b"\x93NUMPY\x09\x00garbage"}, r"member 'x\.npy' is not a readable \.npy array"),
        ({"x.npy": _npy_member((2,), "|O", b"")}, "x is an object array"),
        ({"x.npy": _npy_member((2, 64)) + b"", "X.NPY": _npy_member((2, 64))}, "two members named 'X.NPY'"),
    ],
    ids=["terabytes-declared", "gigabytes-declared", "negative-shape", "not-npy", "bad-npy-header",
         "object-dtype-header", "duplicate-member"],
)
def test_npz_member_headers_are_checked_before_numpy_allocates(tmp_path, members, message):
    path = tmp_path / "crafted.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_npz_for_a_model_without_recorded_inputs_that_cannot_run_it_is_a_data_error(tmp_path, scripted):
    path = write_npz(tmp_path / "data.npz", x=np.zeros((4, 7), np.float32))
    with pytest.raises(DataError, match=r"the model could not run on x \(per-sample shape \(7,\)"):
        evaluation_from_npz(path, torch.jit.load(str(scripted)), InputSpec())


# --- ONNX --------------------------------------------------------------------------------------


def _matmul_model(**make_model) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], **make_model)


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_onnx_initializer_in_an_external_file_is_never_read(tmp_path, location):
    proto = _matmul_model()
    weight = proto.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value=location)
    (tmp_path / "weights.bin").write_bytes(np.zeros(12, np.float32).tobytes())
    path = tmp_path / "external.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match="keeps tensors in external files"):
        load_model(path)


def test_onnx_function_constant_in_an_external_file_is_never_read(tmp_path, monkeypatch):
    """Even with the file beside the working directory (onnx.checker then accepts the path),
    onnxruntime is never asked to read it."""
    monkeypatch.chdir(tmp_path)
    constant = helper.make_node("Constant", [], ["c"], value=helper.make_tensor("secret", TensorProto.FLOAT, [3], [0, 0, 0]))
    tensor = constant.attribute[0].t
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="secret.bin")
    tensor.external_data.add(key="length", value="12")
    function = helper.make_function(
        "lab.fn", "AddSecret", ["x"], ["y"], [constant, helper.make_node("Add", ["x", "c"], ["y"])],
        [helper.make_opsetid("", 17)],
    )
    proto = _matmul_model(functions=[function])
    proto.graph.node[0].output[0] = "xw"
    proto.graph.node.append(helper.make_node("AddSecret", ["xw"], ["y"], domain="lab.fn"))
    proto.opset_import.append(helper.make_opsetid("lab.fn", 1))
    (tmp_path / "secret.bin").write_bytes(np.full(3, 7, np.float32).tobytes())
    path = tmp_path / "function.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match=r"keeps tensors of its functions in external files \(secret\)"):
        load_model(path)


def test_onnx_custom_operator_domain_is_a_load_error(tmp_path):
    proto = _matmul_model()
    proto.graph.node[0].op_type = "Launch"
    proto.graph.node[0].domain = "evil.ops"
    proto.opset_import.append(helper.make_opsetid("evil.ops", 1))
    path = tmp_path / "custom.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load the ONNX model"):
        load_model(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda init: init.dims.__setitem__(0, 4000), "raw_data size .* is too small for the declared shape"),
        (lambda init: (init.ClearField("raw_data"), init.ClearField("float_data")), "one and only one value field"),
    ],
    ids=["dims-over-data", "dims-without-data"],
)
def test_onnx_initializer_whose_dims_lie_about_its_data_is_refused(tmp_path, change, message):
    proto = _matmul_model()
    weight = proto.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(np.ones((4, 3), np.float32), "w"))  # raw_data form
    change(weight)
    path = tmp_path / "dims.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_onnx_without_opset_as_a_cut_at_a_field_boundary_leaves_is_refused(tmp_path, onnx_bytes):
    proto = onnx.load_model_from_string(onnx_bytes)
    del proto.opset_import[:]
    path = tmp_path / "no_opset.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match="failed onnx.checker .*opset_import"):
        load_model(path)


# --- Hugging Face folders ----------------------------------------------------------------------


def test_hf_folder_with_a_payload_in_pytorch_model_bin_is_refused(tmp_path, marker):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "pytorch_model.bin").write_bytes(torch_saved({"embeddings.weight": OpensFile(marker)}))
    with pytest.raises(UnsafeFileError, match=rf"pytorch_model\.bin:data\.pkl refers to 'io\.open'.*{RUNS_CODE}"):
        load_model(tmp_path)


def test_hf_config_nesting_too_deeply_is_refused(tmp_path, mlp_state):
    (tmp_path / "config.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    save_file(mlp_state, tmp_path / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"config\.json is not a model file's JSON: it nests too deeply"):
        load_model(tmp_path)


# --- what passes still passes ------------------------------------------------------------------


def test_every_valid_file_still_loads_and_is_told_apart_by_content(valid):
    assert {kind: inspect_file(path).kind for kind, path in valid.items() if kind in ("torchscript", "pt2")} == {
        "torchscript": TORCHSCRIPT, "pt2": TORCH_EXPORT,
    }
    for kind in ("pt", "legacy_pt", "safetensors", "onnx"):
        assert load_model(valid[kind], valid["npz"]).evaluation.size == 450 - 450 // 4  # a quarter calibrates
