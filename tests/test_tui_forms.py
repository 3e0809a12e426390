"""The forms: checked as you type, with a preview of what the launch would make."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, Static
from tui_helpers import anyio_backend, app_on, filled_fixture, settle  # noqa: F401  (fixtures)

from tui.forms.prune import PruneForm

pytestmark = pytest.mark.anyio


def check_line(app) -> str:
    return str(app.screen.query_one("#check", Static).render())


async def type_into(pilot, widget_id: str, text: str) -> None:
    field = pilot.app.screen.query_one(f"#{widget_id}", Input)
    field.value = text
    await settle(pilot)


async def test_prune_form_checks_as_you_type_and_previews_widths_parameters_expansion(store, filled):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("p")  # from the Models screen: the model under the cursor is filled in
        await settle(pilot)
        form = app.screen
        assert isinstance(form, PruneForm) and form.query_one("#model", Input).value == "llama-base"
        assert "layers 0-2: 96 → 48" in check_line(app)
        assert "300.0k → 286.2k (4.6% fewer) · expansion 3.00 → 1.50" in check_line(app)
        assert form.spec is not None and form.spec.percent == 50.0

        await pilot.press(*"505")  # the focused field starts selected: typing replaces it
        await settle(pilot)
        assert check_line(app) == "--percent must be at least 0 and below 100, got 505"
        assert form.spec is None
        await type_into(pilot, "target", "abc")
        assert check_line(app) == "the target must be a number, got 'abc'"

        form.query_one("#target-kind", Select).value = "expansion"
        await type_into(pilot, "target", "2")
        assert "layers 0-2: 96 → 64" in check_line(app)
        await type_into(pilot, "target", "4")
        assert "does not shrink the model: its expansion is already 3" in check_line(app)
        await type_into(pilot, "target", "1.5")
        await type_into(pilot, "divisor", "32")
        assert "layers 0-2: 96 → 32" in check_line(app)  # 48 rounded down to a multiple of 32
        await type_into(pilot, "layers", "0-1")
        assert "layers 0-1: 96 → 32  layer 2: 96 → 96" in check_line(app)
        await type_into(pilot, "layers", "0-7")
        assert "names layer 7, but the model has 3" in check_line(app)
        await type_into(pilot, "layers", "all")
        await type_into(pilot, "model", "nosuch")
        assert check_line(app) == "no model named 'nosuch' in the store"


async def test_calibration_fields_show_only_for_data_driven_scorers(store, filled):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_prune_form("llama-base")
        await settle(pilot)
        form = app.screen
        assert not form.query_one("#calibration").display
        assert "peak-to-peak magnitude" in str(form.query_one("#scorer-info", Static).render())
        form.query_one("#scorer", Select).value = "wanda"
        await settle(pilot)
        assert form.query_one("#calibration").display
        await type_into(pilot, "samples", "0")
        assert check_line(app) == "--samples must be at least 1, got 0"
        await type_into(pilot, "samples", "8")
        assert form.spec is not None and (form.spec.calibration, form.spec.samples) == ("wikitext2", 8)
        form.query_one("#allocation", Select).value = "global"
        await settle(pilot)
        assert "global allocation: widths differ per layer" in check_line(app)
