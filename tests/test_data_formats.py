"""Evaluation data beyond .npz: text for text models (.txt, .jsonl) and labelled images (a folder
or a .zip in class subfolders) for image classifiers, on models built at test time; each
refusal is one short line."""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import compression
import sample_models
from compression.io import families, zoo
from compression.io.image_data import ImageProtocol
from compression.io.text_files import read_documents
from compression.metrics import ACCURACY, COSINE, PERPLEXITY

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
VOCAB = 2048  # the sample LM's tokenizer
TEXT_MODELS = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=VOCAB)),
    "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        max_position_embeddings=64, vocab_size=VOCAB, tie_word_embeddings=True)),
    "t5": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
        d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=VOCAB)),
}
PETS = {0: "cat", 1: "dog"}


def _one_short_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and len(message) < 300, message
    return message


@pytest.fixture(scope="module")
def text_folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny text models with the sample LM's tokenizer files copied in."""
    built = {}
    for name, build in TEXT_MODELS.items():
        folder = tmp_path_factory.mktemp(name)
        torch.manual_seed(0)
        build().save_pretrained(folder)
        for file in TOKENIZER_FILES:
            shutil.copy(sample_models.TINYLM_DIR / file, folder / file)
        built[name] = folder
    return built


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return zoo.corpus_sentences()[:60]


@pytest.fixture(scope="module")
def text_files(tmp_path_factory, documents) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("text")
    (folder / "notes.txt").write_text("\n".join(documents) + "\n", encoding="utf-8")
    (folder / "notes.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(documents)))
    return {"txt": folder / "notes.txt", "jsonl": folder / "notes.jsonl"}


# --- text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "llama", "t5"])
@pytest.mark.parametrize("kind", ["txt", "jsonl"])
def test_a_text_model_is_scored_by_perplexity_on_the_users_text(text_folders, text_files, name, kind) -> None:
    model = compression.load_model(text_folders[name], text_files[kind])
    assert model.evaluation.metric == PERPLEXITY
    assert f"notes.{kind} (60 documents joined by end-of-text tokens)" in model.evaluation.description
    baseline = compression.evaluate(model)
    assert VOCAB / 4 < baseline.value < VOCAB * 4  # random weights: near-uniform guesses


def test_a_jsonl_and_a_txt_of_the_same_documents_give_the_same_windows(text_folders, text_files) -> None:
    from_txt, from_jsonl = (compression.load_model(text_folders["gpt2"], text_files[kind]) for kind in ("txt", "jsonl"))
    assert torch.equal(from_txt.evaluation.inputs[0], from_jsonl.evaluation.inputs[0])


def test_documents_are_joined_by_the_end_of_text_token(text_folders, text_files, documents) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(text_folders["gpt2"])
    first = tokenizer(documents[0], add_special_tokens=False)["input_ids"]
    window = compression.load_model(text_folders["gpt2"], text_files["txt"]).evaluation.inputs[0][0].tolist()
    assert window[: len(first) + 1] == [*first, tokenizer.eos_token_id]


def test_the_held_out_text_as_one_jsonl_document_scores_the_sample_lms_recorded_perplexity(tmp_path) -> None:
    data = tmp_path / "heldout.jsonl"
    data.write_text(json.dumps({"text": zoo.heldout_text()}) + "\n")
    model = compression.load_model("tinylm", data)
    recorded = 117.43080505207715  # sample_models/weights/tinylm/evaluation.json
    assert compression.evaluate(model).value == pytest.approx(recorded, rel=1e-5)


def test_a_text_encoder_is_scored_by_cosine_on_the_lines_as_sentences(text_folders, text_files) -> None:
    model = compression.load_model(text_folders["gpt2"], text_files["txt"], family="text_encoder")
    assert (model.evaluation.metric, model.evaluation.size) == (COSINE, 60)
    assert "sentences from notes.txt" in model.evaluation.description


def test_the_sample_text_embedder_takes_text_as_sentences(text_files) -> None:
    model = compression.load_model("minilm", text_files["jsonl"])
    assert (model.evaluation.metric, model.evaluation.size) == (COSINE, 60)
    assert compression.evaluate(model).value == pytest.approx(1.0)


def test_a_text_model_without_a_tokenizer_refuses_text_saying_what_to_add(text_folders, text_files, tmp_path) -> None:
    folder = tmp_path / "bare"
    shutil.copytree(text_folders["gpt2"], folder)
    for file in TOKENIZER_FILES:
        (folder / file).unlink()
    with pytest.raises(compression.DataError, match="has no tokenizer") as error:
        compression.load_model(folder, text_files["txt"])
    assert "tokenizer.json" in _one_short_line(error)


def test_text_for_an_image_model_is_refused_naming_its_family(vit_folder, text_files) -> None:
    with pytest.raises(compression.DataError, match="image_classifier model") as error:
        compression.load_model(vit_folder, text_files["txt"])
    _one_short_line(error)


def test_text_that_is_not_utf8_is_refused_saying_where(text_folders, tmp_path) -> None:
    data = tmp_path / "latin1.txt"
    data.write_bytes("A first line.\nCaf\xe9 au lait.\n".encode("latin-1"))
    with pytest.raises(compression.DataError, match="not UTF-8 text: byte 0xe9 on line 2") as error:
        compression.load_model(text_folders["gpt2"], data)
    _one_short_line(error)


def test_a_jsonl_line_without_text_is_refused(text_folders, tmp_path) -> None:
    data = tmp_path / "records.jsonl"
    data.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(compression.DataError, match="line 2 has no string 'text' field") as error:
        compression.load_model(text_folders["gpt2"], data)
    _one_short_line(error)


def test_a_text_file_over_the_size_limit_is_refused(text_files) -> None:
    with pytest.raises(compression.DataError, match="over the limit max_file_bytes=1,000") as error:
        read_documents(text_files["txt"], max_file_bytes=1000)
    _one_short_line(error)


# --- images --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory) -> Path:
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
        patch_size=8, num_labels=2, id2label=PETS, label2id={v: k for k, v in PETS.items()})
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vit")
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    return folder


