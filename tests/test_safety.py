"""Static inspection of untrusted model files: nothing from a refused file is ever executed."""
from __future__ import annotations

import json
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from compression.errors import DataError, ModelLoadError, UnsafeFileError
from compression.io.safety import (
    SAFETENSORS,
    TORCH_EXPORT,
    TORCH_SAVE,
    TORCH_SAVE_LEGACY,
    TORCHSCRIPT,
    inspect_file,
    inspect_hf_folder,
    inspect_npz,
    pickle_globals,
)


class CreatesFile:
    """Unpickling this calls open(path, "w"): a pickle payload that leaves visible evidence."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class WritesFile(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, "written_by_the_model.pt")
        return x


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return SmallNet().eval()


@pytest.fixture(scope="module")
def exported(net: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "net.pt2"
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(net, (torch.randn(4, 1, 6, 6),), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return path


def rewrite_program(source: Path, target: Path, edit) -> Path:
    """Copy a .pt2, passing its models/model.json through ``edit``."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for member in original.infolist():
            data = original.read(member)
            if member.filename.endswith("models/model.json"):
                program = json.loads(data)
                edit(program)
                data = json.dumps(program).encode()
            copy.writestr(member, data)
    return target


def nodes(program: dict) -> list[dict]:
    return program["graph_module"]["graph"]["nodes"]


# --- pickles -------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_reduce_payload_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    evidence = tmp_path / "created_by_payload.txt"
    path = tmp_path / "model.pt"
    payload = {"weight": torch.zeros(2), "hook": CreatesFile(evidence)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(UnsafeFileError, match=r"'io\.open'.*run code.*state_dict"):
        inspect_file(path)
    assert not evidence.exists()


def test_whole_pickled_module_is_refused_with_state_dict_advice(tmp_path: Path, net: nn.Module) -> None:
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    with pytest.raises(UnsafeFileError, match=r"SmallNet.*torch\.save\(model\).*model\.state_dict\(\)"):
        inspect_file(path)


def test_stack_global_names_pushed_by_literals_are_resolved() -> None:
    assert pickle_globals(pickle.dumps(OrderedDict(), protocol=4), "example") == ["collections.OrderedDict"]


def test_stack_global_whose_names_are_not_literal_pushes_is_refused(tmp_path: Path) -> None:
    # "posix", "system" pushed, then a tuple pushed and popped: a real unpickler would still
    # import posix.system; the scanner cannot tell, so it refuses.
    disguised = (
        b"\x80\x04\x8c\x05posix\x8c\x06system)0\x93\x8c\x04true\x85R."
    )
    path = tmp_path / "disguised.pt"
    path.write_bytes(disguised)
    with pytest.raises(UnsafeFileError, match="computes at load time"):
        inspect_file(path)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_pickle_scan_of_arbitrary_bytes_fails_only_with_model_load_error(noise: bytes) -> None:
    try:
        pickle_globals(b"\x80\x02" + noise, "noise")
    except ModelLoadError:
        pass


# --- empty, truncated, unrecognised --------------------------------------------------------


def test_zero_byte_file_is_reported_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.touch()
    with pytest.raises(ModelLoadError, match=r"empty \(0 bytes\)"):
        inspect_file(path)


def test_file_over_the_size_limit_is_refused(tmp_path: Path, net: nn.Module) -> None:
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(ModelLoadError, match="over the limit max_file_bytes=1,000"):
        inspect_file(path, max_file_bytes=1000)


def test_truncated_pt_is_reported(tmp_path: Path, net: nn.Module) -> None:
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt zip"):
        inspect_file(path)


def test_truncated_legacy_pt_is_reported(tmp_path: Path, net: nn.Module) -> None:
    path = tmp_path / "legacy.pt"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="truncated or corrupt pickle"):
        inspect_file(path)


def test_truncated_safetensors_is_reported(tmp_path: Path, net: nn.Module) -> None:
    path = tmp_path / "net.safetensors"
    save_file(net.state_dict(), path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match=r"truncated: tensor '.*' ends at byte"):
        inspect_file(path)


