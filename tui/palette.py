"""The command palette (ctrl+p): every action of the screen by its name, and the store's models,
runs and studies by theirs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING

from textual.app import SystemCommand
from textual.command import Hit, Hits, Provider
from textual.screen import Screen

from tui.navigation import navigator
from workbench.tabular import count

if TYPE_CHECKING:
    from store.queries import ModelInfo, RunSummary
    from store.studies import StudySummary

FOUND = 8  # of each kind, per query


def binding_commands(screen: Screen[object], seen: set[str]) -> Iterable[SystemCommand]:
    """The screen's actions that have a description, each with its key as help (titles in `seen`
    are left out, and those given are added to it)."""
    for active in screen.active_bindings.values():
        binding = active.binding
        if not binding.description or not active.enabled or binding.description in seen:
            continue
        seen.add(binding.description)
        shown = screen.app.get_key_display(binding)
        run = partial(screen.app.run_action, binding.action, active.node)
        yield SystemCommand(binding.description, f"key {shown}", run)


class StoreCommands(Provider):
    """Models, runs and studies found by the words typed (as the lists filter)."""

    async def search(self, query: str) -> Hits:
        if not query.strip() or getattr(self.app, "store", None) is None:
            return
        models, runs, found_studies = await asyncio.to_thread(self._find, query)
        matcher = self.matcher(query)
        go = navigator(self.screen)
        for m in models:
            text = f"model {m.name}"
            yield Hit(
                max(matcher.match(text), 0.5),
                matcher.highlight(text),
                partial(go.open_model, m.id),
                text=text,
                help=f"{m.family}, {m.num_layers} layers, {count(m.parameters)} parameters",
            )
        for r in runs:
            made = f" -> {r.result_model_name}" if r.result_model_name else f" ({r.status})"
            text = f"run {r.id}: {r.scorer} on {r.base_model_name}{made}"
            yield Hit(max(matcher.match(text), 0.4), matcher.highlight(text), partial(go.open_run, r.id), text=text)
        for s in found_studies:
            text = f"study {s.name}"
            yield Hit(max(matcher.match(text), 0.5), matcher.highlight(text), partial(go.open_study, s.name),
                      text=text, help=f"{s.configurations} configurations of {s.base_model}, {s.status}")  # fmt: skip

    def _find(self, query: str) -> tuple[list[ModelInfo], list[RunSummary], list[StudySummary]]:
        """Models whose fields hold every word; runs by id ("run 12") and by the other words; studies
        by name and base (the word "study" itself aside)."""
        from store import queries, studies  # loaded with the store (tui.app keeps it off the start)
        from store.db import NotFoundError

        store = self.app.store  # type: ignore[attr-defined]
        words = [w.strip(":#") for w in query.split()]
        words = [w for w in words if w and w.lower() != "run"]
        runs = []
        for word in words:
            if word.isdigit():
                with suppress(NotFoundError):
                    runs.append(queries.run_summary(store, int(word)))
        text = " ".join(w for w in words if not w.isdigit())
        if text:
            runs += [r for r in queries.list_runs(store, text, limit=FOUND) if r not in runs]
        named = " ".join(w for w in query.split() if w.lower() != "study")
        found_studies = studies.list_studies(store, named, limit=FOUND) if named else []
        return queries.list_models(store, query, limit=FOUND), runs, found_studies
