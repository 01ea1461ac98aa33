"""The server's model folder (``COMPRESSION_LAB_MODELS``): what it lists, that a name never reads
outside it, and a model of it opened by the Model page and by a link."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import compression
from tests.ui.test_pages import assert_clean, figure, open_link, open_page
from ui import cache, server_models, uploads
from ui.model_ids import ModelChoice, linkable, load_options, with_family
from ui.server_models import FOLDER_VARIABLE, listed, path, refusal

transformers = pytest.importorskip("transformers")


def save_tiny_llama(folder: Path) -> Path:
    """A random-init Llama saved as a Hugging Face folder (config.json and model.safetensors)."""
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                      num_key_value_heads=1, vocab_size=128, max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def save_mlp_weights(file: Path) -> Path:
    """The sample mlp's weights as a safetensors file: a model file the engine loads."""
    model = compression.load_model("mlp")
    save_file({name: tensor.contiguous() for name, tensor in model.module.state_dict().items()}, file)
    return file


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model folder, named by the environment."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(FOLDER_VARIABLE, str(folder))
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the model folder holding a model file and a Hugging Face folder."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    save_mlp_weights(folder / "secret.safetensors")
    (folder / "hf").mkdir()
    (folder / "hf" / "config.json").write_text("{}")
    return folder


@pytest.fixture
def fresh_cache():
    cache.base_model.clear()
    yield
    cache.base_model.clear()


# --- what is listed ---------------------------------------------------------------------------


def test_model_files_and_hugging_face_folders_are_listed_sorted_with_one_folder_level(root: Path) -> None:
    for name in ("b.safetensors", "a.onnx", "c.pt", "d.pth", "e.pt2", "f.bin"):
        (root / name).write_bytes(b"")
    (root / "llama").mkdir()
    (root / "llama" / "config.json").write_text("{}")
    (root / "org" / "model").mkdir(parents=True)
    (root / "org" / "model" / "config.json").write_text("{}")
    (root / "org" / "weights.safetensors").write_bytes(b"")
    assert listed() == ["server/a.onnx", "server/b.safetensors", "server/c.pt", "server/d.pth", "server/e.pt2",
                        "server/f.bin", "server/llama", "server/org/model", "server/org/weights.safetensors"]


def test_hidden_files_odd_names_and_other_files_are_not_listed(root: Path) -> None:
    for name in (".hidden.pt", "notes.txt", "data.npz", "has space.pt", "ok.pt"):
        (root / name).write_bytes(b"")
    (root / ".cache").mkdir()
    (root / ".cache" / "config.json").write_text("{}")
    (root / "no-config").mkdir()
    (root / "no-config" / "tokenizer.json").write_text("{}")  # a folder without config.json: no model
    (root / "a" / "b" / "c").mkdir(parents=True)  # deeper than one folder down
    (root / "a" / "b" / "c" / "config.json").write_text("{}")
    assert listed() == ["server/ok.pt"]


def test_the_listing_is_bounded_to_the_first_models_by_name(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_models, "MAX_LISTED", 3)
    for index in range(10):
        (root / f"m{index}.pt").write_bytes(b"")
    assert listed() == ["server/m0.pt", "server/m1.pt", "server/m2.pt"]


def test_a_hugging_face_folder_saved_by_transformers_is_listed_and_loads(root: Path, fresh_cache) -> None:
    save_tiny_llama(root / "tiny-llama")
    assert listed() == ["server/tiny-llama"]
    model = cache.base_model("server/tiny-llama", None)
    assert model.family == "causal_lm"
    assert ModelChoice("server/tiny-llama", None).name == "tiny-llama"


# --- names that would read outside the folder -------------------------------------------------


@pytest.mark.parametrize("name", ["..", "../elsewhere/secret.safetensors", "ok/../../elsewhere/secret.safetensors",
                                  "./a.pt", "org/.."])
def test_dot_dot_and_dot_components_are_refused(root: Path, outside: Path, name: str) -> None:
    (root / "a.pt").write_bytes(b"")
    with pytest.raises(compression.ModelLoadError, match="is not a name in the server's model folder"):
        path(f"server/{name}")


