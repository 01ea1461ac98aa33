"""The server's model folder: models too large for a browser upload, opened from the server's disk.

Off unless the environment variable ``COMPRESSION_LAB_MODELS`` names a folder. A model in it goes
by ``server/<name in the folder>``: a model file the engine loads (``.safetensors``, ``.pt``,
``.pth``, ``.pt2``, ``.onnx``, ``.bin``) or a Hugging Face folder (one holding ``config.json``),
at the top or one folder down (``HuggingFaceTB/SmolLM-135M``). The name comes from a URL anyone
can write, so it is read only inside the folder: each part a plain name (letters, digits,
``._+-``, no leading dot: no ``..``, no hidden file, no absolute path, no backslash), and the
path it names, followed through every symbolic link, must stay in the folder; so must every
file of a Hugging Face folder. The engine then checks the files as it checks any (no pickle is
ever run), without the upload limits: a 135M-parameter model (540 MB) opens.
"""
from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Iterator

from compression.errors import ModelLoadError
from ui.model_ids import FOLDED_PREFIX, SERVER_PREFIX, load_options
from ui.text import t

FOLDER_VARIABLE = "COMPRESSION_LAB_MODELS"
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".pt2", ".onnx", ".bin")
HF_CONFIG = "config.json"
MAX_LISTED = 200  # models listed, the first by name: the page stays short whatever the folder holds
MAX_DEPTH = 2  # a model at the top of the folder or in a folder there (an organisation's)
NAME_PART = re.compile(r"[\w+-][\w.+-]*")


def folder() -> Path | None:
    """The server's model folder as the environment names it; None when it names none (off)."""
    named = os.environ.get(FOLDER_VARIABLE, "")
    return Path(named).resolve() if named else None


def listed() -> list[str]:
    """The ids of the folder's models, sorted by name, at most :data:`MAX_LISTED` (empty when
    the folder is off or missing). Hidden files, odd names and anything leading outside are left out."""
    root = folder()
    if root is None or not root.is_dir():
        return []
    return [SERVER_PREFIX + "/".join(parts) for parts in itertools.islice(_models_under(root, ()), MAX_LISTED)]


def path(model_id: str) -> Path:
    """The file or folder a server model's id names, checked to lie inside the model folder.

    Raises ``ModelLoadError`` saying why otherwise: the folder is off, the name is not a plain
    relative one, it leads outside, or it names no model.
    """
    name = model_id.removeprefix(SERVER_PREFIX)
    root = folder()
    if root is None:
        raise ModelLoadError(t("server_models.off", name=name, variable=FOLDER_VARIABLE))
    parts = tuple(name.split("/"))
    if len(parts) > MAX_DEPTH or not all(NAME_PART.fullmatch(part) for part in parts):
        raise ModelLoadError(t("server_models.bad_name", name=name, depth=MAX_DEPTH))
    candidate = root.joinpath(*parts)
    if not _inside(root, candidate) or (candidate.is_dir() and not _contents_inside(root, candidate)):
        raise ModelLoadError(t("server_models.outside", name=name))
    if not _is_model(candidate):
        raise ModelLoadError(t("server_models.not_a_model", name=name, suffixes=", ".join(MODEL_SUFFIXES)))
    return candidate


def refusal(model_id: str) -> str | None:
    """Why the model an id names (folded or with load options) cannot be opened from the server's
    folder; None for a model that can, or one that is not the folder's."""
    source_id = load_options(model_id.removeprefix(FOLDED_PREFIX)).source_id
    if not source_id.startswith(SERVER_PREFIX):
        return None
    try:
        path(source_id)
    except ModelLoadError as error:
        return str(error)
    return None


def _models_under(root: Path, parts: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """The name parts of every model under ``root/parts``, in name order, descending into folders
    that are not models themselves down to :data:`MAX_DEPTH`."""
    try:
        names = sorted(entry.name for entry in root.joinpath(*parts).iterdir())
    except OSError:  # unreadable: nothing listed from it
        return
    for name in names:
        inner = (*parts, name)
        candidate = root.joinpath(*inner)
        if not NAME_PART.fullmatch(name) or not _inside(root, candidate):
            continue
        if _is_model(candidate):
            if not candidate.is_dir() or _contents_inside(root, candidate):
                yield inner
        elif candidate.is_dir() and len(inner) < MAX_DEPTH:
            yield from _models_under(root, inner)


def _inside(root: Path, candidate: Path) -> bool:
    """Whether ``candidate``, every symbolic link on its way followed, lies in ``root`` (resolved)."""
    try:
        return candidate.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a loop of links (RuntimeError before Python 3.13)
        return False


def _contents_inside(root: Path, model_folder: Path) -> bool:
    """Whether every file and folder in a model folder stays in ``root``: transformers reads the
    folder's files by name, whatever they link to. Links to folders are checked, not descended."""
    return all(_inside(root, Path(parent, name))
               for parent, folders, files in os.walk(model_folder) for name in (*folders, *files))


def _is_model(candidate: Path) -> bool:
    """A model file of a format the engine loads, or a Hugging Face folder."""
    if candidate.is_dir():
        return (candidate / HF_CONFIG).is_file()
    return candidate.is_file() and candidate.suffix.lower() in MODEL_SUFFIXES
