"""The demo's report logic (the full loop runs as `polyground demo`, timed in bench/learning_bench.py)."""
import pytest

from polyground.demo import results_table, verdict


def metrics(miou=None, **acc):
    """Acc@0.5 per model as given; mean IoU the same unless `miou` gives its own."""
    miou = miou or acc
    return {k: {"overall": {"strict_acc@0.5": v / 100, "official_acc@0.5": v / 100, "strict_acc@0.7": v / 100,
                            "format_rate": 1.0, "image_acc": 1.0, "strict_miou": miou[k] / 100, "mean_reward": 1.0}}
            for k, v in acc.items()}


def test_grpo_is_credited_only_beyond_the_better_of_sft_and_control():
    acc, iou = verdict(metrics(base=0, sft=59, grpo=65, control=14.5)).splitlines()
    assert "GRPO moved it by +6.0 points" in acc and "credited with +6.0 points" in acc
    assert iou.startswith("Held-out mean IoU") and "credited with +6.0 points" in iou


def test_grpo_below_the_control_gets_no_credit():
    assert verdict(metrics(base=0, sft=50, grpo=55, control=60)).count("credited with nothing") == 2


def test_mean_iou_is_credited_on_its_own():
    text = verdict(metrics(base=0, sft=100, grpo=100, control=100,
                           miou={"base": 0, "sft": 72.9, "grpo": 100.0, "control": 75.2}))
    acc, iou = text.splitlines()
    assert "credited with nothing" in acc and "credited with +24.8 points" in iou


def test_results_table_has_a_row_per_model():
    rows = results_table(metrics(base=0, sft=59, grpo=65, control=61)).splitlines()
    assert len(rows) == 6 and rows[3].startswith("| sft | 100.0 | 100.0 | 59.0 | 59.0 | 59.0 |")


# ---- the rl-pool stage: a failure stops the demo or is a failed stage, never silently replaced -------------
class FakeRunner:
    """Stands in for demo.Runner: records each command; `fail` maps a command word to the error it raises."""

    def __init__(self, fail):
        self.fail, self.calls = fail, []

    def __call__(self, title, *argv):
        self.calls.append(argv)
        for word, error in self.fail.items():
            if word in argv:
                raise error
        return "x@1"


def test_an_rl_pool_error_stops_the_demo(tmp_path):
    from polyground.demo import DemoConfig, train_models
    from schemas.errors import UserError

    run = FakeRunner({"rl-pool": UserError("endpoint http://x looks down: 20 failed attempts in a row")})
    with pytest.raises(UserError, match="looks down"):
        train_models(run, DemoConfig(), {"cot": "cot@1", "rl_tasks": "rl@1"}, tmp_path)
    assert not any("grpo" in argv for argv in run.calls)  # GRPO never ran on a replacement


def test_no_task_in_band_is_a_failed_stage_and_grpo_says_what_it_ran_on(tmp_path):
    from builders.rlpool import NoTaskInBand
    from polyground.demo import DemoConfig, train_models

    class Stop(Exception):
        pass

    run = FakeRunner({"rl-pool": NoTaskInBand("no task in band (0,1): 4 tasks, pass rates {0.00: 4}", {"0.00": 4}),
                      "grpo": Stop()})
    refs = {"cot": "cot@1", "rl_tasks": "rl@1"}
    with pytest.raises(Stop):
        train_models(run, DemoConfig(n_rl=4), refs, tmp_path)
    assert refs["rl_pool_failed"].startswith("build rl-pool failed: no task in band (0,1)")
    assert "GRPO ran on all 4 RL tasks instead" in refs["rl_pool_failed"]
    grpo = run.calls[-1]
    assert grpo[grpo.index("--data") + 1] == "rl@1"


def test_a_control_short_of_grpos_minutes_is_said():
    """Measured: SFT on a loaded machine (3.7 s/step) gave the control 27 steps, 14 s against GRPO's 99 s."""
    from polyground.demo import unequal_time

    assert unequal_time(140.5, 145.4) is None and unequal_time(140.0, 116.8) is None  # runs G and L
    note = unequal_time(98.7, 14.0)
    assert note.startswith("the control trained 14s against GRPO's 99s") and "not equal-time" in note
    assert unequal_time(100.0, 130.0) is not None  # too long is as unfair as too short


