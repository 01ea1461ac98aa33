"""Hostile uploads through the Model page (Streamlit AppTest): one clear error, the session
keeps its model, the app goes on working, nothing a file carries runs, and a refused upload
leaves no file behind in the upload folder; names cannot place a file outside it."""
from __future__ import annotations

import io
import json
import os
import pickle
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as safetensors_save
from streamlit.testing.v1 import AppTest
from torch import nn

import sample_models
from tests.ui.test_pages import assert_clean, open_page
from ui import cache, uploads

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"
MARKER = "created_by_payload"


class OpensFile:
    """Unpickling calls open(marker, "w")."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class NormOnly(nn.Module):
    """No Linear or Conv layer: nothing to prune or quantize."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


def saved(obj: object, **options) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **options)
    return buffer.getvalue()


def mlp_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """The mlp's weights, nudged by ``seed`` so each test's upload is new to the model cache."""
    state_dict = {k: v.clone() for k, v in sample_models.load_trained("mlp").state_dict().items()}
    state_dict["fc3.bias"] += seed * 1e-6
    return state_dict


def safetensors_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    return safetensors_save(state_dict)


def pt2_unpickling_a_raw_weight(marker: Path) -> bytes:
    """A .pt2 whose weights config reads weight_0 as raw bytes and also unpickles it: the
    payload that went through before compression.io.safety checked such aliases."""

    class Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    buffer = io.BytesIO()
    torch.export.save(torch.export.export(Small().eval(), (torch.randn(2, 4),)), buffer)
    payload = saved(OpensFile(marker))
    payload += b"\0" * ((-len(payload)) % 4)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as original, zipfile.ZipFile(out, "w") as copy:
        for member in original.infolist():
            data = original.read(member)
            if member.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"].values()))
                config["config"]["evil"] = {**first, "use_pickle": True, "path_name": "weight_0"}
                data = json.dumps(config).encode()
            elif member.filename.endswith("data/weights/weight_0"):
                data = payload
            copy.writestr(member, data)
    return out.getvalue()


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\0" * (8 * 1024**2))
    return buffer.getvalue()


def nan_weights() -> bytes:
    state_dict = mlp_state(7)
    state_dict["fc1.weight"][0, 0] = float("nan")
    return saved(state_dict)


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# name -> (files for the model uploader, file for the data uploader or None, words of the error)
HOSTILE = {
    "pickle payload (.pt)": (lambda m: [("checkpoint.pt", saved({"fc1.weight": OpensFile(m)}))], None, "run code"),
    "pickle payload (.pt2 weight)": (lambda m: [("program.pt2", pt2_unpickling_a_raw_weight(m))], None, "run code"),
    "pickle named .onnx": (lambda m: [("model.onnx", pickle.dumps(OpensFile(m), protocol=2))], None, "run code"),
    "zip bomb": (lambda m: [("bomb.pt", zip_bomb())], None, "looks like a zip bomb"),
    "truncated safetensors": (lambda m: [("mlp.safetensors", safetensors_bytes(mlp_state(1))[:5000])], None, "is truncated"),
    "zero bytes": (lambda m: [("empty.pt", b"")], None, "is empty (0 bytes)"),
    "zip named .safetensors": (lambda m: [("mlp.safetensors", saved(mlp_state(2)))], None, "named .safetensors but is a zip archive"),
    "NaN weights": (lambda m: [("nan.pt", nan_weights())], None, "holds NaN or infinite values"),
    "pickle named .npz": (
        lambda m: [("mlp.pt", saved(mlp_state(3)))],
        lambda m: ("digits.npz", pickle.dumps(OpensFile(m), protocol=2)),
        "is not an .npz archive",
    ),
    "npz labels out of range": (
        lambda m: [("mlp.pt", saved(mlp_state(4)))],
        lambda m: ("digits.npz", _npz(x=np.zeros((5, 64), np.float32), y=np.full(5, 12))),
        "y holds labels from 12 to 12, but the model has 10 classes",
    ),
    "folder files with clashing names": (
        lambda m: [("config.json", b"{}"), ("a?b.json", b"{}"), ("a*b.json", b"{}")], None,
        "several uploaded files would be stored as a_b.json",
    ),
}


def stored_files() -> set[Path]:
    return {path for path in uploads._upload_folder().rglob("*")}


