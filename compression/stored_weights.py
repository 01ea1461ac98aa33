"""What a checkpoint holds as stored: bytes of tensor data per dtype.

The engine computes in float32 whatever a checkpoint stores (a bfloat16 file is upcast on
loading), so the nominal ``dense_fp32_bytes`` of a half-precision model is twice its file.
This says what the file(s) themselves hold, for the sizes to show beside the nominal one.

>>> stored = StoredWeights.of_tensors([torch.zeros(3, 4, dtype=torch.bfloat16)])
>>> stored.total_bytes, str(stored), stored.upcast_note()
(24, '24 B as bfloat16', 'stored as bfloat16, computed in float32')
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from compression.display_text import DisplayText
from compression.units import format_bytes

COMPUTE_DTYPE = "float32"


@dataclass(frozen=True)
class StoredWeights:
    """``bytes_by_dtype``: numel × element size of every stored tensor, summed per dtype
    (torch's names: ``"bfloat16"``, ``"float16"``, ``"int64"``), the largest first."""

    bytes_by_dtype: Mapping[str, int]

    @classmethod
    def of_tensors(cls, tensors: Iterable[torch.Tensor]) -> StoredWeights:
        """What these tensors take in their own dtypes (a state dict as read from its file)."""
        totals: dict[str, int] = {}
        for tensor in tensors:
            name = str(tensor.dtype).removeprefix("torch.")
            totals[name] = totals.get(name, 0) + tensor.numel() * tensor.element_size()
        return cls.of_totals(totals)

    @classmethod
    def of_totals(cls, totals: Mapping[str, int]) -> StoredWeights:
        return cls(dict(sorted(totals.items(), key=lambda item: (-item[1], item[0]))))

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_dtype.values())

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.bytes_by_dtype)

    def upcast_note(self) -> str | None:
        """What loading changed, for a description; None for a float32 checkpoint."""
        floats = [name for name in self.dtypes if name.startswith(("float", "bfloat")) and name != COMPUTE_DTYPE]
        if not floats:
            return None
        return DisplayText("upcast_note", f"stored as {' and '.join(floats)}, computed in {COMPUTE_DTYPE}",
                           dtypes=tuple(floats), compute=COMPUTE_DTYPE)

    def to_dict(self) -> dict[str, object]:
        return {"bytes": self.total_bytes, "dtypes": dict(self.bytes_by_dtype)}

    def __str__(self) -> str:
        """``"2.4 MiB as bfloat16"``; ``"2.4 MiB as bfloat16 (2.3 MiB) and float32 (96.0 KiB)"``."""
        return str(self.summary)

    @property
    def summary(self) -> DisplayText:
        """What ``str`` says, with the code a dashboard translates."""
        size = format_bytes(self.total_bytes)
        if len(self.bytes_by_dtype) <= 1:
            if not self.dtypes:
                return DisplayText("stored_size", size, size=size)
            return DisplayText("stored_as", f"{size} as {self.dtypes[0]}", size=size, dtype=self.dtypes[0])
        parts = tuple(DisplayText("stored_part", f"{name} ({format_bytes(count)})", dtype=name, size=format_bytes(count))
                      for name, count in self.bytes_by_dtype.items())
        return DisplayText("stored_as_parts", f"{size} as {' and '.join(parts)}", size=size, parts=parts)
