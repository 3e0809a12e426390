"""`workbench sweep`: prune a model with every combination of scorers, targets, allocations and
calibration sources, evaluate every result (and the base), all grouped as a named study."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import TYPE_CHECKING

from workbench.cli.foreground import add_detach_option
from workbench.cli.lists import comma_list
from workbench.errors import UserError
from workbench.spec import ALLOCATIONS, DEVICES, DTYPES, SCORERS, PruneSpec
from workbench.studies.request import SweepRequest

if TYPE_CHECKING:
    from store.db import Store
    from workbench.studies.sweep import Queued, SweepPlan

WATCH_EVERY_S = 0.5

EPILOG = """Every combination of scorer, target (each --percent and --expansion) and allocation is pruned once;
a data-driven scorer once more for each calibration source, a static scorer once whatever the
sources. Each pruned model, and the base, is evaluated on --tasks with the same settings. The jobs
are grouped as a study (--name, else a name made from the settings) and run one at a time by a
background worker, each evaluation once the pruning that makes its model is done; an evaluation
whose pruning failed fails too, saying so.

Running a sweep again reuses what is done: a finished run of the same base with the same
configuration (scorer, target, divisor, allocation, layers, calibration source, samples, sequence
length and token hash, dtype) is not pruned again, a model that has a task evaluated with the same
settings (limit, few-shot, dtype) is not evaluated on it again, and the study's queued or running
jobs are not queued twice. A new target or source adds only its own jobs.

In the foreground the sweep shows the study's progress until its jobs end, then its trade-off table;
Ctrl-C stops watching and leaves the jobs running (`workbench jobs cancel ID` stops one).
`workbench study show NAME` shows the table at any time; `workbench study report NAME` writes the report.
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "sweep",
        parents=[common],
        help="prune and evaluate every combination of scorers, targets and calibration sources as a study",
        description="Queue a pruning for every configuration and an evaluation of every model, grouped as a study.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="stored model name or id, smollm2, a model folder, a .gguf file")
    p.add_argument("--scorers", required=True, metavar="S1,S2", help=f"neuron scorers: {', '.join(SCORERS)}")
    p.add_argument("--percent", metavar="P1,P2", help="remove P%% of each pruned layer's neurons, e.g. 20,40")
    p.add_argument("--expansion", metavar="X1,X2", help="target intermediate/hidden ratios, e.g. 2.4,2")
    p.add_argument("--allocation", default="uniform", metavar="A1,A2", help=f"{' and/or '.join(ALLOCATIONS)}")
    p.add_argument("--calibration", default="wikitext2", metavar="SRC1,SRC2",
                   help="calibration sources of the data-driven scorers (default wikitext2)")
    p.add_argument("--divisor", type=int, default=1, metavar="D", help="round kept widths down to a multiple of D")
    p.add_argument("--layers", default="all", metavar="SPEC", help="layers to prune, e.g. 0-9,20 (default: all)")
    p.add_argument("--samples", type=int, default=PruneSpec.samples, metavar="N", help="calibration sequences")
    p.add_argument("--seq-len", type=int, default=PruneSpec.seq_len, metavar="L", help="tokens per sequence")
    p.add_argument("--tasks", required=True, metavar="T1,T2", help="evaluation tasks, as `workbench eval` takes them")
    p.add_argument("--limit", type=float, metavar="N", help="documents per lm-eval task")
    p.add_argument("--fewshot", type=int, metavar="K", help="few-shot examples (default: each task's own)")
    p.add_argument("--name", help="the study's name (default: made from the settings)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--dtype", choices=DTYPES, default="auto")
    p.add_argument("--repair", metavar="MODE1,MODE2", help="also a repaired cut of each: oneshot and/or sequential")
    p.add_argument("--heal-tokens", metavar="N1,N2", help="also a healed model of every cut per token count")
    p.add_argument("--heal-data", default=SweepRequest.heal_data, metavar="SRC",
                   help="text the heals distil on (default %(default)s; its calibration part)")
    p.add_argument("--dry-run", action="store_true", help="check and say what would be queued; queue nothing")
    p.add_argument("--json", action="store_true", help="print what was queued as JSON (the table as JSON at the end)")
    add_detach_option(p)
    p.set_defaults(func=run)


def request_from(args: argparse.Namespace) -> SweepRequest:
    return SweepRequest(
        model=args.model,
        scorers=comma_list(args.scorers, "--scorers"),
        tasks=comma_list(args.tasks, "--tasks"),
        percents=_numbers(args.percent, "--percent"),
        expansions=_numbers(args.expansion, "--expansion"),
        allocations=comma_list(args.allocation, "--allocation"),
        calibrations=comma_list(args.calibration, "--calibration"),
        divisor=args.divisor,
        samples=args.samples,
        seq_len=args.seq_len,
        layers=args.layers,
        limit=args.limit,
        fewshot=args.fewshot,
        device=args.device,
        dtype=args.dtype,
        name=args.name,
        repairs=comma_list(args.repair, "--repair"),
        heal_tokens=_counts(args.heal_tokens),
        heal_data=args.heal_data,
    ).validate()


