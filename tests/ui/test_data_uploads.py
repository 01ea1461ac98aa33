"""The Model page's data uploader takes every kind of evaluation data the engine reads (Streamlit
AppTest): an image classifier's folder uploaded with a .zip of labelled images is scored by
accuracy on them."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.ui.test_hostile_uploads import upload
from tests.ui.test_pages import assert_clean, open_page
from ui import uploads

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")


def _pets_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for label, colour in (("cat", (200, 60, 40)), ("dog", (40, 60, 200))):
            for index in range(3):
                image = io.BytesIO()
                noise = np.random.default_rng(index).integers(0, 40, (20, 20, 3))
                Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(image, format="PNG")
                archive.writestr(f"{label}/{index}.png", image.getvalue())
    return buffer.getvalue()


def test_the_data_uploader_takes_arrays_text_and_zips_of_images(app) -> None:
    open_page(app, "pages/model.py")
    assert list(app.file_uploader(key="model_data").proto.type) == [f".{kind}" for kind in uploads.DATA_TYPES]
    assert uploads.DATA_TYPES == ["npz", "txt", "jsonl", "zip"]


def test_an_image_classifier_uploaded_with_a_zip_of_labelled_images_is_scored_by_accuracy(app, tmp_path: Path) -> None:
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16,
        patch_size=8, num_labels=2, id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1})
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path)
    open_page(app, "pages/model.py")
    upload(app, [(file.name, file.read_bytes()) for file in sorted(tmp_path.iterdir())], ("pets.zip", _pets_zip()))
    assert_clean(app)
    assert app.session_state["data_id"].endswith("/pets.zip")
    [baseline] = [metric for metric in app.metric if metric.label.lower().startswith("baseline")]
    assert "accuracy" in baseline.label.lower() and "6 labelled images from pets.zip" in baseline.proto.help