@pytest.mark.parametrize("name", ["", "/etc/passwd", "C:/models/a.pt", "c:\\models\\a.pt"])
def test_absolute_paths_are_refused(root: Path, outside: Path, name: str) -> None:
    for model_id in (f"server/{name}", f"server//{outside / 'secret.safetensors'}"):
        with pytest.raises(compression.ModelLoadError, match="is not a name in the server's model folder"):
            path(model_id)


@pytest.mark.parametrize("name", ["a\\b.pt", "..\\elsewhere\\secret.safetensors", "a b.pt", "a\x00.pt", "a\n.pt",
                                  "~/a.pt", "$HOME.pt", "a/b/c.pt", "a//b.pt", "a.pt/"])
def test_backslashes_and_odd_names_are_refused(root: Path, name: str) -> None:
    with pytest.raises(compression.ModelLoadError, match="is not a name in the server's model folder"):
        path(f"server/{name}")


def test_a_file_link_leading_out_of_the_folder_is_refused_and_not_listed(root: Path, outside: Path) -> None:
    (root / "secret.safetensors").symlink_to(outside / "secret.safetensors")
    assert listed() == []
    with pytest.raises(compression.ModelLoadError, match="leads outside the server's model folder"):
        path("server/secret.safetensors")


def test_a_folder_link_leading_out_of_the_folder_is_refused_for_itself_and_what_it_holds(root: Path, outside: Path) -> None:
    (root / "hf").symlink_to(outside / "hf")
    (root / "org").symlink_to(outside)
    assert listed() == []
    for model_id in ("server/hf", "server/org/secret.safetensors", "server/org/hf"):
        with pytest.raises(compression.ModelLoadError, match="leads outside the server's model folder"):
            path(model_id)


def test_a_hugging_face_folder_with_a_weight_file_linking_out_is_refused(root: Path, outside: Path) -> None:
    (root / "hf").mkdir()
    (root / "hf" / "config.json").write_text("{}")
    (root / "hf" / "model.safetensors").symlink_to(outside / "secret.safetensors")
    assert listed() == []
    with pytest.raises(compression.ModelLoadError, match="leads outside the server's model folder"):
        path("server/hf")


def test_a_model_folder_that_is_itself_a_link_is_read_where_it_points(tmp_path: Path, outside: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "linked-models").symlink_to(outside)
    monkeypatch.setenv(FOLDER_VARIABLE, str(tmp_path / "linked-models"))
    assert listed() == ["server/hf", "server/secret.safetensors"]
    assert path("server/secret.safetensors") == outside.resolve() / "secret.safetensors"


def test_links_inside_the_folder_are_followed(root: Path, fresh_cache) -> None:
    save_mlp_weights(root / "real.safetensors")
    (root / "alias.safetensors").symlink_to("real.safetensors")
    (root / "org").mkdir()
    (root / "org" / "linked.safetensors").symlink_to(root / "real.safetensors")
    assert listed() == ["server/alias.safetensors", "server/org/linked.safetensors", "server/real.safetensors"]
    model = cache.base_model("server/alias.safetensors", None)
    assert model.evaluation.metric == "accuracy"


def test_a_name_that_is_no_model_is_refused(root: Path) -> None:
    (root / "notes.txt").write_text("")
    (root / "org").mkdir()
    for model_id in ("server/notes.txt", "server/org", "server/missing.pt"):
        with pytest.raises(compression.ModelLoadError, match="has no model named"):
            path(model_id)


# --- the folder off ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, ""])
def test_with_the_variable_unset_or_empty_nothing_is_listed_and_a_server_model_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(FOLDER_VARIABLE, value)
    assert server_models.folder() is None and listed() == []
    with pytest.raises(compression.ModelLoadError, match=f"This server has no model folder \\({FOLDER_VARIABLE} is not set\\)"):
        path("server/tiny-llama")
    assert refusal("family/other/server/tiny-llama").startswith("This server has no model folder")


def test_a_missing_folder_lists_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FOLDER_VARIABLE, str(tmp_path / "no-such-folder"))
    assert listed() == []


