"""Real read-only folders and full disks for tests.

As root (permission bits do not bind root), a folder is made read-only by bind-mounting it onto
itself and remounting that read-only, and a full disk is a small tmpfs filled up; a test that
cannot mount (no CAP_SYS_ADMIN) is skipped. As another user, permission bits make a folder
read-only for real, and a full disk is skipped.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str | Path) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=True)


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` and everything under it read-only until the block ends."""
    if os.geteuid() != 0:
        paths = [folder, *folder.rglob("*")]
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield folder
        finally:
            for p in reversed(paths):
                p.chmod(modes[p])
        return
    if not _mount("--bind", folder, folder):
        pytest.skip("cannot bind-mount here (needs CAP_SYS_ADMIN)")
    try:
        assert _mount("-o", "remount,bind,ro", folder), "could not remount read-only"
        yield folder
    finally:
        _umount(folder)


@contextmanager
def small_disk(folder: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` at `folder` (fill it with `fill`) until the block ends."""
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a small file system: mounting one needs root")
    folder.mkdir()
    if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder):
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    try:
        yield folder
    finally:
        _umount(folder)


def fill(folder: Path) -> Path:
    """Write zeros into folder/filler until the disk refuses another byte."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 16, 1):  # big writes, then the last partial block byte by byte
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler
