"""The packed file: bit-packed codes, positions of non-zeros, decoding parameters, raw rest.

Container: a safetensors file (no pickle, safe to open from anyone), so any safetensors
reader can list its parts. For a compressed tensor ``W`` it holds

- ``W::codes``      uint8, the codes ``q - min_code`` bit-packed at ``bits`` bits each;
- ``W::positions``  uint8, where the non-zeros are (absent when the codes are dense):
  a bitmap of numel bits, or the gaps between consecutive non-zero flat indices minus one,
  bit-packed at the width of the largest gap, whichever is smaller;
- ``W::<param>``    the scheme's decoding parameters (scale, zero_point, exponent_max,
  codebook) in their own dtypes;

and every other tensor of the state dict raw under its own name. The JSON in the safetensors
metadata (key ``compression_lab``) records per tensor: shape, quantize section, bits,
min_code, encoding (dense/bitmap/deltas), non-zero count and gap width, and, for a weight
whose output channels lie on axis 1 (a ConvTranspose, GPT-2's Conv1D, an ONNX LSTM), its
``output_axis``: its codes and positions are then stored in the channels-first order the
kernel worked in (``compression.output_axes``). Such a file is format version 2, which readers
of version 1 refuse rather than misread; a file without one is still written as version 1.

Version 4 adds what the methods that look at data need: a tensor quantized by GPTQ or AWQ has
their quantize section, read by their decoders (``compression.quantization.gptq``, ``awq``):
GPTQ's codes, scales and zero points are the linear scheme's, plus ``W::group_index`` (each
input column's group) with act-order; AWQ's are the linear scheme's over W·diag(s), plus
``W::input_scale`` (s, one per input channel). The index then records the calibration: the
recipe's samples and seed, the rows drawn, their fingerprint and their source.

``encoded_bytes`` is the sum of those tensors' byte lengths; ``file_bytes`` adds the
safetensors header (the JSON index and the metadata). Loading decodes with the same function
``compress`` used, so the dense weights come back bit for bit.
"""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from compression.bitpack import pack_bits, packed_size, unpack_bits
from compression.errors import PackedFileError
from compression.files import write_atomically
from compression.masks_numpy import nonzero_flags
from compression.output_axes import CHANNELS_ON_AXIS_0, OutputAxis
from compression.recipe import sorted_keys
from compression.quantization import dequantize_tensor
from compression.quantization.base import QuantizedTensor
from compression.recipe import QuantizeSpec

FORMAT_NAME = "compression-lab-packed"
FORMAT_VERSION = 4  # the newest: version 1, plus output axes (2), tied names (3), calibrated methods (4)
_READABLE_VERSIONS = (1, 2, 3, 4)
_METADATA_KEY = "compression_lab"


@dataclass(frozen=True)
class EncodedTensor:
    """One compressed tensor as stored: byte buffers plus the JSON entry that reads them."""

    buffers: dict[str, torch.Tensor]
    entry: dict[str, Any]

    @property
    def encoded_bytes(self) -> int:
        return sum(buffer.numel() * buffer.element_size() for buffer in self.buffers.values())


def _raw_codes(values: torch.Tensor) -> QuantizedTensor:
    """Unquantized float32 values as 32-bit codes (their bit patterns), for pruned-only tensors."""
    codes = values.float().contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    return QuantizedTensor(codes, {}, 32, 0, True, None, "fp32")


def _gap_width(flat_nonzero: np.ndarray) -> int:
    if flat_nonzero.size == 0:
        return 0
    # The gaps are the first index + 1 and the differences of consecutive indices (one temporary).
    largest_gap = max(int(flat_nonzero[0]) + 1, int(np.diff(flat_nonzero).max(initial=0))) - 1
    return max(largest_gap, 0).bit_length()


def choose_encoding(numel: int, nonzero: int, bits: int, gap_width: int, represents_zero: bool) -> tuple[str, int]:
    """The cheapest layout and its payload bytes (codes + positions, parameters excluded)."""
    options = {
        "bitmap": packed_size(nonzero, bits) + packed_size(numel, 1),
        "deltas": packed_size(nonzero, bits) + packed_size(nonzero, gap_width),
    }
    if represents_zero or nonzero == numel:
        options["dense"] = packed_size(numel, bits)
    encoding = min(options, key=lambda name: (options[name], name != "dense"))
    return encoding, options[encoding]