# --- limits and ids ---------------------------------------------------------------------------


def test_a_server_model_is_held_to_the_engines_limits_not_the_upload_limits(
    root: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache
) -> None:
    save_tiny_llama(root / "tiny-llama")
    monkeypatch.setattr(uploads, "MAX_UPLOAD_PARAMETERS", 10)
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 10)
    assert cache.base_model("server/tiny-llama", None).family == "causal_lm"
    with pytest.raises(compression.ModelLoadError, match="over the limit max_parameters=10"):
        compression.load_model(root / "tiny-llama", max_parameters=uploads.MAX_UPLOAD_PARAMETERS)


class OpensFile:
    """Unpickling calls open(marker, "w"): what a hostile checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_engines_file_checks_still_apply_to_a_server_model(root: Path, tmp_path: Path, fresh_cache) -> None:
    marker = tmp_path / "created_by_payload"
    torch.save({"fc.weight": OpensFile(marker)}, root / "hostile.pt")
    with pytest.raises(compression.CompressionError, match="hostile.pt"):
        cache.base_model("server/hostile.pt", None)
    assert not marker.exists()


def test_a_server_model_id_composes_with_the_family_and_folded_prefixes() -> None:
    model_id = with_family("server/org/tiny-llama", "other")
    assert model_id == "family/other/server/org/tiny-llama"
    assert load_options(model_id) == ("server/org/tiny-llama", "other", {})
    assert ModelChoice(model_id, None).label == "tiny-llama (as other)"
    assert ModelChoice("folded/server/bn.pt2", None).name == "bn-bn-folded"
    assert linkable("server/org/tiny-llama") and linkable(model_id) and linkable("folded/server/bn.pt2")
    assert not linkable("shaped/x=1%2C8/server/a.onnx")


# --- the dashboard ----------------------------------------------------------------------------


def test_a_server_model_opened_on_the_model_page_is_in_the_sidebar_and_the_url(app, root: Path) -> None:
    save_tiny_llama(root / "tiny-llama")
    open_page(app, "pages/model.py")
    assert_clean(app)
    [box] = [box for box in app.selectbox if box.key == "model_server"]
    assert box.options == ["tiny-llama"]
    app.button(key="model_server_open").click().run()
    assert_clean(app)
    assert app.session_state["model_id"] == "server/tiny-llama"
    assert app.query_params["model"] == "server/tiny-llama"
    sidebar_box = app.sidebar.selectbox[0]
    assert sidebar_box.options[-1] == "tiny-llama" and sidebar_box.value == "server/tiny-llama"
    assert [s.value for s in app.subheader][0] == "tiny-llama"


def test_a_server_model_round_trips_through_the_url(app, root: Path) -> None:
    save_tiny_llama(root / "tiny-llama")
    open_link(app, "family/other/server/tiny-llama", None)
    assert_clean(app)
    assert not app.warning, [w.value for w in app.warning]
    assert app.session_state["model_id"] == "family/other/server/tiny-llama"
    open_page(app, "pages/pruning.py")
    assert_clean(app)
    assert app.query_params["model"] == "family/other/server/tiny-llama"
    assert figure(app, "prune_histogram")["data"]


def test_a_link_to_a_server_model_without_the_folder_warns_and_shows_the_default(app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    open_link(app, "server/tiny-llama", None)
    assert not app.exception
    assert [w.value for w in app.warning] == [
        f"The link's model was not opened: This server has no model folder ({FOLDER_VARIABLE} is not set): server "
        "model 'tiny-llama' cannot be opened. Showing simplenet instead."]
    assert app.session_state["model_id"] == "simplenet"
    assert app.query_params["model"] == "simplenet"
    open_page(app, "pages/model.py")
    assert "Server folder" not in [tab.label for tab in app.tabs]


def test_a_link_naming_a_path_out_of_the_folder_warns_and_shows_the_default(app, root: Path, outside: Path) -> None:
    open_link(app, "server/../elsewhere/secret.safetensors", None)
    assert not app.exception
    [warning] = app.warning
    assert "is not a name in the server's model folder" in warning.value
    assert app.session_state["model_id"] == "simplenet"