def _counts(text: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in comma_list(text, "--heal-tokens"))
    except ValueError:
        raise UserError(f"--heal-tokens takes whole numbers separated by commas, e.g. 65536; got {text!r}") from None


def _numbers(text: str | None, flag: str) -> tuple[float, ...]:
    items = comma_list(text, flag)
    try:
        numbers = tuple(float(t) for t in items)
    except ValueError:
        raise UserError(f"{flag} takes numbers separated by commas, e.g. 20,40; got {text!r}") from None
    if not all(math.isfinite(n) for n in numbers):
        raise UserError(f"{flag} takes finite numbers, got {text!r}")
    return numbers


def run(args: argparse.Namespace) -> int:
    request = request_from(args)
    from workbench.cli.common import open_store, print_json
    from workbench.jobs import ensure_worker
    from workbench.studies.sweep import plan, queue
    from workbench.texts import data_dir

    store = open_store(args, create=not args.dry_run)  # a dry run writes nothing, not even a new store
    data = data_dir(getattr(args, "data_dir", None))
    planned = plan(store, request, data)  # every check: bad input fails here, with nothing written
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    for line in describe(planned):
        say(line)
    if args.dry_run:
        return 0
    queued = queue(store, planned)
    if queued.watched:
        ensure_worker(store)
    if args.json and (args.detach or not queued.watched):
        print_json({"study": queued.name, "new_jobs": list(queued.new_jobs), "waiting_for": list(queued.live_jobs)})
    if args.detach:
        if not args.json:
            print(f"`workbench study show {queued.name}` shows where it stands")
        return 0
    if queued.watched:
        try:
            watch(store, queued)
        except KeyboardInterrupt:
            print(f"\nstopped watching: the jobs go on (`workbench study show {queued.name}`; "
                  "`workbench jobs cancel ID` stops one)", file=sys.stderr)  # fmt: skip
            return 130
    return finish(store, queued, args.json)


def describe(p: SweepPlan) -> list[str]:
    counts = p.counts()
    base = p.base.name if p.base else f"{p.request.model} (imported first)"
    lines = [f"study {p.name}: {counts['configurations']} configurations of {base}"]
    new = [f"{counts[k]} {label}" for k, label in (("import", "import"), ("prune", "prunings"), ("heal", "heals"),
                                                              ("eval", "evaluations"))
           if counts[k]]  # fmt: skip
    lines.append(f"queues {', '.join(new)}" if new else "nothing to queue")
    reused = [f"{counts[k]} {k}" for k in ("runs reused", "prunings waited for", "heals reused") if counts[k]]
    done = sum(len(c.evaluated) for c in p.configurations) + len(p.base_evaluated)
    if done:
        reused.append(f"{done} model-task evaluations reused")
    if reused:
        lines.append("; ".join(reused))
    for c in p.configurations:
        for task in c.overlaps:
            lines.append(f"note: {c.spec.scorer} {c.config['calibration']} calibrates on the text {task} measures; "
                         "every view flags it")  # fmt: skip
    for h in p.healed:
        for task in h.overlaps:
            if task not in h.cut.overlaps:
                lines.append(f"note: heals on {h.config['heal_data']} read the text {task} measures; "
                             "every view flags it")
    return lines


def watch(store: Store, queued: Queued) -> None:
    """The study's progress until its jobs end: jobs done, and what runs now."""
    from store.jobs import jobs_by_id
    from workbench.cli.common import TerminalProgress
    from workbench.jobs import KINDS

    with TerminalProgress() as bar:
        while True:
            found = jobs_by_id(store, queued.watched)
            finished = [j for j in found.values() if j.finished]
            fraction = sum(1.0 if j.finished else j.progress for j in found.values()) / max(1, len(found))
            running = [j for j in found.values() if j.status == "running"]
            now = "; ".join(f"job {j.id} {KINDS[j.kind].summarize(j.request)}: {j.stage} {100 * j.progress:.0f}%"
                            for j in running)  # fmt: skip
            bar.emit("study", fraction, f"{len(finished)}/{len(found)} jobs ended" + (f" · {now}" if now else ""))
            if len(finished) == len(found):
                return
            time.sleep(WATCH_EVERY_S)


def finish(store: Store, queued: Queued, as_json: bool) -> int:
    """The table, and how the jobs ended: status 1 when one did not finish well."""
    from store.jobs import jobs_by_id
    from workbench.cli.common import print_json
    from workbench.cli.study import print_view
    from workbench.studies.view import gather

    view = gather(store, queued.name)
    if as_json:
        print_json(view.to_dict())
    else:
        print_view(view)
    failed = [j for j in jobs_by_id(store, queued.watched).values() if j.status != "done"]
    for job in failed:
        print(f"job {job.id} {job.status}: {job.error or job.message}", file=sys.stderr)
    return 1 if failed else 0
