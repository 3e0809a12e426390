"""The footer: every active key with what it does, wrapped onto a second line when the terminal
is narrow (Textual's Footer scrolls sideways instead, hiding keys at 80 columns). A click on an
entry presses its key."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.app import RenderResult
from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget

GAP = 2


@dataclass(frozen=True)
class Entry:
    key: str  # as pressed
    shown: str  # as displayed
    description: str

    @property
    def width(self) -> int:
        return len(self.shown) + 1 + len(self.description)


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: auto;
        background: $footer-background;
        color: $footer-foreground;
        padding: 0 1;
    }
    KeyBar > .keybar--key {
        color: $footer-key-foreground;
        text-style: bold;
    }
    """
    COMPONENT_CLASSES = {"keybar--key"}

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def _bindings_changed(self, _screen: Screen[object]) -> None:
        self.refresh(layout=True)

    def entries(self) -> list[Entry]:
        """Every binding shown, the focused widget's first, then the screen's, then the app's."""
        shown: list[Entry] = []
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if binding.show and binding.description and active.enabled:
                key = binding.key.split(",")[0].strip()
                shown.append(Entry(key, self.app.get_key_display(binding), binding.description))
        if self.app.ENABLE_COMMAND_PALETTE:
            key = self.app.COMMAND_PALETTE_BINDING
            shown.append(Entry(key, key.replace("ctrl+", "^"), "Palette"))
        return shown

    def lines(self, width: int) -> list[list[Entry]]:
        lines: list[list[Entry]] = [[]]
        used = 0
        for entry in self.entries():
            if lines[-1] and used + GAP + entry.width > width:
                lines.append([])
                used = 0
            used += entry.width + (GAP if lines[-1] else 0)
            lines[-1].append(entry)
        return lines

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return len(self.lines(width))

    def render(self) -> RenderResult:
        key_style = self.get_visual_style("keybar--key")
        rows = []
        for line in self.lines(self.content_region.width):
            parts: list[Content | tuple[str, object]] = []
            for entry in line:
                if parts:
                    parts.append(Content(" " * GAP))
                parts += [Content.styled(entry.shown, key_style), Content(f" {entry.description}")]
            rows.append(Content.assemble(*parts))  # type: ignore[arg-type]
        return Content("\n").join(rows)

    def on_click(self, event: events.Click) -> None:
        lines = self.lines(self.content_region.width)
        if not 0 <= event.y < len(lines):
            return
        x = event.x - self.styles.padding.left
        for entry in lines[event.y]:
            if x < entry.width:
                if x >= 0:
                    self.app.simulate_key(entry.key)
                return
            x -= entry.width + GAP
