"""Choosing the device and dtype, placing a model's weights, and measuring peak memory.

Placement: a model goes whole onto its device when that device's free memory holds its weights.
On CUDA, one that no single GPU holds is spread layer by layer over every GPU this process sees
(accelerate's device map, `device_map="auto"` with a memory budget per GPU that keeps
SPREAD_RESERVE of each free for activations); a job process sees only the GPUs its worker gave it
(CUDA_VISIBLE_DEVICES). A model that fits nowhere is refused with the numbers before any weight
is read. `plan_placement` is the decision alone, on given numbers, so that it is tested anywhere.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from dataclasses import dataclass
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
    """Peak memory since `reset()`: allocated device memory on CUDA/MPS, resident set on the CPU.

    On CUDA the figure is this process's: its allocations on the device named, or, for plain
    `cuda`, on every GPU it sees, summed (a model spread over several GPUs uses them all)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def _gpus(self) -> list[int]:
        if self.device.index is not None:
            return [self.device.index]
        return list(range(torch.cuda.device_count()))

    def reset(self) -> None:
        if self.device.type == "cuda":
            for gpu in self._gpus():
                torch.cuda.reset_peak_memory_stats(gpu)
        elif sys.platform == "linux":
            # Writing 5 to clear_refs resets the kernel's peak-RSS mark (VmHWM) for this process;
            # where that is not allowed, the peak covers the whole process.
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")

    def current(self) -> int:
        if self.device.type == "cuda":
            return sum(torch.cuda.memory_allocated(gpu) for gpu in self._gpus())
        if self.device.type == "mps":
            return torch.mps.current_allocated_memory()
        return _proc_status_kib("VmRSS") * 1024

    def peak(self) -> int:
        if self.device.type == "cuda":
            return sum(torch.cuda.max_memory_allocated(gpu) for gpu in self._gpus())
        if self.device.type == "mps":
            return torch.mps.driver_allocated_memory()
        if sys.platform == "linux":
            return _proc_status_kib("VmHWM") * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS


def free_memory(device: torch.device) -> int | None:
    """Free bytes on the device (plain `cuda`: on the current GPU), where it can tell."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


SPREAD_RESERVE = 0.1  # of each GPU's free memory, kept for activations when a model is spread


@dataclass(frozen=True)
class Placement:
    """Where a model's weights go: all on `device`, or spread over GPUs within `max_memory`."""

    device: torch.device  # where the weights go whole; spread: the GPU the inputs go to
    max_memory: dict[int, int] | None = None  # spread: bytes each GPU (by index) may take

    @property
    def spread(self) -> bool:
        return self.max_memory is not None

    def load_arguments(self) -> dict:
        """transformers' from_pretrained arguments that put the weights there, straight from the
        file (nothing for the CPU, where they are read)."""
        if self.max_memory is not None:
            return {"device_map": "auto", "max_memory": dict(self.max_memory)}
        return {} if self.device.type == "cpu" else {"device_map": {"": self.device}}

    def __str__(self) -> str:
        return "cuda:" + "+".join(map(str, self.max_memory)) if self.max_memory else str(self.device)


def plan_placement(parameters: int, dtype: torch.dtype, device: torch.device, free: list[int]) -> Placement:
    """Where weights of `parameters` x the dtype's size go, given the free bytes of `device` (or,
    on CUDA, of each GPU the process sees, in index order: the first is the device's); a
    UserError with the numbers when they fit nowhere."""
    size = torch.finfo(dtype).bits // 8
    needed = parameters * size
    if needed <= free[0]:
        return Placement(device)
    gib = 2**30
    what = f"the model needs {needed / gib:.1f} GiB ({parameters:,} parameters x {size} bytes)"
    if device.type != "cuda" or len(free) == 1:
        raise UserError(f"{what} but {device} has {free[0] / gib:.1f} GiB free")
    budget = {gpu: int(f * (1 - SPREAD_RESERVE)) for gpu, f in enumerate(free)}
    if needed <= sum(budget.values()):
        return Placement(torch.device("cuda", 0), budget)
    each = ", ".join(f"cuda:{gpu} {f / gib:.1f}" for gpu, f in enumerate(free))
    raise UserError(
        f"{what} but no GPU holds it and the {len(free)} GPUs together can take "
        f"{sum(budget.values()) / gib:.1f} GiB ({1 - SPREAD_RESERVE:.0%} of their free GiB: {each})"
    )


def free_memories(device: torch.device, needed: int) -> list[int]:
    """Free bytes of the device, followed, on CUDA when that is less than `needed`, by those of
    this process's other GPUs (asked only then: asking opens a CUDA context on each)."""
    first = free_memory(device)
    assert first is not None
    if device.type != "cuda" or needed <= first:
        return [first]
    return [first, *(torch.cuda.mem_get_info(gpu)[0] for gpu in range(1, torch.cuda.device_count()))]


def place(parameters: int, dtype: torch.dtype, device: torch.device) -> Placement:
    """`plan_placement` on this machine's free memory, before any weight is read."""
    needed = parameters * torch.finfo(dtype).bits // 8
    return plan_placement(parameters, dtype, device, free_memories(device, needed))


def model_devices(model: torch.nn.Module) -> list[torch.device]:
    """The devices a model's weights are on (several when it is spread), in order of first use."""
    return list(dict.fromkeys(p.device for p in model.parameters()))


def input_device(model: torch.nn.Module) -> torch.device:
    """Where a model's input ids go: its token embeddings' device."""
    return model.get_input_embeddings().weight.device


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0
