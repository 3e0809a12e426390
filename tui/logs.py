"""Reading a job's log: its tail when first shown, then only what was added (logs can be long)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOG_TAIL = 64 * 1024  # bytes read of a log shown afresh


@dataclass(frozen=True)
class LogChunk:
    job_id: int
    offset: int  # where the next read starts
    text: str
    fresh: bool  # the tail of a log newly shown: replaces what is shown


def read_log(path: Path, job_id: int, offset: int = 0, fresh: bool = True) -> LogChunk:
    """What the log holds from `offset` on; when `fresh`, its last LOG_TAIL bytes."""
    with path.open("rb") as f:
        end = f.seek(0, 2)
        start = max(0, end - LOG_TAIL) if fresh else min(offset, end)
        f.seek(start)
        data = f.read()
    return LogChunk(job_id, start + len(data), data.decode("utf-8", "replace"), fresh)
