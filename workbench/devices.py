"""Choosing the device and dtype, and measuring peak memory on it."""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

import torch

from workbench.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; an unavailable device is an error."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise UserError(f"device {name} is not available on this machine")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is float32 on the CPU (fast and exact there) and half precision on accelerators."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class MemoryMeter:
    """Peak memory since `reset()`: allocated device memory on CUDA/MPS, resident set on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif sys.platform == "linux":
            # Writing 5 to clear_refs resets the kernel's peak-RSS mark (VmHWM) for this process;
            # where that is not allowed, the peak covers the whole process.
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")

    def current(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        if self.device.type == "mps":
            return torch.mps.current_allocated_memory()
        return _proc_status_kib("VmRSS") * 1024

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        if self.device.type == "mps":
            return torch.mps.driver_allocated_memory()
        if sys.platform == "linux":
            return _proc_status_kib("VmHWM") * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS


def free_memory(device: torch.device) -> int | None:
    """Free bytes on the device, where it can tell."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


def refuse_if_too_big(parameters: int, dtype: torch.dtype, device: torch.device) -> None:
    """Refuse, before loading, a model whose weights alone exceed the device's free memory."""
    needed = parameters * torch.finfo(dtype).bits // 8
    free = free_memory(device)
    if free is not None and needed > free:
        raise UserError(
            f"the model needs {needed / 2**30:.1f} GiB ({parameters:,} parameters x "
            f"{torch.finfo(dtype).bits // 8} bytes) but {device} has {free / 2**30:.1f} GiB free"
        )


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0