def encode_tensor(
    values: torch.Tensor,
    quantized: QuantizedTensor | None,
    spec: QuantizeSpec | None,
    output_axis: OutputAxis = CHANNELS_ON_AXIS_0,
) -> EncodedTensor:
    """Encode the final dense ``values`` of one tensor whose codes are ``quantized``, both with
    the output channels first (``output_axis.channels_first`` of the tensor)."""
    quantized = quantized if quantized is not None else _raw_codes(values)
    flat_values = values.reshape(-1)
    nonzero_mask = nonzero_flags(flat_values)
    flat_nonzero = np.flatnonzero(nonzero_mask)
    gap_width = _gap_width(flat_nonzero)
    encoding, _ = choose_encoding(
        values.numel(), flat_nonzero.size, quantized.bits, gap_width, quantized.represents_zero
    )
    codes = quantized.codes.reshape(-1).numpy()  # select first, widen after: half the int64 work at 50% sparsity
    stored = codes if encoding == "dense" else codes[flat_nonzero]
    stored_codes = np.subtract(stored, quantized.min_code, dtype=np.int64)
    buffers = {"codes": torch.from_numpy(pack_bits(stored_codes, quantized.bits))}
    if encoding == "bitmap":
        buffers["positions"] = torch.from_numpy(np.packbits(nonzero_mask, bitorder="little"))
    elif encoding == "deltas":
        gaps = np.diff(flat_nonzero, prepend=-1) - 1
        buffers["positions"] = torch.from_numpy(pack_bits(gaps, gap_width))
    for name, param in quantized.params.items():
        buffers[name] = param.contiguous()
    entry = _entry(output_axis.stored_shape(values.shape), spec, quantized, encoding, int(flat_nonzero.size), gap_width, output_axis)
    return EncodedTensor(buffers, entry)


def _entry(
    shape: torch.Size, spec: QuantizeSpec | None, quantized: QuantizedTensor, encoding: str, nonzero: int,
    gap_width: int, output_axis: OutputAxis,
) -> dict[str, Any]:
    """The JSON entry that reads one encoded tensor back."""
    entry = {
        "shape": list(shape),
        "quantize": spec.to_dict() if spec is not None else None,
        "scheme": quantized.label,
        "bits": quantized.bits,
        "min_code": quantized.min_code,
        "encoding": encoding,
        "nonzero": nonzero,
        "gap_width": gap_width,
        "params": sorted(quantized.params),
    }
    if output_axis != CHANNELS_ON_AXIS_0:
        entry["output_axis"] = output_axis.to_entry()
    return entry


def pruned_layout(
    shape: torch.Size, nonzero: int, gap_width: int, output_axis: OutputAxis = CHANNELS_ON_AXIS_0
) -> EncodedTensor:
    """What :func:`encode_tensor` stores for a pruned, unquantized tensor of ``shape``, with its
    buffers as shapes only (meta tensors): the packed file's exact sizes without its bytes.

    >>> weight = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    >>> pruned_layout(weight.shape, 2, 2).entry == encode_tensor(weight, None, None).entry  # gaps 0 and 2
    True
    """
    codes = _raw_codes(torch.zeros(0))
    numel = math.prod(shape)
    encoding, _ = choose_encoding(numel, nonzero, codes.bits, gap_width, codes.represents_zero)
    sizes = {"codes": packed_size(numel if encoding == "dense" else nonzero, codes.bits)}
    if encoding == "bitmap":
        sizes["positions"] = packed_size(numel, 1)
    elif encoding == "deltas":
        sizes["positions"] = packed_size(nonzero, gap_width)
    buffers = {part: torch.empty(size, dtype=torch.uint8, device="meta") for part, size in sizes.items()}
    return EncodedTensor(buffers, _entry(torch.Size(shape), None, codes, encoding, nonzero, gap_width, output_axis))


