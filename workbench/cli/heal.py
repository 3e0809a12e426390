"""`workbench heal`: distil a pruned model's parent back into it, and `workbench heals`: the record."""

from __future__ import annotations

import argparse

from store.queries import loss_name
from workbench.cli.foreground import add_detach_option
from workbench.spec import DEVICES, DTYPES, HEAL_TRAIN, HealSpec

EPILOG = """what trains (--train):
{train}

The loss is the KL divergence between the teacher's and the model's next-token distributions at
--temperature (with --ce-weight W, (1 - W) times it plus W times the cross-entropy on the text's own
next tokens), over consecutive --seq-len windows of the source's calibration part (wikitext2:
validation; sms: four fifths of the messages; a .txt/.jsonl file or hf:DATASET: all of it, which
perplexity on the same source then overlaps, and studies flag). --tokens beyond what the source
holds passes over it again. AdamW, linear warmup over --warmup of the steps, cosine decay to zero.
A checkpoint is kept every --checkpoint-every seconds; `workbench jobs retry ID` after a crash or
a kill resumes from the last one. The healed model is a new stored model whose parent is MODEL,
saved in MODEL's dtype.
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    train = "\n".join(f"  {k:<7} {v}" for k, v in HEAL_TRAIN.items())
    p = subparsers.add_parser(
        "heal",
        parents=[common],
        help="distil a teacher (default: the model's parent) into a pruned model",
        description="Heal a pruned model by knowledge distillation from its parent (or --teacher) and store "
        "the result as a new model.",
        epilog=EPILOG.format(train=train),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="stored model name or id, or job:N")
    p.add_argument("--teacher", metavar="MODEL", help="the stored model to learn from (default: MODEL's parent)")
    p.add_argument("--data", required=True, metavar="SRC", help="text source: wikitext2, sms, a .txt/.jsonl, hf:...")
    p.add_argument("--tokens", required=True, type=int, metavar="N", help="tokens to train on")
    p.add_argument("--seq-len", type=int, default=HealSpec.seq_len, metavar="L", help="tokens per window")
    p.add_argument("--batch-size", type=int, default=HealSpec.batch_size, metavar="B", help="windows per step")
    p.add_argument("--lr", type=float, default=HealSpec.lr, help="peak learning rate (default %(default)g)")
    p.add_argument("--temperature", type=float, default=HealSpec.temperature, metavar="T")
    p.add_argument("--ce-weight", type=float, default=HealSpec.ce_weight, metavar="W",
                   help="share of the loss that is cross-entropy on the text's next tokens (default %(default)g)")
    p.add_argument("--train", default=HealSpec.train, metavar="all|mlp|lora:RANK", help="what trains (see below)")
    p.add_argument("--warmup", type=float, default=HealSpec.warmup, metavar="F", help="warmup share of the steps")
    p.add_argument("--checkpoint-every", type=float, default=HealSpec.checkpoint_every_s, metavar="S",
                   help="seconds between checkpoints (default %(default)g)")
    p.add_argument("--seed", type=int, default=HealSpec.seed)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="compute dtype (the result keeps MODEL's)")
    p.add_argument("--name", help="name of the healed model (default: MODEL-healed)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (with --detach: the job id)")
    add_detach_option(p)
    p.set_defaults(func=run)

    listing = subparsers.add_parser("heals", parents=[common], help="list heals, or show one with its loss curve")
    listing.add_argument("id", nargs="?", type=int, help="a heal's id: show it")
    listing.add_argument("--model", metavar="MODEL", help="only heals of this model")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_listing)


def spec_from(args: argparse.Namespace) -> HealSpec:
    return HealSpec(
        model=args.model, data=args.data, tokens=args.tokens, teacher=args.teacher, seq_len=args.seq_len,
        batch_size=args.batch_size, lr=args.lr, temperature=args.temperature, ce_weight=args.ce_weight,
        train=args.train, warmup=args.warmup,
        device=args.device, dtype=args.dtype, name=args.name, checkpoint_every_s=args.checkpoint_every,
        seed=args.seed,
    ).validate()  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Runs as a job (see workbench.cli.foreground); the report is the job's result."""
    spec = spec_from(args)
    from workbench import heal_request
    from workbench.cli.common import open_store, print_json
    from workbench.cli.foreground import run_as_job
    from workbench.texts import data_dir

    store = open_store(args)
    data = data_dir(getattr(args, "data_dir", None))
    # Bad input fails here, before a job row exists; the engine is imported only for what the light
    # check cannot tell (tokenizers whose files differ, a GPU's free memory): a job process may have it.
    if not heal_request.check_request(spec, store, data):
        from workbench.heal import check_request

        check_request(spec, store, data)
    job = run_as_job(args, store, "heal", spec.to_dict(), data=data, bar=not args.json)
    if job is None:  # --detach
        return 0
    if args.json:
        print_json(job.result)
        return 0
    r = job.result
    resumed = f", resumed at step {r['resumed_from_step']}" if r.get("resumed_from_step") else ""
    print(f"heal {r['heal_id']}: {r['student']} -> {r['model_name']} (model {r['model_id']}), teacher {r['teacher']}")
    loss = loss_name(r["settings"]["ce_weight"])
    print(f"{r['tokens_seen']:,} tokens of {r['data']} ({r['passes']:.2f} passes), {r['steps']} steps{resumed}; "
          f"{loss} {r['first_loss']:.4f} -> {r['last_loss']:.4f}; {r['seconds']:.0f}s on {r['device']} {r['dtype']}, "
          f"peak memory {r['peak_memory_bytes'] / 2**20:.0f} MiB")
    return 0


