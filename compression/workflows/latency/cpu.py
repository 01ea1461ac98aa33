"""This machine's CPU: its name, its int8 dot-product instructions, and what they mean for int8 speed."""
from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

from compression.display_text import DisplayText

# Instruction-set flags for int8 dot products, as /proc/cpuinfo lists them, and their names.
_INT8_DOT_FLAGS = (("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"), ("asimddp", "Arm dot product"))


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and its int8 dot-product extensions (VNNI): a tuple of their
    names, empty where the flags list none, None where the flags are unknown (not Linux)."""

    name: str
    int8_dot: tuple[str, ...] | None

    @property
    def vnni_note(self) -> str:
        """``"AVX512-VNNI"``, ``"no VNNI"`` or ``"VNNI unknown"``: for a caption."""
        if self.int8_dot is None:
            return DisplayText("vnni_unknown", "VNNI unknown")
        return ", ".join(self.int8_dot) if self.int8_dot else DisplayText("no_vnni", "no VNNI")


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's model name and int8 dot-product flags from /proc/cpuinfo's text.

    >>> parse_cpuinfo("model name\\t: Some CPU\\nflags\\t\\t: fpu avx2 avx512_vnni\\n")
    CpuInfo(name='Some CPU', int8_dot=('AVX512-VNNI',))
    """
    name, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and name is None and value.strip():
            name = value.strip()
        elif key in ("flags", "Features") and flags is None:  # x86 lists "flags", Arm "Features"
            flags = set(value.split())
    if flags is None:
        return CpuInfo(name or platform.machine() or "unknown CPU", None)
    return CpuInfo(name or platform.machine() or "unknown CPU",
                   tuple(label for flag, label in _INT8_DOT_FLAGS if flag in flags))


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU: /proc/cpuinfo on Linux; elsewhere the platform's name, VNNI unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return parse_cpuinfo(handle.read())
    except OSError:
        return CpuInfo(platform.processor() or platform.machine() or "unknown CPU", None)


def int8_slowness(cpu: CpuInfo) -> str:
    """Why int8 may run no faster than float32 on ``cpu``: whether it has VNNI, and what that means."""
    if cpu.int8_dot is None:
        return DisplayText("reason_vnni_unknown", "whether this CPU has int8 dot-product instructions (VNNI) is unknown "
                           "here; without them int8 dot products cost about what float32 ones do")
    if cpu.int8_dot:
        return DisplayText("reason_int8_overheads", f"this CPU has {' and '.join(cpu.int8_dot)}, so the int8 arithmetic "
                           "is cheap; on layers this small, quantizing activations and the quantize/dequantize steps "
                           "cost what int8 saves", extensions=cpu.int8_dot)
    return DisplayText("reason_no_vnni", "this CPU has no VNNI: int8 dot products go through 16-bit multiply-adds "
                       "(VPMADDUBSW), about the speed of float32 FMA")
