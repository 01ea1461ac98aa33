"""Uploaded files on disk: the size limit, safe names, one folder per process, nothing left behind.

An upload is stored under the hash of its bytes, so the same file uploaded twice is one file
and its id (``upload/<hash>/<name>``) is a stable cache key. :func:`stored` keeps what it wrote
only when the block using the files (loading the model) succeeds.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import streamlit as st

import compression
from ui.model_ids import UPLOAD_PREFIX
from ui.text import t

# One limit for the browser, the page and the engine. server.maxUploadSize in
# .streamlit/config.toml holds the same number (the server refuses bigger requests outright);
# a test keeps the two equal. 200 MB takes MiniLM-sized models (all-MiniLM-L6-v2 is 91 MB as
# safetensors or ONNX) with room to spare.
UPLOAD_LIMIT_MB = 200
MAX_UPLOAD_BYTES = UPLOAD_LIMIT_MB * 1024**2  # Streamlit's megabytes are MiB
# float32 values that fit in the upload limit: what an uploaded model may hold at most.
MAX_UPLOAD_PARAMETERS = MAX_UPLOAD_BYTES // 4
# Evaluation data the engine reads (compression.io.data_files): arrays, text, a zip of images.
DATA_TYPES = ["npz", "txt", "jsonl", "zip"]
CONFIG_BYTES = 1024**2  # a config.json read for the folder's name; a longer one is not named by it


@st.cache_resource
def _upload_folder() -> Path:
    """One temporary folder per server process for uploaded files, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="compression-lab-uploads-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _safe_name(name: str) -> str:
    """A file name with no folder part and only harmless characters, at most 80 long.

    The end is kept (the engine tells .safetensors and .onnx files by their suffix) and
    leading dots go ("..", hidden files); a name with nothing left becomes "upload".

    >>> _safe_name("../../etc/passwd"), _safe_name("my model?.pt"), _safe_name("..")
    ('passwd', 'my_model_.pt', 'upload')
    """
    base = re.split(r"[/\\]", name)[-1]  # whichever separator the browser sent
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base)[-80:].lstrip(".")
    return cleaned if cleaned.strip("._-") else "upload"


def _write_new(path: Path, content: bytes, written: list[Path]) -> None:
    """Write ``path`` unless it exists (same hash, same name: same bytes), noting what was new."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    written.append(path)
    path.write_bytes(content)


def _store_upload(name: str, content: bytes, written: list[Path]) -> str:
    """Save one uploaded file under its hash and return an id usable as a cache key.

    Files written now (not those already there from an earlier upload) are added to ``written``.
    """
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = _upload_folder() / digest / _safe_name(name)
    _write_new(path, content, written)
    return f"{UPLOAD_PREFIX}{digest}/{path.name}"


def _store_uploads(files: list[tuple[str, bytes]], written: list[Path]) -> str:
    """One file as itself; several (a Hugging Face folder's files) as one folder."""
    if len(files) == 1:
        return _store_upload(*files[0], written)
    names = [_safe_name(name) for name, _ in files]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise compression.ModelLoadError(t("uploads.name_clash", names=", ".join(clashes)))
    digest = hashlib.sha256(b"".join(hashlib.sha256(c).digest() + n.encode() for n, c in sorted(files))).hexdigest()[:16]
    folder = _upload_folder() / digest / _folder_name(files)
    for name, (_, content) in zip(names, files):
        _write_new(folder / name, content, written)
    return f"{UPLOAD_PREFIX}{digest}/{folder.name}"


def _folder_name(files: list[tuple[str, bytes]]) -> str:
    """The name a folder uploaded file by file goes by: the folder the browser names (a folder
    upload sends paths), else the model its config.json names (``_name_or_path``, else the class
    it was saved as, else its model type), else "upload".

    >>> _folder_name([("my-llama/config.json", b"{}"), ("my-llama/model.safetensors", b"")])
    'my-llama'
    >>> _folder_name([("config.json", b'{"architectures": ["LlamaForCausalLM"]}'), ("model.safetensors", b"")])
    'LlamaForCausalLM'
    """
    folders = {tuple(re.split(r"[/\\]", name)[:-1][:1]) for name, _ in files}
    if len(folders) == 1 and (folder := folders.pop()):
        return _safe_name(folder[0])
    config = next((content for name, content in files if _safe_name(name) == "config.json"), b"")
    try:
        fields = json.loads(config) if len(config) <= CONFIG_BYTES else {}
    except (ValueError, RecursionError):  # not JSON, or nested too deep: the engine refuses it when it loads
        fields = {}
    if not isinstance(fields, dict):
        fields = {}
    architectures = fields.get("architectures") if isinstance(fields.get("architectures"), list) else []
    for name in (fields.get("_name_or_path"), *architectures[:1], fields.get("model_type")):
        if isinstance(name, str) and name.strip("/\\"):
            return _safe_name(name.rstrip("/\\"))
    return "upload"


def _remove(paths: list[Path]) -> None:
    """Delete the files, then their folders inside the upload folder that are left empty."""
    root = _upload_folder()
    for path in paths:
        path.unlink(missing_ok=True)
        for folder in path.parents:
            if folder == root or root not in folder.parents or any(folder.iterdir()):
                break
            folder.rmdir()


@contextlib.contextmanager
def stored(files: list[tuple[str, bytes]], data: tuple[str, bytes] | None = None) -> Iterator[tuple[str, str | None]]:
    """Store an upload (model files, optional data file) and give (model_id, data_id) to the block.

    Files over the upload limit are refused before anything is written; when the block raises
    (the engine refused the files, a bug, or a rerun cutting the load short) the files this
    upload wrote are deleted, so a refused upload leaves no file of its own behind.
    """
    for name, content in [*files, *([data] if data else [])]:
        if len(content) > MAX_UPLOAD_BYTES:
            raise compression.ModelLoadError(t("uploads.over_limit", name=name, size=len(content), limit=MAX_UPLOAD_BYTES,
                                               limit_mb=MAX_UPLOAD_BYTES / 1024**2))
    written: list[Path] = []
    try:
        model_id = _store_uploads(files, written)
        data_id = _store_upload(*data, written) if data else None
        yield model_id, data_id
    except BaseException:
        _remove(written)
        raise


def source(item_id: str) -> str:
    """What the engine loads for an id: the stored file of an upload, else the id itself."""
    if item_id.startswith(UPLOAD_PREFIX):
        return str(_upload_folder() / item_id.removeprefix(UPLOAD_PREFIX))
    return item_id
