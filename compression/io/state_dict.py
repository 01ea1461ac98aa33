"""State dicts of zoo architectures: ``.pt``/``.pth`` from ``torch.save`` (read with
``weights_only=True``) and ``.safetensors``; checkpoint dicts are unwrapped."""
from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from compression.errors import ModelLoadError
from compression.io.safety import TORCH_SAVE

# Checkpoint dicts hold the state_dict under one of these keys (Lightning, tutorials, ...).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise ModelLoadError(f"{path.name} is not a readable safetensors file ({error}).") from None


def read_torch_state_dict(path: Path, kind: str) -> dict[str, torch.Tensor]:
    try:
        # mmap: tensors stay in the file until copied into the module (zip format only).
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=kind == TORCH_SAVE)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as error:
        raise ModelLoadError(f"{path.name} could not be read by torch.load ({error}).") from None
    return _unwrap_state_dict(loaded, path.name)


def _unwrap_state_dict(loaded: object, where: str) -> dict[str, torch.Tensor]:
    """The state_dict inside a checkpoint: as is, or under a key such as 'state_dict'."""
    if isinstance(loaded, Mapping) and not _is_state_dict(loaded):
        for key in WRAPPER_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not _is_state_dict(loaded):
        if isinstance(loaded, Mapping):
            found = f"a dict with keys {sorted(map(str, loaded))[:6]}"
        else:
            found = type(loaded).__name__
        raise ModelLoadError(
            f"{where} holds {found}, not a state_dict: expected a mapping of parameter names to "
            "tensors (torch.save(model.state_dict(), path)), or a checkpoint dict holding one "
            f"under one of {', '.join(map(repr, WRAPPER_KEYS))}."
        )
    state_dict = dict(loaded)
    if all(key.startswith("module.") for key in state_dict):  # saved from DataParallel
        state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    return state_dict


def _is_state_dict(mapping: Mapping) -> bool:
    items = mapping.items()
    return bool(mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in items)
