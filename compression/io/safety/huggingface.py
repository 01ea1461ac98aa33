"""Hugging Face model folders: configs that ask for the model's own code, and the weights files
transformers will read, found as it finds them and each inspected.

transformers reads one weights entry of a folder, the first present of ``model.safetensors``,
``model.safetensors.index.json``, ``pytorch_model.bin``, ``pytorch_model.bin.index.json``
(or the file ``transformers_weights`` in config.json names). An index names the shards in its
``weight_map``; transformers joins each name to the folder, so a name with a folder part
(``../x.safetensors``) would reach outside it: such an index is refused, and so is one naming a
shard that is missing. Files the chosen entry does not name (a shard left out of the index, a
``pytorch_model.bin`` beside ``model.safetensors``) are never opened, so they are not inspected
or counted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compression.errors import ModelLoadError, UnsafeFileError
from compression.io.safety.limits import DEFAULT_MAX_FILE_BYTES, MAX_EMBEDDED_BYTES, checked_size, read_json
from compression.io.safety.model_files import inspect_file
from compression.io.safety.report import FileReport

SAFETENSORS_WEIGHTS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"
_ENTRIES = (SAFETENSORS_WEIGHTS, SAFETENSORS_INDEX, PICKLE_WEIGHTS, PICKLE_INDEX)  # transformers' order
_INDEX_SUFFIX = ".index.json"


@dataclass(frozen=True)
class FolderWeights:
    """The weights files transformers will read from a folder, each inspected.

    ``use_safetensors`` is what to pass to ``from_pretrained``: it pins transformers to the
    format that was inspected.
    """

    files: tuple[Path, ...]
    reports: tuple[FileReport, ...]
    use_safetensors: bool

    @property
    def minimum_parameters(self) -> int:
        """The values stored: exact from safetensors headers, a lower bound for pickles."""
        return sum(report.minimum_parameters for report in self.reports)

    @property
    def exact(self) -> bool:
        return all(report.parameter_count is not None for report in self.reports)


def inspect_hf_folder(folder: str | os.PathLike, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> FolderWeights:
    """Check a Hugging Face model folder and the weights files transformers will read from it.

    Refuses configs that need the model's own Python code (``auto_map``), an index naming a
    shard outside the folder or missing from it, and any weights file ``inspect_file`` refuses.

    >>> [path.name for path in inspect_hf_folder("llama-sharded").files]  # doctest: +SKIP
    ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']
    """
    folder = Path(folder)
    config = _checked_config(folder, "config.json")
    _checked_config(folder, "tokenizer_config.json")
    entry = _weights_entry(folder, config)
    files = _index_shards(folder, entry, max_file_bytes) if entry.endswith(_INDEX_SUFFIX) else (folder / entry,)
    reports = tuple(inspect_file(path, max_file_bytes=max_file_bytes) for path in files)
    return FolderWeights(files, reports, use_safetensors=".safetensors" in entry)


def _checked_config(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        return None
    config = read_json(path.read_bytes(), f"{folder.name}/{name}")
    if isinstance(config, dict) and ("auto_map" in config or config.get("trust_remote_code")):
        raise UnsafeFileError(
            f"{folder.name}/{name} asks for custom code (auto_map / trust_remote_code): "
            "loading it would run Python files shipped with the model. Use a model whose "
            "architecture is built into transformers, or export it with torch.export (.pt2)."
        )
    return config


def _weights_entry(folder: Path, config: Any) -> str:
    """The file transformers opens first: config.json's ``transformers_weights``, else the first
    of ``_ENTRIES`` present."""
    named = config.get("transformers_weights") if isinstance(config, dict) else None
    if named is not None:
        _check_file_name(named, f"{folder.name}/config.json", "transformers_weights")
        return named
    for entry in _ENTRIES:
        if (folder / entry).is_file():
            return entry
    raise ModelLoadError(
        f"{folder.name} has a config.json but no weights: none of {', '.join(_ENTRIES)}."
    )


def _index_shards(folder: Path, entry: str, max_file_bytes: int) -> tuple[Path, ...]:
    """The shards an index's ``weight_map`` names, each a file beside the index."""
    where = f"{folder.name}/{entry}"
    index_path = folder / entry
    checked_size(index_path, min(max_file_bytes, MAX_EMBEDDED_BYTES), "weights index")
    index = read_json(index_path.read_bytes(), where)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelLoadError(f"{where} has no weight_map naming the shard of each tensor; re-save the model.")
    for name in weight_map.values():
        _check_file_name(name, where, "shard")
    shards = sorted(set(weight_map.values()))  # as transformers orders them
    for name in shards:
        if not (folder / name).is_file():
            raise ModelLoadError(
                f"{where} names shard {name!r}, which is not in the folder; add it or re-save the model."
            )
    return tuple(folder / name for name in shards)


def _check_file_name(name: object, where: str, what: str) -> None:
    """A bare file name: transformers joins it to the folder, so a folder part could leave it."""
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise UnsafeFileError(
            f"{where} names {what} {str(name)[:100]!r}, outside the folder; weights must be files beside it."
        )
