"""Progress bars: nested bars in a terminal, and no cursor-movement escapes in a log (stderr not a
terminal), from tgo.io.progress and from the analysis stages on the micro workspace."""
import io
import shutil

import pytest

from micro import micro_config, rendered_lines, run_stage
from tgo.io import progress


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_nested_bars_move_the_cursor_only_in_a_terminal(tty):
    out = Stream(tty)
    for _ in progress(range(2), desc="outer", file=out):
        for _ in progress(range(3), desc="inner", leave=False, file=out):
            pass
    text = out.getvalue()
    assert "outer" in text and "inner" in text
    assert ("\x1b[A" in text) == tty
    if not tty:  # one line, redrawn after each carriage return
        assert text.count("\n") == 1 and text.endswith("\n")


# Each stage's bar below the checkpoints' (tokens: two of them, one after the other).
INNER = {"spectral": "sites", "correlation": "sites", "tokens": "alpha intervals", "qk": "blocks", "mi": "sublayers"}


@pytest.mark.parametrize("stage", INNER)
def test_a_stage_logged_to_a_pipe_has_no_escapes(stage, workspace, tmp_path):
    """stderr to a pipe, as in a log: the nested bars are there, without cursor-up escapes."""
    shutil.copytree(workspace / "data", tmp_path / "data")
    # The micro params, not the workspace's params.yaml: other tests leave theirs there.
    proc = run_stage(stage, tmp_path, micro_config())
    assert proc.returncode == 0, proc.stderr
    assert "checkpoints" in proc.stderr and INNER[stage] in proc.stderr, proc.stderr
    assert "\x1b" not in proc.stderr, repr(proc.stderr)
    # Shown as a terminal shows the log: the finished checkpoints bar alone, the inner bars gone.
    assert [line.split(":")[0] for line in rendered_lines(proc.stderr)] == ["checkpoints"], repr(proc.stderr)
