"""Models: every model in the store, filtered as you type, sorted by any column."""

from __future__ import annotations

from collections.abc import Sequence

from textual.binding import Binding

from store import queries
from store.queries import ModelInfo
from tui.navigation import navigator
from tui.paging import ListColumn
from tui.screens.listing import ListScreen
from workbench.tabular import count, fixed


def _intermediate(m: ModelInfo) -> int | tuple[int, ...]:
    return m.intermediate_sizes or m.intermediate_size


def _per_layer(value: int | tuple[int, ...]) -> str:
    return "per-layer" if isinstance(value, tuple) else str(value)


# What tells models apart first (a narrow screen shows these), then what pruned kin share.
MODEL_COLUMNS = [
    ListColumn("name", sort="name", elastic=True),
    ListColumn("parameters", "params", count, numeric=True, sort="params"),
    ListColumn("intermediate", "width", _per_layer, numeric=True, sort="intermediate", get=_intermediate),
    ListColumn("expansion", "expansion", fixed(2), numeric=True, sort="expansion"),
    ListColumn("eval_count", "evals", numeric=True, sort="evals"),
    ListColumn("parent_name", "parent", sort="parent", elastic=True),
    ListColumn("family", sort="family"),
    ListColumn("num_layers", "layers", numeric=True, sort="layers"),
    ListColumn("hidden_size", "hidden", numeric=True, sort="hidden"),
]


class ModelsScreen(ListScreen):
    TITLE = "Models"
    NOUN = "models"
    PLACEHOLDER = "/ filter: words in name, family, architecture, source, tags"
    EMPTY = "No models yet: i imports one (the bundled SmolLM2, a model folder, a .gguf file or a hub id)."
    SORT = "name"
    MARKABLE = True
    BINDINGS = [
        Binding("c", "compare", "Compare", id="models.compare"),
        Binding("t", "tradeoff", "Trade-off", id="models.tradeoff"),
        Binding("h", "app.heal", "Heal", id="models.heal"),
    ]

    def columns(self) -> Sequence[ListColumn]:
        return MODEL_COLUMNS

    def fetch(self, text: str, sort: str, descending: bool, limit: int | None, offset: int) -> list[object]:
        return list(queries.list_models(self.store, text, sort=sort, descending=descending, limit=limit, offset=offset))

    def count(self, text: str) -> int:
        return queries.count_models(self.store, text)

    def open(self, item: object) -> None:
        assert isinstance(item, ModelInfo)
        navigator(self).open_model(item.id)

    @property
    def current_model_name(self) -> str | None:
        """The model a new pruning run starts from: the one under the cursor."""
        model = self.table.current
        return model.name if model is not None else None

    @property
    def current_model_ids(self) -> list[int]:
        """The models a new evaluation starts with: the marked ones, else the one under the cursor."""
        model = self.table.current
        return list(self.table.marked) or ([model.id] if model is not None else [])

    def action_compare(self) -> None:
        marked = list(self.table.marked)
        if not 2 <= len(marked) <= 4:
            self.notify("mark two to four models with space, then compare", severity="warning")
            return
        navigator(self).open_compare(marked)

    def action_tradeoff(self) -> None:
        model = self.table.current
        if model is None:
            return
        if model.parent_id is None:
            self.notify(f"{model.name} has no parent to compare with", severity="warning")
            return
        navigator(self).open_tradeoff(model.id)