def run_listing(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from store import queries
    from workbench.cli.common import open_store, print_json

    store = open_store(args)
    if args.id is not None:
        heal = queries.get_heal(store, args.id)
        if args.json:
            print_json(asdict(heal))
        else:
            print_heal(heal)
        return 0
    model = queries.get_model(store, args.model).id if args.model else None
    heals = queries.list_heals(store, model=model)
    if args.json:
        print_json([asdict(h) for h in heals])
        return 0
    from workbench.tabular import Column, Table, fixed

    rows = [asdict(h) | {"first": h.loss_curve[0][2] if h.loss_curve else None,
                         "last": h.loss_curve[-1][2] if h.loss_curve else None, "loss": h.loss_name} for h in heals]
    Table.of("heals", [
        Column("id", numeric=True), Column("model_name", "model"), Column("teacher_name", "teacher"),
        Column("result_name", "healed"), Column("data_source", "data"), Column("tokens_seen", "tokens", numeric=True),
        Column("train"), Column("lr", numeric=True), Column("loss"),
        Column("first", "", fixed(4), numeric=True), Column("last", "", fixed(4), numeric=True),
        Column("seconds", "s", fixed(0), numeric=True),
    ], rows).render()  # fmt: skip
    return 0


def print_heal(heal) -> None:
    """A heal's record: lineage, settings, tokens, the loss curve and what it cost."""
    print(f"heal {heal.id}: {heal.model_name} -> {heal.result_name or '(model removed)'}, teacher {heal.teacher_name}")
    print(f"data {heal.data_source} (sha256 {heal.data_hash[:12]}): {heal.tokens_seen:,} tokens seen of "
          f"{heal.tokens:,} asked, {heal.passes:.2f} passes, {heal.steps} steps of {heal.batch_size} x {heal.seq_len}")
    print(f"train {heal.train}, lr {heal.lr:g}, temperature {heal.temperature:g}, "
          + ", ".join(f"{k} {v}" for k, v in heal.settings.items()))
    peak = f", peak memory {heal.peak_memory_bytes / 2**20:.0f} MiB" if heal.peak_memory_bytes else ""
    print(f"{heal.device} {heal.dtype}, {heal.seconds or 0:.0f}s{peak}; "
          + ", ".join(f"{k} {v}" for k, v in heal.versions.items()))
    if heal.loss_curve:
        print(f"{heal.loss_name} by step: " + loss_line(heal.loss_curve))


def loss_line(curve: list[list[float]], points: int = 12) -> str:
    """The loss curve in a line: up to `points` evenly spaced steps, first and last included."""
    if len(curve) <= points:
        chosen = curve
    else:
        chosen = [curve[round(i * (len(curve) - 1) / (points - 1))] for i in range(points)]
    return ", ".join(f"{int(step)}: {loss:.4f}" for step, _, loss in chosen)
