"""Progress bars on a real terminal (a pseudo-terminal from ``pty``) and their absence elsewhere."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

pty = pytest.importorskip("pty")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Draws one bar of 3 steps with the same calls the pipeline makes, then prints to stdout.
HELPER = textwrap.dedent("""
    import sys
    from mpsearch.report import progress
    with progress(quiet=len(sys.argv) > 1) as bars:
        task = bars.add("fine-tune chosen plan", total=3)
        for epoch in range(1, 4):
            bars.update(task, completed=epoch, info=f"loss {1.0 / epoch:.4f}")
    print("done")
""")


def _run_on_terminal(argv: list[str], cwd: Path | None = None, timeout_s: float = 120.0) -> tuple[int, str]:
    """Run ``argv`` with stdin/stdout/stderr on a new pseudo-terminal; return (exit code, all it wrote)."""
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="120", LINES="40", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout_s)
            if not ready:
                proc.kill()
                raise AssertionError(f"{argv} wrote nothing for {timeout_s} s")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=timeout_s), b"".join(chunks).decode("utf-8", "replace")


def test_bar_renders_on_a_terminal() -> None:
    code, raw = _run_on_terminal([sys.executable, "-c", HELPER])
    assert code == 0
    text = ANSI.sub("", raw)
    final = [line for line in text.replace("\r", "\n").splitlines() if "fine-tune chosen plan" in line][-1]
    # description, a full bar, "completed/total", and the info field of the last update
    assert re.fullmatch(r"fine-tune chosen plan\s+━{10,}\s+3/3\s+0:00:0\d\s+loss 0\.3333\s*", final), final
    assert "\x1b[?25l" in raw and "\x1b[?25h" in raw  # cursor hidden while drawing, shown again
    assert text.rstrip().endswith("done")


def test_quiet_draws_nothing_on_a_terminal() -> None:
    code, raw = _run_on_terminal([sys.executable, "-c", HELPER, "quiet"])
    assert code == 0
    assert raw.replace("\r\n", "\n") == "done\n"


def test_no_bar_output_when_not_a_terminal() -> None:
    proc = subprocess.run([sys.executable, "-c", HELPER], capture_output=True, timeout=120)
    assert proc.returncode == 0
    assert proc.stdout == b"done\n"
    assert proc.stderr == b""


RECIPE = {
    "version": 1, "name": "tty", "seed": 0, "model": "small_cnn",
    "data": {"source": "digits", "batch_size": 128, "calib_batches": 1},
    "sensitivity": {"method": "fisher", "n_batches": 1, "settings": {"granularity": "per_batch"}},
    "hardware": {"profile": "gap8-pulp-nn", "w_bits": [4, 8], "a_bits": [8]},
}


def test_cli_command_draws_its_bar_only_on_a_terminal(tmp_path: Path) -> None:
    recipe = tmp_path / "tty.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    argv = [sys.executable, "-m", "mpsearch.cli", "analyze", str(recipe), "-o", str(tmp_path / "s.json")]
    code, raw = _run_on_terminal(argv, cwd=tmp_path)
    assert code == 0, raw
    text = ANSI.sub("", raw)
    assert re.search(r"sensitivity \(fisher\)\s+━{10,}\s+\d+/\d+\s+0:00:\d\d\s+done", text), text
    piped = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=300)
    assert piped.returncode == 0
    assert piped.stderr == b""
    assert b"\x1b" not in piped.stdout and b"\r" not in piped.stdout
    lines = piped.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == ["conv1", "conv2", "conv3", "fc"] and all("n_probes" in line for line in lines)