def decode_tensor(buffers: dict[str, torch.Tensor], entry: dict[str, Any]) -> torch.Tensor:
    """Dense float32 values of one stored tensor (the inverse of :func:`encode_tensor`)."""
    output_axis = OutputAxis.from_entry(entry["output_axis"]) if "output_axis" in entry else CHANNELS_ON_AXIS_0
    shape = output_axis.channels_first_shape(entry["shape"])  # the order the codes are stored in
    numel = shape.numel()
    bits, nonzero = entry["bits"], entry["nonzero"]
    encoding = entry["encoding"]
    stored = unpack_bits(buffers["codes"].numpy(), bits, numel if encoding == "dense" else nonzero)
    if encoding == "dense":
        flat_nonzero = None
        codes = stored
    else:
        if encoding == "bitmap":
            bitmap = np.unpackbits(buffers["positions"].numpy(), bitorder="little")[:numel]
            flat_nonzero = np.flatnonzero(bitmap)
        else:
            gaps = unpack_bits(buffers["positions"].numpy(), entry["gap_width"], nonzero)
            flat_nonzero = np.cumsum(gaps + 1) - 1
        if flat_nonzero.size != nonzero or (nonzero and flat_nonzero[-1] >= numel):
            raise PackedFileError("positions of non-zeros do not match the recorded count.")
        codes = np.zeros(numel, dtype=np.int64)
        codes[flat_nonzero] = stored
    codes_tensor = torch.from_numpy(codes + entry["min_code"]).reshape(shape)
    if entry["quantize"] is None:
        values = codes_tensor.to(torch.int64).to(torch.int32).view(torch.float32)
    else:
        params = {name: buffers[name] for name in entry["params"]}
        values = dequantize_tensor(codes_tensor, params, QuantizeSpec(**entry["quantize"]), shape)
    if flat_nonzero is None:
        return output_axis.restored(values.masked_fill(values == 0, 0.0))  # one canonical zero, as compress makes it
    keep = torch.zeros(numel, dtype=torch.bool)
    keep[torch.from_numpy(flat_nonzero)] = True
    return output_axis.restored(torch.where(keep.reshape(shape), values, torch.zeros((), dtype=values.dtype)))


