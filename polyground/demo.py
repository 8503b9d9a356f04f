"""`polyground demo`: the whole loop on the embedded synthetic data, offline, on CPU.

Every step is the real CLI command a user would type, run in-process, so the
demo exercises exactly what the README documents:

  model tiny -> build tasks (train, rl) + build bench (held out, another seed)
  -> build cot against the loopback teacher (demo_teacher.py: loose boxes, some
  wrong images; `teacher=False`: --mode annotations) -> train sft on the
  teacher's own boxes (full: a from-scratch tiny model learns only with
  full-parameter SFT) -> build rl-pool with the SFT policy
  -> train grpo (LoRA) -> merge, and, as a control, train sft for the same
  minutes from the SFT checkpoint -> eval of base, SFT, GRPO and control on
  the held-out split -> report.md + report.png with lineage.

GRPO is credited only with what it adds over the equal-time SFT control.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from schemas.errors import UserError


@dataclass
class DemoConfig:
    """The demo's sizes and settings; the defaults are what docs/learning.md measured (issue 16)."""

    seed: int = 0
    n_train: int = 2000  # tasks the teacher is asked about (SFT's cold start: the verified ones)
    n_rl: int = 256  # tasks sampled for the RL pool: ground truth only, no trajectory
    n_bench: int = 200  # held-out split, drawn from another seed
    sft_steps: int = 550
    rl_k: int = 4  # samples per task in rejection sampling
    rl_min_iou: float = 0.75  # a sample passes rejection sampling at this IoU (every loose box passes 0.5)
    grpo_steps: int = 40  # the IoU reward levels off by step ~35 (docs/learning.md, runs I and L)
    profile: str = "short"  # must match the recipes' profile
    max_tokens: int = 48  # a completion with its think block is ~30-45 tokens
    control_lr: float = 3e-4  # the control goes on at a constant rate (no second warm-up to SFT's peak)
    teacher: bool = True  # cold start from the loopback teacher (demo_teacher.py); False: annotation-built CoT
    cot_box: str = "teacher"  # the box SFT learns from a cot row: the teacher's own (distillation) or "annotation"
    cpu_threads: int = 2  # torch threads of the training stages: the demo runs one stage at a time on 2 cores
    validation: bool = False  # score on the validation split (choices are made there), not the held-out one

    def __post_init__(self):
        if min(self.n_train, self.n_rl, self.n_bench, self.sft_steps, self.grpo_steps, self.rl_k,
               self.cpu_threads) < 1:
            raise UserError("demo: sizes, step counts and threads must be positive")
        if self.cot_box not in ("annotation", "teacher"):
            raise UserError("demo: cot_box must be 'annotation' or 'teacher'")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def into_log(logfile):
    """Send everything written to stderr (fd 2: warnings, library bars, C-level output) to `logfile`
    while a step runs; the training progress line still reaches the terminal."""
    from training import progress

    sys.stderr.flush()
    saved, before = os.dup(2), progress.STREAM
    terminal = None
    try:
        terminal = os.fdopen(os.dup(saved), "w")
        os.dup2(logfile.fileno(), 2)
        progress.STREAM = terminal
        with contextlib.redirect_stderr(logfile):
            yield
    finally:
        os.dup2(saved, 2)  # first: whatever fails below, stderr is the terminal again
        os.close(saved)
        progress.STREAM = before
        with contextlib.suppress(OSError):
            logfile.flush()
        if terminal is not None:
            terminal.close()


