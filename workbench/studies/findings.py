"""What a study's figures support, stated by explicit rules and nothing more.

Every finding quotes the figures it rests on. Rules:
- Per target and metric, the best configuration against the others. Perplexity has no standard
  error: the ordering is stated as measured. An lm-eval metric is compared with the noise rule of
  workbench.tradeoff (|delta| > 2 sqrt(se1^2 + se2^2)): gaps within it are "no clear difference".
- Per target and metric, the configurations against the base, by the same rule.
- Per pair of scorers and metric, each scorer's best configuration at every target: an ordering
  is stated only when it holds at every target (beyond noise, for lm-eval metrics), with two
  targets or more.
- Per series (scorer, allocation, source), whether perplexity rises with every step of the target.
- Per specialisation group, for each pair of sources S and T with ppl:S measured: whether
  calibrating on S instead of T lowers ppl:S, with both figures; and the kept-neuron overlap
  against chance.
- Per repaired or healed configuration, against the step before it (the plain cut; for a heal of
  a repaired cut, the repaired cut), every metric: what it bought (better; beyond noise for lm-eval
  metrics) and what it cost (worse), with both figures; changes within noise are said to be so.
  The rules above compare plain cuts only, so a recovered model never stands in for its scorer.
- Calibration or heal text that a perplexity figure also reads is named; the sample size of
  lm-eval figures is stated with the typical standard error.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations

from workbench import tradeoff
from workbench.studies.request import config_key, cut_config, target_text
from workbench.studies.view import Figure, MetricColumn, StudyRow, StudyView, figure_text
from workbench.studies.view import notes as notes_of


@dataclass(frozen=True)
class Finding:
    topic: str  # targets | base | scorers | series | specialisation | recovery | caveats
    text: str


def findings(view: StudyView) -> list[Finding]:
    found: list[Finding] = []
    cuts = replace(view, rows=tuple(r for r in view.rows if r.plain))
    targets = _targets(cuts.rows)
    for column in view.columns:
        if column.higher_is_better is None:
            continue
        for target, rows in targets.items():
            found += _at_target(target, rows, column)
            found += _against_base(target, rows, view.base, column)
    found += _scorers(cuts, targets)
    found += _series(cuts)
    found += _specialisation(cuts)
    found += _recovery(view)
    found += _caveats(view)
    return found


def _before(row: StudyRow, rows: dict[str, StudyRow]) -> StudyRow | None:
    """The step a recovered configuration improves on: a heal's cut (repaired or not), a repair's plain cut."""
    config = row.config or {}
    if "heal_tokens" in config:
        return rows.get(config_key(cut_config(config)))
    return rows.get(config_key({k: v for k, v in config.items() if k != "repair"}))


def _recovery(view: StudyView) -> list[Finding]:
    """What each repair and heal bought and cost against the step before it."""
    by_key = {r.key: r for r in view.rows}
    found = []
    for row in view.rows:
        before = _before(row, by_key) if not row.plain else None
        if before is None:
            continue
        bought, cost, level = [], [], []
        for column in view.columns:
            a, b = before.figures.get(column.key), row.figures.get(column.key)
            if a is None or b is None or column.higher_is_better is None or a.value == b.value:
                continue
            shown = f"{column.label} {figure_text(a, column)} -> {figure_text(b, column)}"
            if not column.noisy:
                shown += f" ({100 * (b.value - a.value) / abs(a.value):+.1f}%)" if a.value else ""
            elif not _beyond(a, b):
                level.append(shown)
                continue
            (bought if _better(column, b.value, a.value) else cost).append(shown)
        if not (bought or cost or level):
            continue
        heal_of_repair = "heal_tokens" in (row.config or {}) and not before.plain
        step = f"heal {row.config['heal_tokens']}" if heal_of_repair else row.step  # type: ignore[index]
        text = f"{row.label}: against {before.label}, {step} bought " + ("; ".join(bought) or "nothing")
        if cost:
            text += "; it cost " + "; ".join(cost)
        if level:
            text += "; within noise: " + "; ".join(level)
        found.append(Finding("recovery", text + "."))
    return found


def _targets(rows: Sequence[StudyRow]) -> dict[str, list[StudyRow]]:
    grouped: dict[str, list[StudyRow]] = {}
    for r in rows:
        grouped.setdefault(target_text(r.config), []).append(r)  # type: ignore[arg-type]
    return grouped


def _short(row: StudyRow) -> str:
    """A configuration's name within its target: scorer, allocation if not uniform, source."""
    name = row.scorer + ("" if row.allocation == "uniform" else f" {row.allocation}")
    return name + (f" ({row.calibration})" if row.config and row.config.get("calibration") else "")