def _png(colour: tuple[int, int, int], seed: int) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 40, (40, 48, 3))
    pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, format="PNG")
    return stream.getvalue()


PET_IMAGES = {f"{label}/{index}.png": _png(colour, index) for label, colour in (("cat", (200, 60, 40)), ("dog", (40, 60, 200)))
              for index in range(5)}


def _folder(root: Path, images: dict[str, bytes]) -> Path:
    for name, content in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def _zip(path: Path, images: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in images.items():
            archive.writestr(name, content)
    return path


def test_an_image_folder_gives_accuracy_on_the_labels_its_folders_name(vit_folder, tmp_path) -> None:
    model = compression.load_model(vit_folder, _folder(tmp_path / "pets", PET_IMAGES))
    assert (model.evaluation.metric, model.evaluation.size) == (ACCURACY, 10)
    assert sorted(model.evaluation.labels.tolist()) == [0] * 5 + [1] * 5
    assert model.evaluation.inputs[0].shape[1:] == (3, 32, 32)
    assert 0.0 <= compression.evaluate(model).value <= 1.0


def test_a_zip_of_the_same_images_gives_the_same_pixels_and_labels(vit_folder, tmp_path) -> None:
    from_folder = compression.load_model(vit_folder, _folder(tmp_path / "pets", PET_IMAGES)).evaluation
    zipped = _zip(tmp_path / "pets.zip", {f"pets/{name}": content for name, content in PET_IMAGES.items()})
    from_zip = compression.load_model(vit_folder, zipped).evaluation
    assert torch.equal(from_folder.inputs[0], from_zip.inputs[0]) and torch.equal(from_folder.labels, from_zip.labels)


def test_class_folders_match_labels_ignoring_case_and_by_index(vit_folder, tmp_path) -> None:
    renamed = {name.replace("cat/", "CAT/").replace("dog/", "1/"): content for name, content in PET_IMAGES.items()}
    model = compression.load_model(vit_folder, _folder(tmp_path / "pets", renamed))
    assert sorted(model.evaluation.labels.tolist()) == [0] * 5 + [1] * 5


def test_a_graph_image_classifier_takes_an_image_folder_named_by_class_index(tmp_path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    program = torch.export.export(net.eval(), (torch.zeros(2, 3, 24, 24),))
    torch.export.save(program, tmp_path / "net.pt2")
    indexed = {name.replace("cat/", "0/").replace("dog/", "1/"): content for name, content in PET_IMAGES.items()}
    model = compression.load_model(tmp_path / "net.pt2", _folder(tmp_path / "pets", indexed))
    assert (model.family, model.evaluation.metric) == (families.IMAGE_CLASSIFIER, ACCURACY)
    assert model.evaluation.inputs[0].shape[1:] == (3, 24, 24)


def test_preprocessing_follows_preprocessor_config(tmp_path) -> None:
    settings = {"size": {"shortest_edge": 32}, "crop_pct": 0.875, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    protocol = ImageProtocol.from_preprocessor_config(settings, 3, (224, 224))
    assert (protocol.size, protocol.shortest_edge) == ((32, 32), 36)  # ConvNeXt: resize to 32 / 0.875, crop 32
    white = io.BytesIO()
    Image.new("RGB", (50, 40), (255, 255, 255)).save(white, format="PNG")
    assert torch.allclose(protocol.pixels(white.getvalue(), "white.png"), torch.ones(3, 32, 32))


def test_an_unknown_class_folder_is_refused_listing_the_models_labels(vit_folder, tmp_path) -> None:
    images = {**PET_IMAGES, "bird/0.png": PET_IMAGES["cat/0.png"]}
    with pytest.raises(compression.DataError, match=r"'bird' match none of the model's 2 labels \(cat, dog\)") as error:
        compression.load_model(vit_folder, _folder(tmp_path / "pets", images))
    _one_short_line(error)


def test_images_for_a_text_model_are_refused_naming_its_family(text_folders, tmp_path) -> None:
    with pytest.raises(compression.DataError, match="causal_lm model") as error:
        compression.load_model(text_folders["gpt2"], _folder(tmp_path / "pets", PET_IMAGES))
    _one_short_line(error)


def test_a_zip_member_climbing_out_of_the_archive_is_refused(vit_folder, tmp_path) -> None:
    zipped = _zip(tmp_path / "slip.zip", {**PET_IMAGES, "../cat/evil.png": PET_IMAGES["cat/0.png"]})
    with pytest.raises(compression.DataError, match="points outside the archive") as error:
        compression.load_model(vit_folder, zipped)
    _one_short_line(error)
    assert not (tmp_path / "cat").exists()


def test_a_zip_bomb_is_refused_before_anything_is_read(vit_folder, tmp_path) -> None:
    bomb = _zip(tmp_path / "bomb.zip", {**PET_IMAGES, "cat/big.png": bytes(50 * 1024**2)})
    with pytest.raises(compression.UnsafeFileError, match="zip bomb") as error:
        compression.load_model(vit_folder, bomb)
    _one_short_line(error)


def test_a_file_that_is_not_an_image_is_refused_naming_it(vit_folder, tmp_path) -> None:
    images = {**PET_IMAGES, "dog/broken.png": b"\x89PNG\r\n\x1a\n but not really"}
    with pytest.raises(compression.DataError, match="dog/broken.png is not a readable PNG or JPEG") as error:
        compression.load_model(vit_folder, _folder(tmp_path / "pets", images))
    _one_short_line(error)


def test_an_image_declaring_too_many_pixels_is_refused_before_it_is_decoded(vit_folder, tmp_path) -> None:
    huge = io.BytesIO()
    Image.new("1", (8000, 8000)).save(huge, format="PNG")  # 64M pixels in a few kilobytes
    with pytest.raises(compression.DataError, match="8000×8000 pixels") as error:
        compression.load_model(vit_folder, _folder(tmp_path / "pets", {**PET_IMAGES, "cat/huge.png": huge.getvalue()}))
    _one_short_line(error)
