"""One progress line per training stage: step, loss or reward, elapsed and time left.

The trainers' tqdm bar is off in quiet runs (`disable_tqdm: true`, as in the
demo), which left minutes without a sign of life. `ProgressLine` is a
transformers TrainerCallback that rewrites one line in place (carriage
return) at most once a second and ends it with a newline, so a terminal shows
one live line; a pipe or a log file gets the final line only.

`STREAM` is where the line goes (stderr by default): the demo points it at
the terminal while it keeps the libraries' own output in its log file.
"""
from __future__ import annotations

import sys
import time

from transformers import TrainerCallback

STREAM = None  # None: sys.stderr at the time of writing


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


class ProgressLine(TrainerCallback):
    """`label: step 120/550 · loss 0.041 · 1m05s, ~3m40s left` on one line."""

    # What a log carries, in the order the line prefers it: SFT logs loss, GRPO the mean reward.
    KEYS = (("reward", "reward"), ("loss", "loss"))

    def __init__(self, label: str, min_interval: float = 1.0):
        self.label = label
        self.min_interval = min_interval
        self.start = self.last = 0.0
        self.value = ""

    def _write(self, state, end: str = "") -> None:
        elapsed = time.perf_counter() - self.start
        done, total = state.global_step, state.max_steps or 0
        left = f", ~{_clock(elapsed / done * (total - done))} left" if done and total > done else ""
        text = f"\r   {self.label}: step {done}/{total}{self.value} · {_clock(elapsed)}{left}"
        stream = STREAM or sys.stderr
        if not stream.isatty():
            if end:  # a log file or a pipe gets the final line only, as a plain line
                stream.write(text.lstrip("\r") + end)
                stream.flush()
            return
        stream.write(text.ljust(72) + end)
        stream.flush()
        self.last = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key, name in self.KEYS:
            if isinstance((logs or {}).get(key), (int, float)):
                self.value = f" · {name} {logs[key]:.3f}"
                break

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.last >= self.min_interval:
            self._write(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._write(state, end="\n")


def callbacks_for(label: str, training_args, callbacks: list | None) -> list | None:
    """The caller's callbacks, plus a progress line when the tqdm bar is off."""
    if not getattr(training_args, "disable_tqdm", False):
        return callbacks
    return [*(callbacks or []), ProgressLine(label)]