class Runner:
    """Runs CLI commands in-process, timing each and keeping the last stdout line.

    The commands' own output (library warnings and bars included) goes to `log_path`;
    the terminal gets one line per step and the training stages' progress line."""

    def __init__(self, store: Path, log_path: Path):
        self.store = store
        self.log_path = log_path
        self.timings: list[tuple[str, float]] = []

    def __call__(self, title: str, *argv: str) -> str:
        from polyground.cli import run

        log(f"== {title}")
        out = io.StringIO()
        start = time.perf_counter()
        with open(self.log_path, "a") as logfile:
            logfile.write(f"\n== {title}: polyground {' '.join(argv)}\n")
            logfile.flush()
            try:
                with into_log(logfile), contextlib.redirect_stdout(out):
                    code = run(["--store", str(self.store), *argv])
            finally:  # a failed command's output is what its log is for
                logfile.write(out.getvalue().rstrip("\n") + "\n")
        seconds = time.perf_counter() - start
        self.timings.append((title, seconds))
        if code:
            raise UserError(f"demo step '{title}' failed (exit {code}); its output is in {self.log_path}")
        lines = out.getvalue().strip().splitlines()
        log(f"   {seconds:.1f}s -> {lines[-1] if lines else ''}")
        return lines[-1] if lines else ""


def build_data(run: Runner, cfg: DemoConfig) -> dict:
    s = cfg.seed
    refs = {}
    split, offset = ("validation", 3_000_000) if cfg.validation else ("heldout", 1_000_000)
    refs["bench"] = run(f"{split} benchmark split", "build", "bench", "--source", "synthetic", "--family",
                        "locate_red", "--n", str(cfg.n_bench), "--seed", str(offset + s), "--name",
                        f"demo-{split}", "--quiet")
    # No --no-contamination: locate_red draws few layouts on a 2x2 grid, so about half the training images have
    # a held-out image with the same objects in the same cells (a near-duplicate; no byte copy). The builds
    # record it in their manifests (`near_duplicates`) and warn instead of refusing.
    refs["train"] = run("training tasks", "build", "tasks", "--source", "synthetic", "--family", "locate_red",
                        "--n", str(cfg.n_train), "--seed", str(s), "--name", "demo-train", "--quiet")
    refs["rl_tasks"] = run("tasks for the RL pool", "build", "tasks", "--source", "synthetic", "--family",
                           "locate_red", "--n", str(cfg.n_rl), "--seed", str(2_000_000 + s), "--name", "demo-rl-tasks",
                           "--quiet")
    if cfg.teacher:
        refs["cot"] = teacher_cot(run, cfg, refs["train"])
    else:
        refs["cot"] = run("annotation-built CoT", "build", "cot", "--tasks", refs["train"], "--mode", "annotations",
                          "--profile", cfg.profile, "--name", "demo-cot", "--quiet")
    return refs


def teacher_cot(run: "Runner", cfg: DemoConfig, tasks_ref: str) -> str:
    """`build cot` against the loopback teacher (polyground/demo_teacher.py) over real HTTP."""
    from builders.store import Store
    from polyground.demo_teacher import Teacher, TeacherServer
    from schemas.profiles import get_profile

    store = Store(run.store)
    tasks = store.resolve(tasks_ref).table().to_pylist()
    teacher = Teacher(store, tasks, get_profile(cfg.profile), seed=cfg.seed)
    with TeacherServer(teacher) as url:
        return run("teacher CoT behind the verifier (loopback teacher)", "build", "cot", "--tasks", tasks_ref,
                   "--mode", "teacher", "--teacher-url", url, "--teacher-model", "demo-teacher", "--teacher-profile",
                   cfg.profile, "--profile", cfg.profile, "--samples", "1", "--seed", str(cfg.seed),
                   "--name", "demo-cot", "--quiet")


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def recipe(name: str) -> str:
    path = RECIPES / name
    if not path.is_file():
        raise UserError(f"demo: recipe {path} not found (run the demo from a checkout of polyground)")
    return str(path)


