"""Comma-separated lists on the command line (`--percent 20,40`, `--tasks ppl:sms,arc_easy`): light,
so that the commands that take them read them before loading anything."""

from __future__ import annotations

from workbench.errors import UserError


def comma_list(text: str | None, flag: str) -> tuple[str, ...]:
    """The items of a comma-separated list, each stripped; an empty item (`20,,30`, a trailing
    comma) is refused rather than skipped, since it is most likely a value left out by mistake."""
    if text is None:
        return ()
    items = tuple(t.strip() for t in text.split(","))
    if not all(items):
        raise UserError(f"{flag} {text!r} has an empty item: separate items with single commas, e.g. 20,40")
    return items