def _beyond(a: Figure, b: Figure) -> bool | None:
    """The trade-off table's noise rule; None where a standard error is missing."""
    threshold = tradeoff.noise(a.stderr, b.stderr)
    return None if threshold is None else abs(a.value - b.value) > threshold


def _better(column: MetricColumn, a: float, b: float) -> bool:
    return a > b if column.higher_is_better else a < b


def _word(column: MetricColumn) -> str:
    return "highest" if column.higher_is_better else "lowest"


def _at_target(target: str, rows: list[StudyRow], column: MetricColumn) -> list[Finding]:
    have = [r for r in rows if column.key in r.figures]
    if len(have) < 2:
        return []
    have.sort(key=lambda r: r.figures[column.key].value, reverse=bool(column.higher_is_better))
    best, rest = have[0], have[1:]
    top = best.figures[column.key]
    shown = lambda r: f"{_short(r)} ({figure_text(r.figures[column.key], column)})"  # noqa: E731
    if top.value == rest[0].figures[column.key].value:
        tied = [r for r in have if r.figures[column.key].value == top.value]
        return [Finding("targets", f"At {target}, {' and '.join(shown(r) for r in tied)} tie on {column.label}.")]
    if not column.noisy or top.stderr is None:
        return [Finding("targets", f"At {target}, {shown(best)} has the {_word(column)} {column.label}; "
                                   f"next is {shown(rest[0])}.")]  # fmt: skip
    judged = [(r, _beyond(top, r.figures[column.key])) for r in rest]
    clear = [r for r, beyond in judged if beyond]
    close = [r for r, beyond in judged if not beyond]
    if not clear:
        low, high = have[-1].figures[column.key].value, top.value
        spread = _range(low, high, column)
        return [Finding("targets", f"At {target}, {column.label} shows no clear difference between the "
                                   f"{len(have)} configurations ({spread}: every gap within noise).")]
    text = f"At {target}, {shown(best)} has the {_word(column)} {column.label}"
    if close:
        text += f"; {', '.join(shown(r) for r in close)} {'is' if len(close) == 1 else 'are'} within noise of it"
    below = "below" if column.higher_is_better else "above"
    text += f"; {', '.join(shown(r) for r in clear)} {'is' if len(clear) == 1 else 'are'} clearly {below}."
    return [Finding("targets", text)]


def _range(low: float, high: float, column: MetricColumn) -> str:
    a, b = sorted((low, high))
    return f"{a:.3f} to {b:.3f}" if column.noisy else f"{a:.2f} to {b:.2f}"