@dataclass(frozen=True)
class PackedModel:
    """Everything the packed file holds, in memory: encoded tensors, raw tensors, recipe."""

    encoded: dict[str, EncodedTensor]
    raw: dict[str, torch.Tensor]
    recipe_json: str
    model_name: str
    # Tied weights (an LM head sharing the embedding matrix): each other name of a tensor, mapped
    # to the name it is stored under. The file holds the tensor once, as the module does.
    aliases: dict[str, str] = field(default_factory=dict)
    # The rows that calibrated it (compression.calibration_pass.CalibrationRecord), if any did.
    calibration: dict[str, Any] | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every stored tensor by file key; tied tensors are cloned (safetensors refuses aliases)."""
        out: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        for name, tensor in self.raw.items():
            tensor = tensor.detach().contiguous()
            pointer = tensor.untyped_storage().data_ptr()
            out[name] = tensor.clone() if pointer in seen and tensor.numel() else tensor
            seen.add(pointer)
        for name, encoded in self.encoded.items():
            for part, buffer in encoded.buffers.items():
                out[f"{name}::{part}"] = buffer
        return out

    def metadata(self) -> dict[str, str]:
        # Keys sorted, but the recipe kept as its canonical JSON has it: the order of its
        # override patterns decides which one wins, and sorting them would change the recipe.
        index = {
            "encoded": sorted_keys({name: encoded.entry for name, encoded in self.encoded.items()}),
            "format": FORMAT_NAME,
            "model": self.model_name,
            "raw": sorted(self.raw),
            "recipe": json.loads(self.recipe_json),
            "version": self.version,
        }
        if self.aliases:
            index["aliases"] = dict(sorted(self.aliases.items()))
        if self.calibration is not None:
            index["calibration"] = sorted_keys(self.calibration)
        return {_METADATA_KEY: json.dumps(index)}

    @property
    def version(self) -> int:
        """The oldest format version that reads this file."""
        if self.calibration is not None:
            return 4
        return 3 if self.aliases else 2 if self.has_output_axes else 1

    @property
    def has_output_axes(self) -> bool:
        """Whether a tensor is stored channels-first from axis 1 (what needs version 2)."""
        return any("output_axis" in encoded.entry for encoded in self.encoded.values())

    @property
    def encoded_bytes(self) -> int:
        raw = sum(t.numel() * t.element_size() for t in self.raw.values())
        return raw + sum(encoded.encoded_bytes for encoded in self.encoded.values())

    def to_bytes(self) -> bytes:
        return safetensors.torch.save(self.tensors(), metadata=self.metadata())

    @property
    def file_bytes(self) -> int:
        """``len(self.to_bytes())``, from the header alone: nothing is serialised or copied.

        A safetensors file is an 8-byte length, the JSON header padded with spaces to a multiple
        of 8, then the tensors' bytes back to back, ordered by dtype, then by name; the header
        gives each tensor's dtype, shape and byte offsets, so its length is known in advance.

        >>> packed = PackedModel({"w": encode_tensor(torch.tensor([[0.5, 0.0], [0.25, -1.0]]), None, None)},
        ...                      {"b": torch.zeros(3), "steps": torch.tensor(7)}, "{}", "demo")
        >>> packed.file_bytes == len(packed.to_bytes())
        True
        """
        layout = {name: (tensor.dtype, list(tensor.shape), tensor.numel() * tensor.element_size())
                  for name, tensor in self.raw.items()}
        for name, encoded in self.encoded.items():
            for part, buffer in encoded.buffers.items():
                layout[f"{name}::{part}"] = (buffer.dtype, list(buffer.shape), buffer.numel() * buffer.element_size())
        spelling = _safetensors_dtypes(tuple(sorted({dtype for dtype, _, _ in layout.values()}, key=str)))
        header: dict[str, Any] = {"__metadata__": self.metadata()}
        offset = 0
        for name in sorted(layout, key=lambda name: (spelling[layout[name][0]][0], name)):
            dtype, shape, size = layout[name]
            header[name] = {"dtype": spelling[dtype][1], "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
        # serde_json's compact output, which Python's json matches byte for byte with these options.
        header_length = len(json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        return 8 + -(-header_length // 8) * 8 + offset


@functools.lru_cache(maxsize=None)
def _safetensors_dtypes(dtypes: tuple[torch.dtype, ...]) -> dict[torch.dtype, tuple[int, str]]:
    """Per dtype, its place in safetensors' layout order and its name there (e.g. "F32").

    Learnt from safetensors itself, by saving one element of each dtype: its data comes in
    layout order (descending dtype, then name), so the offsets rank the dtypes.
    """
    probe = {str(index): torch.zeros(1, dtype=dtype) for index, dtype in enumerate(dtypes)}
    data = safetensors.torch.save(probe)
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    names = {dtype: header[str(index)]["dtype"] for index, dtype in enumerate(dtypes)}
    first = {}
    for index, dtype in enumerate(dtypes):
        first[names[dtype]] = min(first.get(names[dtype], 1 << 62), header[str(index)]["data_offsets"][0])
    return {dtype: (first[names[dtype]], names[dtype]) for dtype in dtypes}


def save_packed(packed: PackedModel, path: str | os.PathLike) -> int:
    """Write the packed file atomically (never a partial file) and return its size."""
    return write_atomically(path, packed.to_bytes())


def dense_safetensors(state: dict[str, torch.Tensor]) -> bytes:
    """A state dict as plain safetensors bytes; tied tensors are cloned (safetensors refuses aliases)."""
    return safetensors.torch.save({name: tensor.detach().contiguous().clone() for name, tensor in state.items()})


def _read_index(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except FileNotFoundError:
        raise PackedFileError(f"{path}: no such file.") from None
    except Exception as error:  # safetensors raises its own types for every kind of damage
        raise PackedFileError(f"{path} is not a readable packed file ({error}).") from None
    if _METADATA_KEY not in metadata:
        raise PackedFileError(f"{path} is a safetensors file but not a Compression Lab packed file.")
    try:
        index = json.loads(metadata[_METADATA_KEY])
    except json.JSONDecodeError:
        raise PackedFileError(f"{path}: the packed file's index is not valid JSON.") from None
    if index.get("format") != FORMAT_NAME or index.get("version") not in _READABLE_VERSIONS:
        raise PackedFileError(f"{path}: unsupported packed format {index.get('format')!r} v{index.get('version')!r}.")
    return index, tensors


def load_packed(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The dense state dict (original parameter names) and the index stored in a packed file."""
    path = Path(path)
    index, tensors = _read_index(path)
    try:
        state: dict[str, torch.Tensor] = {name: tensors[name] for name in index["raw"]}
        entries = dict(index["encoded"])
    except (KeyError, TypeError, ValueError) as error:
        raise PackedFileError(f"{path}: the packed file's index names a part it does not hold ({error}).") from None
    for name, entry in entries.items():
        prefix = f"{name}::"
        buffers = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        try:
            state[name] = decode_tensor(buffers, entry)
        except (KeyError, ValueError, RuntimeError) as error:
            raise PackedFileError(f"{path}: tensor {name!r} is damaged ({error}).") from None
    for alias, stored in dict(index.get("aliases", {})).items():
        if stored not in state:
            raise PackedFileError(f"{path}: tied name {alias!r} refers to {stored!r}, which the file does not hold.")
        state[alias] = state[stored]
    return state, index
