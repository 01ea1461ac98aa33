"""Hugging Face model folders: configs that ask for the model's own code, and every weights file."""
from __future__ import annotations

import os
from pathlib import Path

from compression.errors import ModelLoadError, UnsafeFileError
from compression.io.safety.limits import DEFAULT_MAX_FILE_BYTES, read_json
from compression.io.safety.model_files import inspect_file


def inspect_hf_folder(folder: str | os.PathLike, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> int:
    """Check a Hugging Face model folder; return a lower bound on its stored values.

    Refuses configs that need the model's own Python code (``auto_map``) and inspects every
    file transformers may read weights from.
    """
    folder = Path(folder)
    for config_name in ("config.json", "tokenizer_config.json"):
        config_path = folder / config_name
        if not config_path.is_file():
            continue
        config = read_json(config_path.read_bytes(), f"{folder.name}/{config_name}")
        if isinstance(config, dict) and ("auto_map" in config or config.get("trust_remote_code")):
            raise UnsafeFileError(
                f"{folder.name}/{config_name} asks for custom code (auto_map / trust_remote_code): "
                "loading it would run Python files shipped with the model. Use a model whose "
                "architecture is built into transformers, or export it with torch.export (.pt2)."
            )
    # Not every *.bin: transformers never opens training_args.bin and the like.
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    if not weights:
        raise ModelLoadError(
            f"{folder.name} has a config.json but no model.safetensors or pytorch_model.bin."
        )
    return sum(inspect_file(path, max_file_bytes=max_file_bytes).minimum_parameters for path in weights)
