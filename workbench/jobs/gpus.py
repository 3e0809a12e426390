"""Which GPUs of this host each job uses: plain functions on GPU numbers and labels, no torch.

A worker runs one job per slot. A slot is one GPU (`--gpus 0,2`), or several joined for models
that no single GPU holds (`--gpus 0+1,2+3`); by default every GPU of the host, one each. A job's
row names its slot as its device, `cuda:2` or `cuda:0+1`, from the moment it is claimed: the claim
(store.jobs.claim, under the store's write lock) reads the devices of the jobs already running on
this host and takes the first slot that shares no GPU with them, so two jobs never share a GPU,
whichever processes claimed them. A running job whose device says nothing of its GPUs (`cuda`, or
none yet) counts as using them all. A foreground CLI runs its job only when the host is idle, and
takes the whole host (its process sees every GPU, and spreads a model too large for one).

A job process sees only its slot's GPUs (CUDA_VISIBLE_DEVICES; there they are cuda:0, cuda:1...),
and one that sees fewer than its slot names (a GPU gone since its worker started) fails, saying so,
rather than run somewhere else.

GPU numbers are CUDA's for the worker: positions in its $CUDA_VISIBLE_DEVICES when that is set,
else every NVIDIA GPU the driver lists (/proc/driver/nvidia/gpus, else `nvidia-smi -L`).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import UserError

PINNED = "WORKBENCH_GPUS"  # in a job process's environment: the label of the slot its worker gave it
DRIVER = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the NVIDIA driver holds


@dataclass(frozen=True)
class Slot:
    gpus: tuple[int, ...]  # the host's GPU numbers, as the worker sees them

    @property
    def label(self) -> str:
        return "cuda:" + "+".join(map(str, self.gpus))


def visible_gpus(environ: Mapping[str, str] = os.environ, driver: Path = DRIVER) -> list[str]:
    """The GPUs CUDA shows a process with this environment, each named as CUDA_VISIBLE_DEVICES
    names it (a number or a UUID), in CUDA's order."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        names = []
        for name in (n.strip() for n in listed.split(",")):
            if not name or name.startswith("-"):
                break  # CUDA ignores everything from the first invalid entry on
            names.append(name)
        return names
    if driver.is_dir():
        return [str(i) for i in range(sum(1 for _ in driver.iterdir()))]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [str(i) for i in range(sum(line.startswith("GPU ") for line in out.splitlines()))]
    return []


def check_device(device: str) -> None:
    """A device this machine lacks, as far as shows without torch: no GPU the driver lists for
    `cuda`, not Apple silicon for `mps` (a torch built without CUDA on a GPU host shows only in the
    job, which then fails saying so)."""
    if device == "cuda" and not visible_gpus():
        raise UserError("device cuda is not available on this machine")
    if device == "mps" and not _apple_silicon():
        raise UserError("device mps is not available on this machine")


def light_device(device: str) -> str | None:
    """The device `auto` (or a named device) comes to, as far as shows without torch: `cpu` on a
    host with no GPU the driver lists and no Apple silicon; None where only torch can tell."""
    if device == "cpu" or (device == "auto" and not visible_gpus() and not _apple_silicon()):
        return "cpu"
    return None


def _apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def parse_slots(text: str, count: int) -> list[Slot]:
    """`--gpus`: `all` (each GPU a slot), `none`, or slots separated by commas, each a GPU number
    or numbers joined with `+` (one job on those GPUs together)."""
    text = text.strip().lower()
    if text == "all":
        return [Slot((gpu,)) for gpu in range(count)]
    if text == "none":
        return []
    slots, seen = [], set()
    for part in text.split(","):
        try:
            gpus = tuple(int(g) for g in part.split("+"))
        except ValueError:
            raise UserError(f"--gpus takes all, none, or GPU numbers such as 0,2 or 0+1,2+3; got {text!r}") from None
        for gpu in gpus:
            if not 0 <= gpu < count:
                shown = f"{count} (0-{count - 1})" if count > 1 else ("one (0)" if count else "none")
                raise UserError(f"--gpus names GPU {gpu}, but this host has {shown}")
            if gpu in seen:
                raise UserError(f"--gpus names GPU {gpu} twice: a GPU runs one job at a time")
            seen.add(gpu)
        slots.append(Slot(gpus))
    return slots


@dataclass(frozen=True)
class HostGpus:
    """The GPUs a process places jobs on: the host's as it sees them, and its slots."""

    visible: list[str]  # as CUDA_VISIBLE_DEVICES names them, in CUDA's order
    slots: list[Slot]

    @classmethod
    def whole(cls, visible: list[str]) -> HostGpus:
        """One slot of every GPU: a process that runs its job itself (a foreground CLI)."""
        return cls(visible, [Slot(tuple(range(len(visible))))] if visible else [])

    def place(self, running: list[str | None]) -> str | None:
        """The label of a free slot, given the running jobs' devices (for store.jobs.claim)."""
        slot = free_slot(self.slots, running, len(self.visible))
        return slot.label if slot else None

    def environment(self, label: str | None) -> dict[str, str]:
        """A job process's environment for the slot `label` names (nothing for another label)."""
        slot = next((s for s in self.slots if s.label == label), None)
        return child_environment(slot, self.visible) if slot else {}


def busy_gpus(devices: Iterable[str | None], count: int) -> set[int]:
    """The GPUs that running jobs' devices (`cuda:2`, `cuda:0+1`, `cpu`...) take."""
    busy: set[int] = set()
    for device in devices:
        if device is not None and not device.startswith("cuda"):
            continue  # cpu, mps
        gpus = gpus_of(device)
        busy |= set(range(count)) if gpus is None else set(gpus)
    return busy


def gpus_of(device: str | None) -> tuple[int, ...] | None:
    """The GPUs a `cuda:N[+M...]` label names; None for anything else (`cuda`, nothing, other text)."""
    if device is None or not device.startswith("cuda:"):
        return None
    try:
        return tuple(int(g) for g in device.removeprefix("cuda:").split("+"))
    except ValueError:
        return None


def free_slot(slots: list[Slot], running: Iterable[str | None], count: int) -> Slot | None:
    """The first slot sharing no GPU with the running jobs (their devices), if any."""
    busy = busy_gpus(running, count)
    return next((slot for slot in slots if not busy & set(slot.gpus)), None)


def child_environment(slot: Slot, visible: list[str]) -> dict[str, str]:
    """What a job process on the slot gets in its environment: only the slot's GPUs visible."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(visible[gpu] for gpu in slot.gpus), PINNED: slot.label}


def missing(label: str, seen: int) -> str | None:
    """Why a job given the GPUs of `label` cannot run in a process that sees `seen` GPUs; None when
    it can."""
    gpus = gpus_of(label)
    if gpus is None or seen >= len(gpus):
        return None
    return (f"the job was given {label}, but its process sees {seen} GPU{'s' * (seen != 1)} of the "
            f"{len(gpus)}: the GPU is gone or has failed (nvidia-smi tells); `workbench jobs retry` runs it again")