def _against_base(target: str, rows: list[StudyRow], base: StudyRow, column: MetricColumn) -> list[Finding]:
    reference = base.figures.get(column.key)
    have = [r for r in rows if column.key in r.figures]
    if reference is None or not have:
        return []
    ref = figure_text(reference, column)
    if not column.noisy or reference.stderr is None:
        worse = [r for r in have if _better(column, reference.value, r.figures[column.key].value)]
        rest = [r for r in have if r not in worse]
        verb = "falls" if column.higher_is_better else "rises"
        listed = lambda rows: ", ".join(f"{_short(r)} ({_value(r, column)})" for r in rows)  # noqa: E731
        if not worse:
            return [Finding("base", f"At {target}, no configuration does worse than the base ({ref}) on "
                                    f"{column.label}: {listed(rest)}.")]  # fmt: skip
        text = f"At {target}, {column.label} {verb} from {ref} (base) for {listed(worse)}"
        if rest:
            side = "below" if column.higher_is_better is False else "above"
            text += f"; {listed(rest)} {'is' if len(rest) == 1 else 'are'} at or {side} the base"
        return [Finding("base", text + ".")]
    judged = [(r, _beyond(r.figures[column.key], reference)) for r in have]
    clear = [r for r, beyond in judged if beyond]
    if not clear:
        return [Finding("base", f"At {target}, every configuration is within noise of the base on {column.label} "
                                f"({ref}).")]  # fmt: skip
    worse = [r for r in clear if _better(column, reference.value, r.figures[column.key].value)]
    better = [r for r in clear if r not in worse]
    parts = []
    if worse:
        verb = "scores" if len(worse) == 1 else "score"
        parts.append(f"{len(worse)} of {len(have)} configurations {verb} clearly worse than the base ({ref}) on "
                     f"{column.label}: " + ", ".join(f"{_short(r)} {figure_text(r.figures[column.key], column)}"
                                                     for r in worse))  # fmt: skip
    if better:
        parts.append(f"{', '.join(_short(r) for r in better)} clearly better than the base ({ref})")
    within = len(have) - len(clear)
    tail = f"; {within} within noise of it" if within else ""
    return [Finding("base", f"At {target}, " + "; ".join(parts) + tail + ".")]


def _value(row: StudyRow, column: MetricColumn) -> str:
    figure = row.figures[column.key]
    return f"{figure.value:.3f}" if column.noisy else f"{figure.value:.2f}"


def _scorers(view: StudyView, targets: dict[str, list[StudyRow]]) -> list[Finding]:
    scorers = list(dict.fromkeys(r.scorer for r in view.rows))
    found = []
    for column in view.columns:
        if column.higher_is_better is None:
            continue
        for a, b in combinations(scorers, 2):
            pairs = []
            for target, rows in targets.items():
                best_a, best_b = _best(rows, a, column), _best(rows, b, column)
                if best_a is not None and best_b is not None:
                    pairs.append((target, best_a, best_b))
            if len(pairs) < 2:
                continue
            for winner, loser, flip in ((a, b, False), (b, a, True)):
                ok = True
                for _, ra, rb in pairs:
                    x, y = (rb, ra) if flip else (ra, rb)
                    fx, fy = x.figures[column.key], y.figures[column.key]
                    if not _better(column, fx.value, fy.value) or (column.noisy and _beyond(fx, fy) is not True):
                        ok = False
                if ok:
                    quoted = "; ".join(
                        f"{t}: {_value(rb if flip else ra, column)} vs {_value(ra if flip else rb, column)}"
                        for t, ra, rb in pairs
                    )
                    how = "beyond noise " if column.noisy else ""
                    more = "higher" if column.higher_is_better else "lower"
                    found.append(Finding("scorers", f"{winner} scores {more} than {loser} on {column.label} {how}at "
                                                    f"every target ({quoted}), comparing each scorer's best "
                                                    "configuration."))  # fmt: skip
    return found


def _best(rows: list[StudyRow], scorer: str, column: MetricColumn) -> StudyRow | None:
    have = [r for r in rows if r.scorer == scorer and column.key in r.figures]
    if not have:
        return None
    pick = max if column.higher_is_better else min
    return pick(have, key=lambda r: r.figures[column.key].value)