def upload(app: AppTest, files: list[tuple[str, bytes]], data: tuple[str, bytes] | None = None) -> AppTest:
    app.file_uploader(key="model_upload").set_value([(name, content, "application/octet-stream") for name, content in files])
    app.file_uploader(key="model_data").set_value((*data, "application/octet-stream") if data else None).run()
    [use] = [button for button in app.button if button.label == "Use these files"]
    return use.click().run()


def assert_app_still_works(app: AppTest, model_id: str) -> None:
    assert app.session_state["model_id"] == model_id
    open_page(app, "pages/pruning.py")
    app.slider(key="prune_amount").set_value(0.5).run()
    assert_clean(app)
    assert app.session_state["recipe"]["prune"]["amount"] == 0.5


# --- hostile files -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_upload_gets_one_clear_error_and_leaves_nothing_behind(app, tmp_path, case):
    marker = tmp_path / MARKER
    model_files, data_file, words = HOSTILE[case]
    open_page(app, "pages/model.py")
    before = stored_files()
    upload(app, model_files(marker), data_file(marker) if data_file else None)
    assert not app.exception, [e.value for e in app.exception]
    [error] = app.error
    assert error.value.startswith("Not loaded: ") and words in error.value, error.value
    assert "Traceback" not in error.value
    assert not marker.exists()
    assert stored_files() == before, "the refused upload left files in the upload folder"
    assert_app_still_works(app, "simplenet")


def test_upload_over_the_size_limit_is_refused_before_anything_is_written(app, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 100_000)
    open_page(app, "pages/model.py")
    before = stored_files()
    upload(app, [("mlp.pt", saved(mlp_state(5)))])
    [error] = app.error
    assert error.value.startswith("Not loaded: mlp.pt is ") and "over the upload limit of 100,000 bytes" in error.value
    assert stored_files() == before
    assert_app_still_works(app, "simplenet")


def test_a_refused_upload_keeps_the_previous_upload_as_the_model(app, tmp_path):
    open_page(app, "pages/model.py")
    upload(app, [("mine.pt", saved(mlp_state(6)))])
    assert_clean(app)
    accepted = app.session_state["model_id"]
    kept = stored_files()
    upload(app, [("evil.pt", saved({"fc1.weight": OpensFile(tmp_path / MARKER)}))])
    [error] = app.error
    assert "run code" in error.value
    assert stored_files() == kept
    assert not (tmp_path / MARKER).exists()
    assert_app_still_works(app, accepted)


def test_refused_upload_of_a_file_already_stored_keeps_that_file(app):
    """The same bytes under the same name land on the same path: refusing the pair (bad
    data) must not delete the model file an earlier, accepted upload still uses."""
    content = saved(mlp_state(8))
    open_page(app, "pages/model.py")
    upload(app, [("shared.pt", content)])
    assert_clean(app)
    accepted = app.session_state["model_id"]
    model_path = Path(uploads.source(accepted))
    upload(app, [("shared.pt", content)], ("bad.npz", _npz(x=np.zeros((3, 7), np.float32))))
    [error] = app.error
    assert "per-sample shape (7,)" in error.value
    assert model_path.is_file()
    assert not list(uploads._upload_folder().rglob("bad.npz"))
    assert_app_still_works(app, accepted)


def test_model_without_prunable_layers_is_accepted_with_a_warning_and_pages_keep_working(app, tmp_path):
    path = tmp_path / "norm_only.pt"
    torch.jit.save(torch.jit.script(NormOnly().eval()), path)
    open_page(app, "pages/model.py")
    upload(app, [("norm_only.pt", path.read_bytes())], ("rows.npz", _npz(x=np.zeros((8, 64), np.float32))))
    assert not app.exception, [e.value for e in app.exception]
    assert any("No Linear or Conv layer found" in warning.value for warning in app.warning)
    for page in ("pages/pruning.py", "pages/quantization.py"):
        open_page(app, page)
        assert not app.exception, [e.value for e in app.exception]
        assert any("sliders change nothing" in warning.value for warning in app.warning)


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../../{unique}.pt", "..\\..\\{unique}.pt", "{tmp}/escaped.pt", ".pt", "a" * 5000 + ".pt", "модель.pt"],
    ids=["parent-folders", "windows-parent-folders", "absolute", "extension-only", "very-long", "non-ascii"],
)
def test_accepted_upload_is_stored_inside_the_upload_folder_whatever_its_name(app, tmp_path, name):
    unique = f"escape-{tmp_path.name}"
    name = name.format(unique=unique, tmp=tmp_path)
    folder = uploads._upload_folder()
    open_page(app, "pages/model.py")
    upload(app, [(name, saved(mlp_state(9)))])
    assert_clean(app)
    stored = Path(uploads.source(app.session_state["model_id"])).resolve()
    assert stored.is_file() and folder.resolve() in stored.parents
    assert len(stored.name) <= 80 and stored.name not in ("", ".", "..") and not stored.name.startswith(".")
    assert not (tmp_path / "escaped.pt").exists()
    assert not list(folder.parent.parent.glob(f"{unique}*"))


