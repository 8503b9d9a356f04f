"""The demo's report logic (the full loop runs as `polyground demo`, timed in bench/learning_bench.py)."""
from polyground.demo import results_table, verdict


def metrics(**acc):
    return {k: {"overall": {"strict_acc@0.5": v / 100, "official_acc@0.5": v / 100, "format_rate": 1.0,
                            "image_acc": 1.0, "strict_miou": v / 100, "mean_reward": 1.0}} for k, v in acc.items()}


def test_grpo_is_credited_only_beyond_the_better_of_sft_and_control():
    text = verdict(metrics(base=0, sft=59, grpo=65, control=14.5))
    assert "GRPO moved it by +6.0 points" in text and "credited with +6.0 points" in text


def test_grpo_below_the_control_gets_no_credit():
    assert "credited with nothing" in verdict(metrics(base=0, sft=50, grpo=55, control=60))


def test_results_table_has_a_row_per_model():
    rows = results_table(metrics(base=0, sft=59, grpo=65, control=61)).splitlines()
    assert len(rows) == 6 and rows[3].startswith("| sft | 100.0 | 100.0 | 59.0 |")
