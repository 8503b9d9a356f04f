"""`polyground eval`: score a model on a benchmark split; `polyground eval compare`.

    polyground eval --bench REF (--model M | --endpoint URL --endpoint-model NAME
                                 | --predictions FILE.jsonl --profile P) --output DIR
    polyground eval compare DIR [DIR ...]

The completions (generated greedily by a local model or an endpoint, or read
from a JSONL file of {"id", "completion"} lines keyed by the split's task ids)
become a versioned `predictions` dataset; DIR receives metrics.json,
metrics.md and one PNG bar chart per metric across task types
(training/evaluation/ defines every number). The Markdown table goes to
standard output, then the predictions version's `name@id` as the last line.

MIG-Bench rows: `--official-scorer migician|univg-r1` and `--migician-y-rescale`
choose which official script the official numbers reproduce; `--prompt-template`
the prompt they are asked (default: the question + Migician's Qwen2-VL suffix,
as its evaluation sends it). All three are recorded with the numbers.
"""
from __future__ import annotations

import sys
from pathlib import Path

from polyground.cli import (
    add_config_flags, add_config_option, add_endpoint_options, add_pixel_budget_options, config_from_args, open_store,
    terminal_safe,
)
from schemas.errors import UserError
from training.evaluation.config import EvalConfig


def add_parsers(sub) -> None:
    what = "score a model (or a predictions file) on a benchmark split"
    p = sub.add_parser("eval", help=what, description=what)
    p.add_argument("--bench", help="benchmark split (NAME[@VERSION|@TAG]); a tasks version works too")
    p.add_argument("--model", help="local model folder (or LoRA adapter) to generate with")
    p.add_argument("--endpoint", help="OpenAI-compatible base URL (http://host:port/v1) to generate with")
    p.add_argument("--endpoint-model", help="the served model's name (with --endpoint)")
    p.add_argument("--predictions", type=Path, help='JSONL of {"id", "completion"} produced elsewhere')
    p.add_argument("--profile", help="answer profile of the completions (needed with --predictions; default: the "
                                     "profile a model folder was trained on, else its model family; an endpoint "
                                     "whose served name names no family needs it)")
    p.add_argument("--model-name", help="label of the model in reports (default: from the model or the file)")
    p.add_argument("--output", type=Path, help="folder for metrics.json, metrics.md and the charts")
    p.add_argument("--name", help="name of the predictions dataset (default: <bench>-pred-<model>)")
    add_config_flags(p, EvalConfig)  # sampling, --limit, the local model's and the MIG-Bench scoring options
    add_endpoint_options(p)
    add_pixel_budget_options(p, "a model folder's processor bounds; for an endpoint or --predictions a stock "
                                "served Qwen2.5-VL's, 3136 and 12845056")
    add_config_option(p)
    p.set_defaults(func=run_eval)
    sub_eval = p.add_subparsers(dest="eval_command", metavar="COMMAND")
    c = sub_eval.add_parser("compare", help="print several eval reports side by side",
                            description="print several eval reports (folders with metrics.json) side by side")
    c.add_argument("dirs", nargs="+", type=Path, help="eval output folders")
    c.add_argument("--metric", action="append", help="metric(s) to show (default: the headline ones)")
    add_config_option(c)
    c.set_defaults(func=run_compare)


def _scoring(cfg, source: str):
    """(OfficialScorer, prompt template name or None, PromptTemplate or None) from the scoring options."""
    from schemas.official import DEFAULT_PROMPT, MIG_PROMPTS, OfficialScorer

    official = OfficialScorer(cfg.official_scorer, cfg.migician_y_rescale)
    name = cfg.prompt_template or (None if source == "--predictions" else DEFAULT_PROMPT)
    return official, name, MIG_PROMPTS.get(name)


def _source(args) -> str:
    given = [flag for flag, v in (("--model", args.model), ("--endpoint", args.endpoint),
                                  ("--predictions", args.predictions)) if v]
    if len(given) != 1:
        raise UserError("give exactly one of --model, --endpoint (with --endpoint-model) or --predictions"
                        + (f" (got {', '.join(given)})" if given else ""))
    if not args.bench or not args.output:
        raise UserError("eval needs --bench REF and --output DIR")
    return given[0]