def test_safetensors_with_garbage_header_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "garbage.safetensors"
    header = b"{this is not json"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(ModelLoadError, match="garbage safetensors header: not valid JSON"):
        inspect_file(path)


def test_safetensors_header_longer_than_the_file_is_reported_truncated(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(ModelLoadError, match="truncated: its safetensors header claims 10,000 bytes"):
        inspect_file(path)


def test_zip_named_safetensors_is_reported(tmp_path: Path, net: nn.Module) -> None:
    path = tmp_path / "really_a_zip.safetensors"
    torch.save(net.state_dict(), path)
    with pytest.raises(ModelLoadError, match="named .safetensors but is a zip archive"):
        inspect_file(path)


def test_unrecognised_content_lists_supported_formats(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_text("not a model at all")
    supported = r"not a recognised model file.*\.safetensors.*\.pt2.*TorchScript.*ONNX"
    with pytest.raises(ModelLoadError, match=supported):
        inspect_file(path)


# --- zip bombs -----------------------------------------------------------------------------


def test_highly_compressed_member_is_refused_as_zip_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\0" * (8 * 1024**2))
    with pytest.raises(UnsafeFileError, match="zip bomb"):
        inspect_file(path)


def test_declared_sizes_over_the_limit_are_refused_before_reading(tmp_path: Path, net: nn.Module) -> None:
    path = tmp_path / "huge.pt"
    torch.save(net.state_dict(), path)
    data = bytearray(path.read_bytes())
    directory = data.index(b"PK\x01\x02")  # first central-directory entry
    data[directory + 20 : directory + 28] = struct.pack("<II", 0xFFFF0000, 0xFFFF0000)  # sizes
    path.write_bytes(bytes(data))
    with pytest.raises(UnsafeFileError, match="declares .* bytes uncompressed.*zip bomb"):
        inspect_file(path)


def test_npz_bomb_is_refused_and_corrupt_npz_is_a_data_error(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", b"\0" * (8 * 1024**2))
    with pytest.raises(UnsafeFileError, match="zip bomb"):
        inspect_npz(bomb)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="truncated or corrupt zip"):
        inspect_npz(corrupt)


# --- legitimate files ----------------------------------------------------------------------


def test_files_written_by_torch_pass_and_are_told_apart_by_content(
    tmp_path: Path, net: nn.Module, exported: Path
) -> None:
    torch.save(net.state_dict(), tmp_path / "state.pt")
    torch.save(net.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(net.state_dict(), tmp_path / "weights.pt")  # safetensors under a torch name
    torch.jit.save(torch.jit.script(net), tmp_path / "scripted.pth")
    torch.jit.save(torch.jit.trace(net, torch.randn(2, 1, 6, 6)), tmp_path / "traced.pt")
    names = ("state.pt", "legacy.pth", "weights.pt", "scripted.pth", "traced.pt")
    kinds = {name: inspect_file(tmp_path / name).kind for name in names}
    assert kinds == {
        "state.pt": TORCH_SAVE,
        "legacy.pth": TORCH_SAVE_LEGACY,
        "weights.pt": SAFETENSORS,
        "scripted.pth": TORCHSCRIPT,
        "traced.pt": TORCHSCRIPT,
    }
    report = inspect_file(exported)
    assert (report.kind, report.parameter_count) == (TORCH_EXPORT, sum(p.numel() for p in net.parameters()))


def test_safetensors_header_gives_the_exact_parameter_count(tmp_path: Path, net: nn.Module) -> None:
    save_file(net.state_dict(), tmp_path / "net.safetensors")
    count = inspect_file(tmp_path / "net.safetensors").parameter_count
    assert count == sum(p.numel() for p in net.parameters())


# --- TorchScript and torch.export programs -------------------------------------------------


def test_torchscript_calling_torch_save_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "writer.pt"
    torch.jit.save(torch.jit.script(WritesFile()), path)
    with pytest.raises(UnsafeFileError, match="calls 'save'"):
        inspect_file(path)


def test_export_shape_expression_with_python_is_refused(tmp_path: Path, exported: Path) -> None:
    evidence = tmp_path / "created_by_sympify.txt"

    def inject(program: dict) -> None:
        size = program["graph_module"]["graph"]["tensor_values"]["x"]["sizes"][0]
        size["as_expr"]["expr_str"] = f"__import__('pathlib').Path('{evidence}').touch()"

    path = rewrite_program(exported, tmp_path / "expression.pt2", inject)
    with pytest.raises(UnsafeFileError, match="not arithmetic on shapes"):
        inspect_file(path)
    assert not evidence.exists()


def test_export_guard_with_python_is_refused(tmp_path: Path, exported: Path) -> None:
    def inject(program: dict) -> None:
        program["guards_code"] = ["L['x'].size()[0] == 4, \"\"), __import__('os').getcwd(\""]

    path = rewrite_program(exported, tmp_path / "guard.pt2", inject)
    with pytest.raises(UnsafeFileError, match="shape guard"):
        inspect_file(path)


@pytest.mark.parametrize(
    "target",
    [
        "torch.serialization.os.system",  # resolved by getattr from the torch module
        "torch.ops.aten.save.default",  # a real operator, but it writes files
        "torch.ops.aten.__class__.__init__",
        "torch.ops.mylib.custom.default",
        "_operator.methodcaller",
    ],
)
def test_export_node_calling_anything_but_a_tensor_operator_is_refused(
    tmp_path: Path, exported: Path, target: str
) -> None:
    def inject(program: dict) -> None:
        nodes(program)[0]["target"] = target

    path = rewrite_program(exported, tmp_path / "target.pt2", inject)
    with pytest.raises(UnsafeFileError, match=f"calls '{re.escape(target)}', which is not a tensor operator"):
        inspect_file(path)


@pytest.mark.parametrize(
    "target",
    ["torch.ops.aten.__and__.Tensor", "torch.ops.higher_order.cond", "_operator.getitem", "torch.sym_max"],
)
def test_export_node_calling_registered_and_shape_operators_passes(
    tmp_path: Path, exported: Path, target: str
) -> None:
    def inject(program: dict) -> None:
        nodes(program)[0]["target"] = target

    assert inspect_file(rewrite_program(exported, tmp_path / "target.pt2", inject)).kind == TORCH_EXPORT


def test_export_with_native_code_is_refused(tmp_path: Path, exported: Path) -> None:
    path = tmp_path / "native.pt2"
    path.write_bytes(exported.read_bytes())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("net/data/aotinductor/model/model.so", b"\x7fELF")
    with pytest.raises(UnsafeFileError, match="compiled native code"):
        inspect_file(path)


def test_export_with_pickled_payload_in_sample_inputs_is_refused(tmp_path: Path, exported: Path) -> None:
    evidence = tmp_path / "created_by_sample_inputs.txt"
    payload = tmp_path / "payload.pt"
    torch.save(((CreatesFile(evidence),), {}), payload)
    path = tmp_path / "inputs.pt2"
    with zipfile.ZipFile(exported) as original, zipfile.ZipFile(path, "w") as copy:
        for member in original.infolist():
            is_inputs = member.filename.endswith("sample_inputs/model.pt")
            copy.writestr(member, payload.read_bytes() if is_inputs else original.read(member))
    with pytest.raises(UnsafeFileError, match="io.open"):
        inspect_file(path)
    assert not evidence.exists()


# --- Hugging Face folders ------------------------------------------------------------------


def test_hf_config_asking_for_custom_code_is_refused(tmp_path: Path, net: nn.Module) -> None:
    config = {"model_type": "bert", "auto_map": {"AutoModel": "modeling.Net"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(net.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(UnsafeFileError, match="custom code"):
        inspect_hf_folder(tmp_path)
