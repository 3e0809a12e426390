"""Calibration-domain specialisation: configurations alike but for their calibration source, the
perplexity of each on every source the study measures (the diagonal, calibrated and measured on
one source, should win), and how many kept neurons each pair shares per layer.

Light: the views, the report and the TUI draw from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

from store import bitset
from workbench.studies.request import is_perplexity
from workbench.tabular import Column, Table
from workbench.texts import source_name

if TYPE_CHECKING:
    from workbench.studies.view import StudyRow

LEVELS = " ▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class LayerOverlap:
    layer: int
    shared: int
    kept_a: int
    kept_b: int
    width: int

    @property
    def share(self) -> float:
        """Shared kept neurons as a share of the smaller selection."""
        fewer = min(self.kept_a, self.kept_b)
        return self.shared / fewer if fewer else 0.0

    @property
    def chance(self) -> float:
        """The share two random selections of these sizes would share on average."""
        return max(self.kept_a, self.kept_b) / self.width if self.width else 0.0


@dataclass(frozen=True)
class PairOverlap:
    a: StudyRow
    b: StudyRow
    layers: tuple[LayerOverlap, ...]

    @property
    def mean(self) -> float:
        return sum(x.share for x in self.layers) / len(self.layers)

    @property
    def chance(self) -> float:
        return sum(x.chance for x in self.layers) / len(self.layers)

    @property
    def lowest(self) -> LayerOverlap:
        return min(self.layers, key=lambda x: (x.share, x.layer))

    @property
    def highest(self) -> LayerOverlap:
        return max(self.layers, key=lambda x: (x.share, -x.layer))


@dataclass(frozen=True)
class SpecialisationGroup:
    """Configurations that differ only in their calibration source, with the perplexity of each on
    every source the study measures: the diagonal (calibrated and measured on one source) should win."""

    title: str  # e.g. "hybrid 40% uniform"
    rows: tuple[StudyRow, ...]  # one per calibration source
    measured: tuple[tuple[str, str], ...]  # (source name, its perplexity column key), per source measured
    overlaps: tuple[PairOverlap, ...]

    def value(self, row: StudyRow, column: str) -> float | None:
        figure = row.figures.get(column)
        return figure.value if figure is not None else None

    def diagonal_wins(self, source: str) -> bool | None:
        """Whether the configuration calibrated on `source` has the lowest perplexity on it (None
        until every configuration of the group has that figure)."""
        column = dict(self.measured)[source]
        values = {r.config["calibration"]: self.value(r, column) for r in self.rows}  # type: ignore[index]
        if any(v is None for v in values.values()) or source not in values:
            return None
        return all(values[source] < v for s, v in values.items() if s != source)  # type: ignore[operator]


def specialisation_groups(rows_: Sequence[StudyRow], tasks: Sequence[str]) -> list[SpecialisationGroup]:
    """Groups of configurations alike but for their calibration source (two sources or more)."""
    groups: dict[str, list[StudyRow]] = {}
    for r in rows_:
        if r.config and r.config.get("calibration"):
            rest = {k: v for k, v in r.config.items() if k != "calibration"}
            groups.setdefault(str(sorted(rest.items())), []).append(r)
    ppl = {source_name(t.removeprefix("ppl:")): f"{t} perplexity" for t in tasks if is_perplexity(t)}
    found = []
    for rows in groups.values():
        sources = [r.config["calibration"] for r in rows]  # type: ignore[index]
        if len(set(sources)) < 2:
            continue
        first = rows[0]
        title = f"{first.scorer} {first.target} {first.allocation}"
        measured = tuple((s, ppl[s]) for s in sources if s in ppl)
        pairs = tuple(p for a, b in combinations(rows, 2) if (p := pair_overlap(a, b)) is not None)
        found.append(SpecialisationGroup(title, tuple(rows), measured, pairs))
    return found



def pair_overlap(a: StudyRow, b: StudyRow) -> PairOverlap | None:
    if a.run is None or b.run is None:
        return None
    by_layer = {r.layer: r for r in b.run.retention}
    layers = []
    for ra in a.run.retention:
        rb = by_layer.get(ra.layer)
        if rb is not None:
            shared = bitset.overlap(ra.kept_indices, rb.kept_indices)
            layers.append(LayerOverlap(ra.layer, shared, ra.kept_width, rb.kept_width, ra.original_width))
    return PairOverlap(a, b, tuple(layers)) if layers else None


def sparkline(shares: Sequence[float]) -> str:
    """One character per layer, from ▁ (nothing shared) to █ (all)."""
    return "".join(LEVELS[max(1, round(min(1.0, max(0.0, v)) * 8))] for v in shares)


def perplexity_table(groups: Sequence[SpecialisationGroup], markdown: bool = False) -> Table:
    """Each configuration's perplexity on every source measured, its own source's marked; and
    whether it is the lowest of its group there (the diagonal wins)."""
    sources: list[tuple[str, str]] = []
    for g in groups:
        sources += [m for m in g.measured if m not in sources]
    columns = [Column("configuration"), Column("calibration", "calibrated on"),
               *(Column(key, key.removesuffix(" perplexity"), numeric=True) for _, key in sources),
               Column("own_lowest", "lowest on its own source")]  # fmt: skip
    body = []
    for g in groups:
        for row in g.rows:
            own = row.config["calibration"]  # type: ignore[index]
            cells = []
            for source, key in sources:
                value = g.value(row, key) if (source, key) in g.measured else None
                text = "" if value is None else f"{value:.2f}"
                if text and source == own:
                    text = f"**{text}**" if markdown else f"{text} (own)"
                cells.append(text)
            wins = g.diagonal_wins(own) if own in dict(g.measured) else None
            body.append([g.title, row.calibration, *cells, "" if wins is None else ("yes" if wins else "no")])
    return Table("specialisation: perplexity by calibration source", columns, body)


def overlap_table(groups: Sequence[SpecialisationGroup]) -> Table:
    """For each pair in a group: the share of kept neurons they share per layer (of the smaller
    selection), summarised, against what two random selections of those sizes would share."""
    columns = [Column("configuration"), Column("pair"), Column("layers", numeric=True),
               Column("mean", "mean shared", numeric=True), Column("chance", "chance", numeric=True),
               Column("lowest", "lowest (layer)", numeric=True), Column("highest", "highest (layer)", numeric=True),
               Column("per_layer", "per layer, first to last")]  # fmt: skip
    body = []
    for g in groups:
        for p in g.overlaps:
            body.append([
                g.title, f"{p.a.calibration} vs {p.b.calibration}", len(p.layers), f"{100 * p.mean:.1f}%",
                f"{100 * p.chance:.1f}%", f"{100 * p.lowest.share:.1f}% (L{p.lowest.layer})",
                f"{100 * p.highest.share:.1f}% (L{p.highest.layer})", sparkline([x.share for x in p.layers]),
            ])  # fmt: skip
    return Table("specialisation: kept neurons shared per layer", columns, body)

