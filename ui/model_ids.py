"""How the dashboard names a model: the cache key of everything computed from it.

A sample model goes by its zoo name (``mlp``), an upload by ``upload/<hash>/<file>``, a
model with its BatchNorm layers folded by ``folded/<id of the model it was folded from>``, and a
model loaded with input sizes the user gave by ``shaped/<sizes, URL-encoded>/<id>``.

>>> shaped = with_input_shapes("upload/ab12/detector.onnx", {"images": (1, 3, 320, 320)})
>>> shaped
'shaped/images=1%2C3%2C320%2C320/upload/ab12/detector.onnx'
>>> input_shapes(shaped)
('upload/ab12/detector.onnx', {'images': (1, 3, 320, 320)})
>>> ModelChoice(shaped, None).label
'detector.onnx (images=1,3,320,320)'
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import sample_models

DEFAULT_MODEL = "simplenet"
UPLOAD_PREFIX = "upload/"
FOLDED_PREFIX = "folded/"  # a model with its BatchNorm layers folded: "folded/bn_cnn"
SHAPED_PREFIX = "shaped/"  # a model loaded with given input sizes (input names may hold "/": encoded)


@dataclass(frozen=True)
class ModelChoice:
    """The model and evaluation data a session works on, as cache keys."""

    model_id: str
    data_id: str | None

    @property
    def label(self) -> str:
        if self.model_id.startswith(SHAPED_PREFIX):
            source_id, shapes = input_shapes(self.model_id)
            sizes = "; ".join(f"{name}={','.join(map(str, shape))}" for name, shape in shapes.items())
            return f"{ModelChoice(source_id, None).label} ({sizes})"
        if self.model_id.startswith(FOLDED_PREFIX):
            return f"{Path(ModelChoice(self.model_id.removeprefix(FOLDED_PREFIX), None).label).stem}-bn-folded"
        return self.model_id.removeprefix(UPLOAD_PREFIX).split("/", 1)[-1]


def linkable(model_id: str) -> bool:
    """Whether a link can name the model: a sample model, or one with its BatchNorm folded
    (uploads live in their session only)."""
    return model_id.removeprefix(FOLDED_PREFIX) in sample_models.ZOO_NAMES


def with_input_shapes(model_id: str, shapes: Mapping[str, Sequence[int]]) -> str:
    """The id of the model loaded with ``shapes`` (``{input name: sizes}``, the batch first);
    sizes given before are replaced, and none at all give the model as its file describes it."""
    source_id, _ = input_shapes(model_id)
    if not shapes:
        return source_id
    encoded = urlencode([(name, ",".join(map(str, sizes))) for name, sizes in shapes.items()])
    return f"{SHAPED_PREFIX}{encoded}/{source_id}"


def input_shapes(model_id: str) -> tuple[str, dict[str, tuple[int, ...]]]:
    """The id of the model without given sizes, and those sizes (empty when none were given)."""
    if not model_id.startswith(SHAPED_PREFIX):
        return model_id, {}
    encoded, _, source_id = model_id.removeprefix(SHAPED_PREFIX).partition("/")
    return source_id, {name: tuple(int(size) for size in sizes.split(",")) for name, sizes in parse_qsl(encoded)}
