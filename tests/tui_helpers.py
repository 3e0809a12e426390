"""Helpers for the TUI's Pilot tests: the app on a filled store, the screen as plain text, waiting for workers."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import pytest
from rich.console import Console
from textual.app import App
from textual.command import CommandList
from textual.pilot import Pilot
from tui_store import fill

from store.db import Store
from tui.app import WorkbenchApp


def screen_text(app: App[object]) -> str:
    """What the terminal shows now, as plain text (the SVG screenshot's content)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, color_system=None)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def settle(pilot: Pilot[object]) -> None:
    """Let the workers finish and their messages land, until what they set off has settled too
    (opening the store mounts a screen, whose mount starts a page worker, ...)."""
    quiet = 0
    for _ in range(1000):
        await pilot.pause(0.01 if quiet == 0 else None)
        quiet = 0 if any(not w.is_finished for w in pilot.app.workers) else quiet + 1
        if quiet == 2:  # no worker left, and none started by what the last ones posted
            return
    raise TimeoutError("the app's workers never settled")


async def wait_for(pilot: Pilot[object], done: Callable[[], bool], timeout: float = 120.0) -> None:
    """Let the app run until `done()` holds: what a worker or a poll brings has no fixed delay
    on a loaded machine."""
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, "timed out"
        await pilot.pause(0.1)


async def palette_pick(pilot: Pilot[object], query: str, hit: str) -> None:
    """Type `query` into the command palette, wait until its highlighted hit reads `hit` (the hits
    are gathered a little after the last key), take it, and let what it opens settle."""
    await pilot.press("ctrl+p", *query)

    def offered() -> bool:
        found = pilot.app.screen.query(CommandList)
        at = found.first().highlighted if found else None
        return at is not None and hit in str(found.first().get_option_at_index(at).prompt)

    await wait_for(pilot, offered, timeout=30)
    await pilot.press("enter")
    await settle(pilot)


def app_on(store: Store, **kw: object) -> WorkbenchApp:
    """The app on a store, in Textual's default theme (snapshots and colours stay fixed)."""
    return WorkbenchApp(store, theme="textual-dark", **kw)  # type: ignore[arg-type]


@pytest.fixture(name="filled")
def filled_fixture(store: Store) -> dict[str, int]:
    """The `store` fixture with tui_store's rows in it; their ids."""
    return fill(store)


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests are coroutines run by anyio's pytest plugin (`pytestmark = pytest.mark.anyio`)."""
    return "asyncio"


def notices(app: App[object]) -> list[str]:
    """The messages of the notifications on screen now."""
    return [n.message for n in app._notifications]