def _completions(args, cfg, store, bench, source: str, template=None):
    """(completions by id, profile, model label, source record, usage)."""
    from training.evaluation import run as ev

    from builders.inference.backends import make_backend, pixel_budget, resolve_frame

    if source == "--predictions":
        from schemas.profiles import profile_with_budget

        if not args.profile:
            raise UserError("--predictions needs --profile P: the answer format the completions were written in")
        completions = ev.read_predictions_jsonl(args.predictions)
        # A qwen2_5_vl answer is in pixels of what the model saw: the budget names that frame.
        budget = pixel_budget(args.image_min_pixels, args.image_max_pixels)
        record = {"kind": "predictions", "file": args.predictions.name,
                  "sha256": ev.file_sha256(args.predictions), "image_pixels": budget.record()}
        profile = profile_with_budget(args.profile, budget)
        return completions, profile, args.model_name or args.predictions.stem, record, {}
    policy = args.model or args.endpoint
    if source == "--endpoint" and not args.endpoint_model:
        raise UserError("--endpoint needs --endpoint-model NAME (the served model)")
    if source == "--endpoint":
        from builders.secrets import check_url

        check_url(args.endpoint, "--endpoint")
    profile, budget, given = resolve_frame(policy, args.endpoint_model, args.profile,
                                           args.image_min_pixels, args.image_max_pixels)
    backend = make_backend(store, policy, args.endpoint_model, profile, concurrency=args.concurrency,
                           batch_size=cfg.batch_size, device=cfg.device, api_key_env=args.api_key_env,
                           timeout=args.timeout, budget=budget, budget_given=given)
    sampling = {"temperature": cfg.temperature, "top_p": 1.0, "max_tokens": cfg.max_tokens}

    def progress(done, total):
        print(f"eval: generated {done}/{total}", file=sys.stderr)

    completions = ev.generate_for_bench(store, bench, backend, sampling, seed=cfg.seed,
                                        batch_size=cfg.batch_size if source == "--model" else 256,
                                        limit=cfg.limit, progress=progress, template=template)
    if backend.failures:
        print(f"eval: {len(backend.failures)} task(s) got no answer from the endpoint (scored as empty)",
              file=sys.stderr)
    label = args.model_name or (args.endpoint_model if source == "--endpoint" else ev.model_slug(policy))
    record = {"kind": backend.kind, **backend.describe(), "sampling": sampling, "seed": cfg.seed,
              "limit": cfg.limit}
    return completions, profile, label, record, backend.usage()


def run_eval(args) -> int:
    from training.evaluation import report, run as ev, score

    cfg = config_from_args(EvalConfig, args)
    source = _source(args)
    store = open_store(args)
    bench = store.resolve(args.bench)
    official, prompt_name, template = _scoring(cfg, source)
    score.check_official_scorer(bench, official)  # before any generation
    completions, profile, label, record, usage = _completions(args, cfg, store, bench, source, template)
    prompt = (ev.prompt_record(template, profile) if prompt_name
              else {"template": None, "note": "predictions made elsewhere: pass --prompt-template to record it"})
    # With --limit only the generated tasks are scored: the rest would count as missing answers.
    metrics = ev.evaluate(store, bench, completions, profile, label, name=args.name, source=record,
                          limit=cfg.limit if source != "--predictions" else None, usage=usage,
                          official=official, prompt=prompt)
    report.write_report(metrics, args.output)
    sys.stdout.write(terminal_safe(report.metrics_markdown(metrics)))
    print(f"eval: report in {args.output}", file=sys.stderr)
    print(metrics["predictions"])
    return 0


def run_compare(args) -> int:
    from training.evaluation import report as ev

    reports = [(str(d), ev.load_report(d)) for d in args.dirs]
    labels = [m.get("model") or d for d, m in reports]
    # Two reports of the same model (e.g. two benches or checkpoints) are told apart by folder.
    labels = [f"{label} ({d})" if labels.count(label) > 1 else label for label, (d, _) in zip(labels, reports)]
    sys.stdout.write(terminal_safe(ev.compare_table([(label, m) for label, (_, m) in zip(labels, reports)],
                                                    args.metric)))
    return 0
