"""How the dashboard names a model: the cache key of everything computed from it.

A sample model goes by its zoo name (``mlp``), an upload by ``upload/<hash>/<file>``, a model
of the server's model folder by ``server/<name in the folder>`` (:mod:`ui.server_models`), a
model with its BatchNorm layers folded by ``folded/<id of the model it was folded from>``. Options
the model is loaded with come before the id they apply to, each as ``<option>/<value>/``: the
family the user chose over the detected one (``family/<name>/``), then input sizes the user gave
(``shaped/<sizes, URL-encoded>/``); a folded model's options sit after ``folded/``.

>>> shaped = with_input_shapes("upload/ab12/detector.onnx", {"images": (1, 3, 320, 320)})
>>> shaped
'shaped/images=1%2C3%2C320%2C320/upload/ab12/detector.onnx'
>>> input_shapes(shaped)
('upload/ab12/detector.onnx', {'images': (1, 3, 320, 320)})
>>> ModelChoice(shaped, None).label
'detector.onnx (images=1,3,320,320)'
>>> with_family(shaped, "other")
'family/other/shaped/images=1%2C3%2C320%2C320/upload/ab12/detector.onnx'
>>> load_options(with_family(shaped, "other"))
LoadOptions(source_id='upload/ab12/detector.onnx', family='other', input_shapes={'images': (1, 3, 320, 320)})
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode

import sample_models
from compression.io.families import FAMILIES
from ui.text import t

DEFAULT_MODEL = "simplenet"
UPLOAD_PREFIX = "upload/"
SERVER_PREFIX = "server/"  # a model in the server's model folder: "server/SmolLM-135M"
FOLDED_PREFIX = "folded/"  # a model with its BatchNorm layers folded: "folded/bn_cnn"
FAMILY_PREFIX = "family/"  # a model loaded as the family the user chose: "family/other/tinylm"
SHAPED_PREFIX = "shaped/"  # a model loaded with given input sizes (input names may hold "/": encoded)
LOAD_OPTIONS = (FAMILY_PREFIX, SHAPED_PREFIX)  # in the order an id spells them


@dataclass(frozen=True)
class ModelChoice:
    """The model and evaluation data a session works on, as cache keys."""

    model_id: str
    data_id: str | None

    @property
    def name(self) -> str:
        """The model's own name: the zoo name or the file's (or folder's), "-bn-folded" added to a
        folded one; what file names built from the model start with."""
        source_id = load_options(self.model_id.removeprefix(FOLDED_PREFIX)).source_id
        name = source_id.rsplit("/", 1)[-1]  # an upload's or a server model's last part
        return f"{Path(name).stem}-bn-folded" if self.model_id.startswith(FOLDED_PREFIX) else name

    @property
    def label(self) -> str:
        """The name, with the options it was loaded with: ``detector.onnx (images=1,3,320,320)``."""
        options = load_options(self.model_id.removeprefix(FOLDED_PREFIX))
        notes = [f"{name}={','.join(map(str, shape))}" for name, shape in options.input_shapes.items()]
        if options.family is not None:
            notes.append(t("model_ids.as_family", family=t(f"families.{options.family}")))
        return f"{self.name} ({'; '.join(notes)})" if notes else self.name


class LoadOptions(NamedTuple):
    """What an id (not a folded one) asks the engine to load: the source, and the family and
    input sizes given for it (None and empty: as its file says)."""

    source_id: str
    family: str | None
    input_shapes: dict[str, tuple[int, ...]]


def load_options(model_id: str) -> LoadOptions:
    """The source an id names and the load options in front of it."""
    options, source_id = _options(model_id)
    shapes = {name: tuple(int(size) for size in sizes.split(","))
              for name, sizes in parse_qsl(options.get(SHAPED_PREFIX, ""))}
    return LoadOptions(source_id, options.get(FAMILY_PREFIX), shapes)


def _options(model_id: str) -> tuple[dict[str, str], str]:
    """The raw values of the options an id starts with, by prefix, and the id after them."""
    options = {}
    while prefix := next((prefix for prefix in LOAD_OPTIONS if model_id.startswith(prefix)), None):
        options[prefix], _, model_id = model_id.removeprefix(prefix).partition("/")
    return options, model_id


def _with_option(model_id: str, prefix: str, value: str) -> str:
    """The id with one load option set (an empty value removes it), inside ``folded/``."""
    if model_id.startswith(FOLDED_PREFIX):
        return FOLDED_PREFIX + _with_option(model_id.removeprefix(FOLDED_PREFIX), prefix, value)
    options, source_id = _options(model_id)
    options[prefix] = value
    return "".join(f"{option}{options[option]}/" for option in LOAD_OPTIONS if options.get(option)) + source_id


def linkable(model_id: str) -> bool:
    """Whether a link can name the model: a sample model or one of the server's model folder, with
    its BatchNorm folded or loaded as another family or both (uploads live in their session only).
    Whether the server has that model is for :func:`ui.server_models.refusal` to say."""
    options, source_id = _options(model_id.removeprefix(FOLDED_PREFIX))
    known = source_id in sample_models.ZOO_NAMES or source_id.startswith(SERVER_PREFIX)
    return (known and set(options) <= {FAMILY_PREFIX}
            and options.get(FAMILY_PREFIX, FAMILIES[0]) in FAMILIES)


def with_family(model_id: str, family: str | None) -> str:
    """The id of the model loaded as ``family`` (one of ``FAMILIES``; None: the detected one)."""
    return _with_option(model_id, FAMILY_PREFIX, family or "")


def with_input_shapes(model_id: str, shapes: Mapping[str, Sequence[int]]) -> str:
    """The id of the model loaded with ``shapes`` (``{input name: sizes}``, the batch first);
    sizes given before are replaced, and none at all give the model as its file describes it."""
    return _with_option(model_id, SHAPED_PREFIX, urlencode([(name, ",".join(map(str, sizes))) for name, sizes in shapes.items()]))


def input_shapes(model_id: str) -> tuple[str, dict[str, tuple[int, ...]]]:
    """The id of the model without given sizes, and those sizes (empty when none were given)."""
    return with_input_shapes(model_id, {}), load_options(model_id.removeprefix(FOLDED_PREFIX)).input_shapes
