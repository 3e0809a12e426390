"""Failed workers become one error notification, never a traceback on screen (harlequin's way).

Textual posts `Worker.StateChanged` to the node that started the worker and does not bubble it,
so every screen and widget that starts workers mixes this in: one handler, written once.
"""

from __future__ import annotations

import sys

from textual.dom import DOMNode
from textual.worker import Worker, WorkerState

from workbench.errors import UserError


def one_line(error: BaseException) -> str:
    """What the user reads: our own errors as they say it, anything else named by its type."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, UserError) or _is_store_error(error):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _is_store_error(error: BaseException) -> bool:
    # Only the store raises its errors, so its module is loaded when one arrives; looked up rather
    # than imported, which keeps the store's imports off the app's start (see tui.app).
    db = sys.modules.get("store.db")
    return db is not None and isinstance(error, db.StoreError)


class ReportsFailures:
    """Mix into a Screen or Widget (before it) whose workers may fail. A plain class: Textual
    follows the first DOMNode base for CSS and component classes, which must stay the widget's."""

    def on_worker_state_changed(self: DOMNode, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.app.notify(one_line(event.worker.error), title="Error", severity="error", timeout=10)