def _series(view: StudyView) -> list[Finding]:
    """Perplexity against the target within each series (the same configuration but its target)."""
    found = []
    for column in view.columns:
        if column.noisy or column.higher_is_better is not False:
            continue
        series: dict[str, list[StudyRow]] = {}
        for r in view.rows:
            if column.key in r.figures and r.config and r.config["target_kind"] == "percent":
                series.setdefault(_short(r), []).append(r)
        start = [view.base.figures[column.key].value] if column.key in view.base.figures else []
        since = " from the base" if start else ""
        steady, broken = [], []
        for name, rows in series.items():
            rows.sort(key=lambda r: r.config["target_value"])  # type: ignore[index]
            values = start + [r.figures[column.key].value for r in rows]
            if len(values) < 2:
                continue
            (steady if all(x < y for x, y in zip(values, values[1:], strict=False)) else broken).append(name)
        if steady and not broken:
            found.append(Finding("series", f"{column.label} rises with every step of the share removed{since} in "
                                           f"all {len(steady)} series ({', '.join(steady)})."))  # fmt: skip
        elif broken:
            found.append(Finding("series", f"{column.label} does not rise with every step of the share "
                                           f"removed{since} for {', '.join(broken)}."))  # fmt: skip
    return found


def _specialisation(view: StudyView) -> list[Finding]:
    found = []
    wins, cells = 0, 0
    for group in view.specialisation():
        by_source = {r.config["calibration"]: r for r in group.rows}  # type: ignore[index]
        for source, column in group.measured:
            mine = by_source[source]
            mine_value = group.value(mine, column)
            task = column.removesuffix(" perplexity")
            verdict = group.diagonal_wins(source)
            if verdict is not None:
                cells += 1
                wins += verdict
            for other_source, other in by_source.items():
                other_value = group.value(other, column)
                if other_source == source or mine_value is None or other_value is None:
                    continue
                verb = "lowers" if mine_value < other_value else "does not lower"
                found.append(Finding(
                    "specialisation",
                    f"{group.title}: calibrating on {mine.calibration} instead of {other.calibration} {verb} {task} "
                    f"perplexity ({other_value:.2f} with {other.calibration}, {mine_value:.2f} with "
                    f"{mine.calibration}).",
                ))  # fmt: skip
        for pair in group.overlaps:
            found.append(Finding(
                "specialisation",
                f"{group.title}: the {pair.a.calibration} and {pair.b.calibration} calibrations keep "
                f"{100 * pair.mean:.1f}% of the same neurons on average over {len(pair.layers)} layers (lowest "
                f"{100 * pair.lowest.share:.1f}% at layer {pair.lowest.layer}, highest "
                f"{100 * pair.highest.share:.1f}% at layer {pair.highest.layer}); random selections of those sizes "
                f"would share {100 * pair.chance:.1f}%.",
            ))  # fmt: skip
    if cells:
        found.append(Finding("specialisation", f"The diagonal wins in {wins} of {cells} cases: the configuration "
                                               "calibrated on a source has the lowest perplexity on it within its "
                                               "group."))  # fmt: skip
    return found


def _caveats(view: StudyView) -> list[Finding]:
    found = []
    for r in view.rows:
        for task in r.overlaps:
            reads = "heals on" if "overlap: healed" in notes_of(r) else "calibrates on"
            found.append(Finding("caveats", f"{r.label} {reads} the text {task} measures: its {task} figure is "
                                            "not a held-out one."))  # fmt: skip
    noisy = [f for r in view.all_rows for c in view.columns if c.noisy and (f := r.figures.get(c.key))
             and f.stderr is not None]  # fmt: skip
    if noisy:
        samples = sorted({f.samples for f in noisy if f.samples is not None})
        typical = statistics.median(f.stderr for f in noisy)  # type: ignore[misc]
        gap = tradeoff.noise(typical, typical)
        n = f"{samples[0]}" if len(samples) == 1 else f"{samples[0]} to {samples[-1]}" if samples else "an unknown"
        found.append(Finding("caveats", f"lm-eval figures rest on {n} documents per task; their standard errors are "
                                        f"about {typical:.3f} (median), so gaps under about {gap:.3f} cannot be told "
                                        "from noise."))  # fmt: skip
    unfinished = [r for r in view.all_rows if r.status != "done"]
    if unfinished:
        found.append(Finding("caveats", f"{len(unfinished)} of {len(view.all_rows)} rows are not finished "
                                        f"({', '.join(f'{r.label}: {r.status}' for r in unfinished)}); the findings "
                                        "cover the figures there are."))  # fmt: skip
    return found