def test_a_loaded_machine_is_a_note_and_the_lineage_sees_only_datasets(tmp_path):
    """SFT measured at 3.7 s/step, then the control's steps ran at 0.5: the note is kept under a `_failed`
    key (which the lineage skips), and the references the lineage resolves are all datasets."""
    import json

    from polyground.demo import DemoConfig, train_models

    runtimes = {"sft": (550 * 3.7, 550), "grpo": (99.0, 40), "control": (14.0, 27)}

    class TimedRunner(FakeRunner):
        def __call__(self, title, *argv):
            super().__call__(title, *argv)
            if "--output" not in argv:
                return "demo-rl@1"
            out = tmp_path / argv[argv.index("--output") + 1]
            stage = "control" if "sft-control" in str(out) else "grpo" if "grpo" in argv else "sft"
            out.mkdir(parents=True, exist_ok=True)
            seconds, steps = runtimes[stage]
            (out / "run.json").write_text(json.dumps({"metrics": {"train_runtime": seconds, "global_step": steps}}))
            return str(out)

    refs = {"cot": "cot@1", "rl_tasks": "rl@1"}
    train_models(TimedRunner({}), DemoConfig(), refs, tmp_path)
    assert refs["equal_time_failed"].startswith("the control trained 14s against GRPO's 99s")
    assert all("@" in ref for key, ref in refs.items() if not key.endswith("_failed"))


# ---- the whole demo at a small size -----------------------------------------------------------------------
@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path):
    """`polyground demo` as a user runs it, at a small size: ~1-3 min on 2 shared cores (SFT, GRPO, four evals)."""
    import re

    from builders.store import Store
    from training_util import run_cli

    out = tmp_path / "demo"
    r = run_cli("demo", "--out", str(out), "--sft-steps", "8", "--grpo-steps", "2", "--n-train", "32", "--n-bench",
                "8", "--n-rl", "4", timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    report = (out / "report.md").read_text()
    for label in ("base", "sft", "grpo", "control"):
        assert re.search(rf"^\| {label} \| \d+\.\d \| ", report, re.M), label
        assert re.search(rf"^\| {label} \| \d+\.\d \| ", r.stdout, re.M), label  # the table is printed too
    assert "## Lineage" in report and "![metrics](report.png)" in report and (out / "report.png").stat().st_size
    failed = "build rl-pool failed:" in report
    assert failed == ("failed stage: build rl-pool failed:" in r.stdout)  # a failed stage is shown, never hidden
    assert failed or "demo-rl@" in report
    assert ("not equal-time:" in r.stdout) == ("**Not equal-time**" in report)  # said in both, or in neither
    assert r.stdout.strip().splitlines()[-1] == f"its datasets: polyground --store {out / 'store'} data ls"
    # One line per training stage on the terminal; the libraries' output only in the log the report links.
    assert re.search(r"SFT: step 8/8 · .*\n", r.stderr) and re.search(r"GRPO: step 2/2 · .*\n", r.stderr)
    log = (out / "demo.log").read_text()
    assert "Loading weights" in log and "Loading weights" not in r.stderr and "Warning" not in r.stderr
    assert "[demo.log](demo.log)" in report
    store = Store(out / "store")
    versions = store.versions()
    assert {v.name for v in versions} >= {"demo-heldout", "demo-train", "demo-rl-tasks", "demo-cot"}
    assert all(store.verify(v) == [] for v in versions)


def test_into_log_puts_stderr_back_when_the_step_fails(tmp_path):
    import os

    import training.progress as progress
    from polyground.demo import into_log

    before, stream = os.fstat(2), progress.STREAM
    with open(tmp_path / "demo.log", "a") as logfile:
        with pytest.raises(RuntimeError):
            with into_log(logfile):
                os.write(2, b"library noise\n")
                raise RuntimeError("a step failed")
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino) and progress.STREAM is stream
    assert (tmp_path / "demo.log").read_text() == "library noise\n"
