"""A study as one Markdown document for a paper's appendix: the settings and the command, the
versions that measured it, how each figure was measured, the trade-off and specialisation tables,
and the findings the figures support (workbench.studies.findings).

Light: versions come from what the runs and evaluations recorded, not from this process.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import version

from workbench.studies.findings import findings
from workbench.studies.specialisation import overlap_table, perplexity_table
from workbench.studies.view import StudyView
from workbench.tabular import Table, count

HELD_OUT = {  # what perplexity on a built-in source reads (workbench.texts)
    "wikitext2": "the WikiText-2 test split (calibration reads the validation split)",
    "sms": "the held-out fifth of the SMS Spam Collection (every fifth message; calibration reads the other four)",
}
TOPICS = {
    "targets": "Configurations at each target",
    "base": "Against the base model",
    "scorers": "Scorers across targets",
    "series": "As the share removed grows",
    "specialisation": "Calibration-domain specialisation",
    "recovery": "Recovery: what repair and healing bought and cost",
    "caveats": "Caveats",
}


def report(view: StudyView) -> str:
    parts = [f"# Study {view.study.name}\n", _settings(view), _versions(view), _measured(view),
             _tradeoff(view), _specialisation(view), _findings(view)]  # fmt: skip
    return "\n".join(parts)


def _settings(view: StudyView) -> str:
    r, base = view.request, view.base.model
    about = (f"{base.name} ({count(base.parameters)} parameters, {base.num_layers} layers, MLP expansion "
             f"{base.expansion:.3f})" if base else view.study.base_model)  # fmt: skip
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Settings\n",
        f"Base model: {about}. Report written {written} by workbench {version('width-pruning-workbench')}.\n",
        "The figures come from this command (re-running it reuses every finished run and evaluation):\n",
        f"```sh\n{r.command()}\n```\n",
        f"- configurations: {len(view.rows)} ({', '.join(row.label for row in view.rows)})",
        f"- pruning: scorers {', '.join(r.scorers)}; targets "
        f"{', '.join([f'{p:g}%' for p in r.percents] + [f'expansion {x:g}' for x in r.expansions])}; allocation "
        f"{', '.join(r.allocations)}; divisor {r.divisor}; layers {r.layers}",
        f"- calibration (data-driven scorers): {', '.join(r.calibrations)}; {r.samples} sequences of {r.seq_len} "
        "tokens each, evenly spaced over the source's calibration part",
        *([f"- recovery: repair {', '.join(r.repairs) or 'none'}; heals of every cut on "
           f"{', '.join(map(str, r.heal_tokens)) or 'no'} tokens of {r.heal_data} (its calibration part), distilled "
           "from the base with `workbench heal`'s defaults"] if r.repairs or r.heal_tokens else []),
        f"- evaluation: {', '.join(r.tasks)}; limit {r.limit:g} documents per lm-eval task" if r.limit is not None
        else f"- evaluation: {', '.join(r.tasks)}; every document",
        f"- device {r.device}, dtype {r.dtype} (as run: see below)\n",
    ]  # fmt: skip
    return "\n".join(lines)


def _versions(view: StudyView) -> str:
    found: dict[str, set[str]] = {}
    for row in view.rows:
        if row.run is not None:
            for name, v in row.run.versions.items():
                found.setdefault(name, set()).add(v)
    for row in view.all_rows:
        for figure in row.figures.values():
            name = "lm-eval" if figure.harness == "lm-eval" else "workbench"
            found.setdefault(name, set()).add(figure.harness_version)
    lines = ["## Versions\n", "As recorded by the runs and evaluations behind the figures:\n",
             "| component | version |", "|---|---|"]  # fmt: skip
    for name in ("torch", "transformers", "lm-eval", "workbench"):
        if name in found:
            lines.append(f"| {name} | {', '.join(sorted(found[name]))} |")
    return "\n".join(lines) + "\n"


def _measured(view: StudyView) -> str:
    lines = ["## How each figure was measured\n"]
    for column in view.columns:
        figures = [f for r in view.all_rows if (f := r.figures.get(column.key))]
        devices = sorted({f"{f.device} {f.dtype}" for f in figures})
        if column.noisy:
            shots = sorted({str(f.fewshot) for f in figures})
            limits = sorted({f"{f.limit:g}" if f.limit is not None else "none" for f in figures})
            docs = sorted({str(f.samples) for f in figures if f.samples is not None})
            chat = sorted({str(f.settings.get("chat_template")) for f in figures})
            data = sorted({str(f.settings.get("data")) for f in figures})
            lines.append(f"- `{column.task}` metric `{column.metric}` (lm-eval, value ± its standard error): "
                         f"{'/'.join(shots)}-shot, limit {'/'.join(limits)}, {'/'.join(docs) or '?'} documents, "
                         f"chat template {'/'.join(chat)}, {'/'.join(data)} data; {', '.join(devices)}")  # fmt: skip
        else:
            p = figures[0].settings if figures else {}
            held = HELD_OUT.get(str(p.get("source")), p.get("source"))
            lines.append(f"- `{column.task}` metric `{column.metric}`: the first {p.get('windows')} non-overlapping "
                         f"windows of {p.get('window_len')} tokens of {held}, each scored alone, exp of the mean "
                         f"token negative log-likelihood ({p.get('tokens_scored')} tokens scored); "
                         f"{', '.join(devices)}")  # fmt: skip
    lines.append("- parameters: distinct tensors of the saved model, tied weights once; removed: the share of the "
                 "base model's parameters; expansion: mean MLP width over hidden size")  # fmt: skip
    lines += ["", "Pruning runs:", "", "| configuration | run | device | dtype | calibration | tokens hash |",
              "|---|---:|---|---|---|---|"]  # fmt: skip
    for row in view.rows:
        run = row.run
        if run is None:
            lines.append(f"| {row.label} | | | | | ({row.status}) |")
            continue
        calibration = (f"{run.calibration_source}, {run.calibration_samples} x {run.calibration_seq_len}"
                       if run.calibration_source else "none (static scorer)")  # fmt: skip
        digest = f"`{run.calibration_hash[:16]}`" if run.calibration_hash else ""
        lines.append(f"| {row.label} | {run.id} | {run.device} | {run.dtype} | {calibration} | {digest} |")
    return "\n".join(lines) + "\n"


def _tradeoff(view: StudyView) -> str:
    table = _untitled(view.table("markdown"))
    notes = "\n".join(f"- {n.replace('*', 'bold:', 1) if n.startswith('*') else n}" for n in view.notes())
    return f"## Trade-off\n\n{table}\n{notes}\n"


def _specialisation(view: StudyView) -> str:
    groups = view.specialisation()
    if not groups:
        return "## Specialisation\n\nNo configurations differ only in their calibration source.\n"
    text = _untitled(perplexity_table(groups, markdown=True))
    shared = _untitled(overlap_table(groups))
    return (f"## Specialisation\n\nPerplexity of configurations that differ only in their calibration source, on "
            f"each source measured (bold: the source it was calibrated on).\n\n{text}\n"
            f"Kept neurons shared per layer, as a share of the smaller selection.\n\n{shared}")  # fmt: skip


def _findings(view: StudyView) -> str:
    lines = ["## Findings\n", "Stated by fixed rules from the figures above (lm-eval gaps judged by "
             "|delta| > 2 sqrt(se1^2 + se2^2)); nothing beyond them.\n"]  # fmt: skip
    found = findings(view)
    for topic, title in TOPICS.items():
        mine = [f.text for f in found if f.topic == topic]
        if mine:
            lines += [f"### {title}\n", *(f"- {t}" for t in mine), ""]
    if not found:
        lines.append("No figures to compare yet.")
    return "\n".join(lines)


def _untitled(table: Table) -> str:
    """A table under a heading of the report's own: its title would repeat it."""
    return replace(table, title="").to_markdown()

