"""The training progress line: live on a terminal, one final line in a pipe or a log."""
import io
from types import SimpleNamespace

from training.progress import ProgressLine, callbacks_for


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run_steps(stream, steps=5):
    import training.progress as progress

    progress.STREAM = stream
    try:
        line = ProgressLine("SFT", min_interval=0.0)
        state = SimpleNamespace(global_step=0, max_steps=steps)
        line.on_train_begin(None, state, None)
        for step in range(1, steps + 1):
            state.global_step = step
            line.on_log(None, state, None, logs={"loss": 1.0 / step})
            line.on_step_end(None, state, None)
        line.on_train_end(None, state, None)
    finally:
        progress.STREAM = None
    return stream.getvalue()


def test_a_pipe_gets_the_final_line_only():
    text = run_steps(io.StringIO())
    assert text.count("\n") == 1 and text.count("step") == 1
    assert "SFT: step 5/5 · loss 0.200" in text


def test_a_terminal_gets_one_line_rewritten_in_place():
    text = run_steps(Terminal())
    assert text.count("\n") == 1  # one line: every update starts with a carriage return
    assert text.count("\r") == 6 and "step 3/5 · loss 0.333" in text and "left" in text


def test_the_line_is_added_only_when_the_bar_is_off():
    assert callbacks_for("SFT", SimpleNamespace(disable_tqdm=False), None) is None
    extra = callbacks_for("GRPO", SimpleNamespace(disable_tqdm=True), ["mine"])
    assert extra[0] == "mine" and isinstance(extra[1], ProgressLine)