def sft_args(cfg: DemoConfig, steps: int, control: bool = False) -> list[str]:
    # recipes/demo_sft.yaml holds the measured settings (full parameters, batch 16, lr 1e-3).
    args = ["--config", recipe("demo_sft.yaml"), "--max_steps", str(steps), "--seed", str(cfg.seed),
            "--disable_tqdm", "true", "--cot_box", cfg.cot_box, "--cpu_threads", str(cfg.cpu_threads)]
    if control:  # goes on from a trained model: no second warm-up to the peak rate, no decay to zero
        args += ["--learning_rate", str(cfg.control_lr), "--lr_scheduler_type", "constant", "--warmup_steps", "0"]
    return args


def grpo_args(cfg: DemoConfig) -> list[str]:
    # recipes/demo_grpo.yaml: 8 generations, LoRA r16 on the language model, beta 0, lr 1e-3.
    # Completions here carry a short think block, so they need more than the recipe's 24 tokens.
    return ["--config", recipe("demo_grpo.yaml"), "--max_steps", str(cfg.grpo_steps), "--seed", str(cfg.seed),
            "--max_completion_length", str(cfg.max_tokens), "--disable_tqdm", "true",
            "--cpu_threads", str(cfg.cpu_threads)]


def read_run(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def train_models(run: Runner, cfg: DemoConfig, refs: dict, out: Path) -> dict:
    """base -> SFT (full) -> rl-pool -> GRPO (LoRA, merged) and the equal-time SFT control."""
    models = {"base": out / "models" / "base"}
    run("tiny base model", "model", "tiny", "--size", "demo", "--seed", str(cfg.seed), "--output", str(models["base"]))
    models["sft"] = Path(run("SFT (full parameters)", "train", "sft", "--data", refs["cot"], "--model",
                             str(models["base"]), "--output", str(out / "models" / "sft"), *sft_args(cfg, cfg.sft_steps)))
    from builders.rlpool import NoTaskInBand

    grpo_data = refs["rl_tasks"]
    try:
        refs["rl_pool"] = run("rejection sampling with the SFT policy", "build", "rl-pool", "--tasks", refs["rl_tasks"],
                              "--policy", str(models["sft"]), "--k", str(cfg.rl_k), "--min-iou", str(cfg.rl_min_iou), "--temperature", "1.0",
                              "--max-tokens", str(cfg.max_tokens), "--seed", str(cfg.seed), "--name", "demo-rl")
        grpo_data = refs["rl_pool"]
    except NoTaskInBand as e:
        # Only this outcome goes on (a policy that always or never succeeds: a result, not a fault),
        # and it is a failed stage in the report and the final output. Any other error stops the demo.
        refs["rl_pool_failed"] = f"build rl-pool failed: {e}; GRPO ran on all {cfg.n_rl} RL tasks instead"
        log(f"   {refs['rl_pool_failed']}")
    adapter = out / "models" / "grpo-adapter"
    run("GRPO (LoRA) from the SFT model", "train", "grpo", "--data", grpo_data, "--model", str(models["sft"]),
        "--output", str(adapter), *grpo_args(cfg))
    models["grpo"] = Path(run("merge the GRPO adapter", "merge", "--adapter", str(adapter),
                              "--output", str(out / "models" / "grpo")))
    # The control spends GRPO's wall time on more SFT from the same checkpoint (steps = GRPO
    # seconds / measured SFT seconds per step), so GRPO is credited only with what beats it.
    sft_run = read_run(models["sft"])["metrics"]
    sft_step_s = sft_run["train_runtime"] / max(1, sft_run["global_step"])
    grpo_s = read_run(adapter)["metrics"]["train_runtime"]
    control_steps = max(1, round(grpo_s / sft_step_s))
    models["control"] = Path(run(f"control: {control_steps} more SFT steps ({grpo_s:.0f}s, GRPO's time)",
                                 "train", "sft", "--data", refs["cot"], "--model", str(models["sft"]), "--output",
                                 str(out / "models" / "sft-control"), *sft_args(cfg, control_steps, control=True)))
    control_s = read_run(models["control"])["metrics"]["train_runtime"]
    if note := unequal_time(grpo_s, control_s):  # a "_failed" key: a note, not a dataset for the lineage
        refs["equal_time_failed"] = note
    return models


def unequal_time(grpo_s: float, control_s: float, tolerance: float = 0.25) -> str | None:
    """Why the control did not get GRPO's minutes, or None. Its step count comes from SFT's
    measured rate, so a load change between SFT and GRPO (another job on the cores) gives it
    too few or too many steps: the comparison is then not equal-time and the demo says so."""
    if abs(control_s - grpo_s) <= tolerance * grpo_s:
        return None
    return (f"the control trained {control_s:.0f}s against GRPO's {grpo_s:.0f}s (the machine's load changed "
            f"between SFT and GRPO), so the comparison is not equal-time; rerun on an idle machine")


def evaluate_models(run: Runner, cfg: DemoConfig, refs: dict, models: dict, out: Path) -> dict:
    metrics = {}
    for label, folder in models.items():
        report = out / "eval" / label
        run(f"eval {label} on the {split_name(cfg)} split", "eval", "--bench", refs["bench"], "--model", str(folder),
            "--model-name", f"demo-{label}", "--profile", cfg.profile, "--max-tokens", str(cfg.max_tokens),
            "--batch-size", "50", "--output", str(report))
        metrics[label] = json.loads((report / "metrics.json").read_text())
    return metrics


HEADLINE = [("format_rate", "format rate"), ("image_acc", "image accuracy"), ("strict_acc@0.5", "Acc@0.5 (strict)"),
            ("official_acc@0.5", "Acc@0.5 (official)"), ("strict_acc@0.7", "Acc@0.7 (strict)"),
            ("strict_miou", "mean IoU"), ("mean_reward", "mean reward")]


def results_table(metrics: dict) -> str:
    head = "| model | " + " | ".join(name for _, name in HEADLINE) + " |"
    lines = [head, "|" + "---|" * (len(HEADLINE) + 1)]
    for label, m in metrics.items():
        o = m["overall"]
        cells = [f"{100 * o[k]:.1f}" if k != "mean_reward" else f"{o.get(k, 0):.3f}" for k, _ in HEADLINE]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def split_name(cfg: DemoConfig) -> str:
    return "validation" if cfg.validation else "held-out"


def plot(metrics: dict, path: Path, split: str = "held-out") -> None:
    from builders.publish.plots import figure, save_png

    keys = [k for k, _ in HEADLINE if k != "mean_reward"]
    fig = figure((9, 3.5), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / len(metrics)
    for i, (label, m) in enumerate(metrics.items()):
        ax.bar([x + i * width for x in range(len(keys))], [100 * m["overall"][k] for k in keys], width, label=label)
    ax.set_xticks([x + width * (len(metrics) - 1) / 2 for x in range(len(keys))], [n for k, n in HEADLINE[:-1]],
                  fontsize=8)
    ax.set_ylabel(f"% on the {split} split")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars reach 100
    fig.tight_layout()
    save_png(fig, path)


def verdict(metrics: dict, split: str = "held-out") -> str:
    """What GRPO added, credited only beyond the better of SFT and the equal-time SFT control,
    on Acc@0.5 and on mean IoU (what the IoU reward optimises)."""
    lines = []
    for key, name in (("strict_acc@0.5", "Acc@0.5"), ("strict_miou", "mean IoU")):
        v = {k: 100 * m["overall"][key] for k, m in metrics.items()}
        # A control that lost ground must not inflate GRPO: credit what beats both alternatives.
        credit = v["grpo"] - max(v["control"], v["sft"])
        lines.append(f"{split.capitalize()} {name}: SFT took it from {v['base']:.1f} (base) to {v['sft']:.1f}; GRPO moved it by "
                     f"{v['grpo'] - v['sft']:+.1f} points, the control (the same minutes of more SFT) by "
                     f"{v['control'] - v['sft']:+.1f}; " +
                     (f"GRPO is credited with {credit:+.1f} points over the better of SFT and the control."
                      if credit > 0 else "GRPO did not beat both SFT and the control, so it is credited with nothing."))
    return "\n".join(lines) + " (One seed; bench/learning_bench.py gives the spread over seeds.)"


def lineage(store_root: Path, refs: dict, models: dict) -> list[str]:
    from builders.store import Store

    store = Store(store_root)
    lines = ["| artefact | what | made from |", "|---|---|---|"]
    for key, ref in refs.items():
        if key.endswith("_failed"):
            continue
        v = store.resolve(ref)
        inputs = ", ".join(i["ref"] for i in v.manifest.get("inputs", [])) or json.dumps(v.manifest.get("config", {}))
        lines.append(f"| `{v.ref}` | {v.kind}, {v.manifest['counts']['rows']} rows | {inputs} |")
    for label, folder in models.items():
        if not (folder / "run.json").is_file():
            lines.append(f"| `{folder}` | {label}: random init | `polyground model tiny --size demo` |")
            continue
        r = read_run(folder)
        data = (r.get("data") or {}).get("ref", "-")
        steps = (r.get("metrics") or {}).get("global_step")
        what = f"{label}: {r.get('method')}" + (f", {steps} steps" if steps else "")
        lines.append(f"| `{folder}` | {what} | data `{data}`, code {r.get('code_version')} |")
    return lines


def write_report(out: Path, cfg: DemoConfig, refs: dict, models: dict, metrics: dict, timings, store: Path) -> Path:
    split = split_name(cfg)
    plot(metrics, out / "report.png", split)
    total = sum(s for _, s in timings)
    parts = [
        "# polyground demo report", "",
        f"Seed {cfg.seed}; config `{json.dumps(asdict(cfg))}`.", "",
        f"{split.capitalize()} split: `{refs['bench']}` (locate_red, another seed; no image shared with training).",
        "", results_table(metrics), "", "![metrics](report.png)", "", verdict(metrics, split), "",
    ]
    if refs.get("rl_pool_failed"):
        parts += [f"**Failed stage**: {refs['rl_pool_failed']}.", ""]
    if refs.get("equal_time_failed"):
        parts += [f"**Not equal-time**: {refs['equal_time_failed']}.", ""]
    parts += ["## Lineage", "", *lineage(store, refs, models), "",
              "## Time per step", "", "| step | seconds |", "|---|---|",
              *[f"| {t} | {s:.1f} |" for t, s in timings], f"| total | {total:.1f} |", "",
              "Every command's own output (library warnings and progress bars included) is in [demo.log](demo.log).", ""]
    path = out / "report.md"
    path.write_text("\n".join(parts))
    (out / "metrics.json").write_text(json.dumps({k: m["overall"] for k, m in metrics.items()}, indent=2))
    return path


def run_demo(cfg: DemoConfig, out: Path, store: Path | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    store = store or out / "store"
    (out / "demo.log").write_text("")  # this run's log only
    run = Runner(store, out / "demo.log")
    log(f"polyground demo, seed {cfg.seed}: the commands' own output goes to {out / 'demo.log'}")
    start = time.perf_counter()
    refs = build_data(run, cfg)
    models = train_models(run, cfg, refs, out)
    metrics = evaluate_models(run, cfg, refs, models, out)
    report = write_report(out, cfg, refs, models, metrics, run.timings, store)
    print(results_table(metrics))
    print()
    print(verdict(metrics, split_name(cfg)))
    if refs.get("rl_pool_failed"):
        print(f"failed stage: {refs['rl_pool_failed']}.")
    if refs.get("equal_time_failed"):
        print(f"not equal-time: {refs['equal_time_failed']}.")
    print(f"demo finished in {(time.perf_counter() - start) / 60:.1f} min; report: {report}")
    print(f"its datasets: polyground --store {store} data ls")
    return report