@pytest.mark.parametrize(
    ("name", "refusal"),
    [("", "Invalid file extension"), ("..", "Invalid file extension"), ("model.exe", "Invalid file extension"),
     ("x\x00y.pt", "Filename cannot contain null bytes")],
    ids=["empty", "dot-dot", "other-extension", "nul-byte"],
)
def test_names_streamlit_refuses_store_nothing_and_the_app_recovers(app, name, refusal):
    """Streamlit checks names against the uploader's types (and for NUL bytes) itself, before
    the page runs; a browser never sends such names, a hand-made request can. Streamlit shows
    its error (redacted by client.showErrorDetails = "none"), nothing is stored, and the next
    run works: the failed run drew no uploader, so its file is not sent again."""
    open_page(app, "pages/model.py")
    before = stored_files()
    app.file_uploader(key="model_upload").set_value((name, saved(mlp_state(11)), "application/octet-stream")).run()
    [exception] = app.exception
    assert refusal in exception.value or "original error message is redacted" in exception.value, exception.value
    assert stored_files() == before
    assert app.session_state["model_id"] == "simplenet"
    assert not app.get("file_uploader")
    assert_app_still_works(app, "simplenet")


@pytest.mark.parametrize(
    ("name", "safe"),
    [("../../etc/passwd", "passwd"), ("/etc/passwd", "passwd"), ("", "upload"), (".", "upload"), ("..", "upload"),
     ("...", "upload"), (".hidden.pt", "hidden.pt"), ("C:\\models\\mlp.pt", "mlp.pt"), ("a b?.safetensors", "a_b_.safetensors"),
     ("модель.onnx", "_.onnx"), ("config.json", "config.json"), ("a" * 300 + ".safetensors", "a" * 68 + ".safetensors")],
)
def test_safe_name_keeps_no_folder_and_the_extension(name, safe):
    assert uploads._safe_name(name) == safe


# --- limits ------------------------------------------------------------------------------------


def test_server_upload_limit_and_the_pages_limit_are_the_same_number(app):
    config = tomllib.loads(CONFIG.read_text())
    assert config["server"]["maxUploadSize"] == uploads.UPLOAD_LIMIT_MB == 200
    open_page(app, "pages/model.py")
    for key in ("model_upload", "model_data"):
        assert app.file_uploader(key=key).proto.max_upload_size_mb == uploads.UPLOAD_LIMIT_MB


def test_the_engine_is_given_the_upload_limits(monkeypatch):
    calls = []
    monkeypatch.setattr(cache.compression, "load_model", lambda *args, **kwargs: calls.append(kwargs) or "model")
    cache.base_model("mlp", f"limits-{os.getpid()}-{id(calls)}")
    [limits] = [{name: kwargs[name] for name in ("max_parameters", "max_file_bytes")} for kwargs in calls]
    assert limits == {"max_parameters": uploads.MAX_UPLOAD_PARAMETERS, "max_file_bytes": uploads.MAX_UPLOAD_BYTES}
    assert uploads.MAX_UPLOAD_PARAMETERS > 22_700_000  # MiniLM fits


def test_model_over_the_parameter_limit_is_refused_through_the_page(app, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_UPLOAD_PARAMETERS", 1000)
    open_page(app, "pages/model.py")
    before = stored_files()
    upload(app, [("mlp.safetensors", safetensors_bytes(mlp_state(10)))])
    [error] = app.error
    assert "50,826 parameters, over the limit max_parameters=1,000" in error.value
    assert stored_files() == before
