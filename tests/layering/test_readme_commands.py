"""`.ci/run` runs the README's test command word for word, after the README's torch install."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    install, tests = _bash_blocks((ROOT / "README.md").read_text())[:2]
    assert install.startswith("pip install torch==2.13.0 && ")
    assert tests == "pip install -e '.[test,highs,rl,postgres,fast]' && python3 -m pytest tests"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.strip().startswith("#")]
    assert ci[-1] == tests
    assert "python3 -m pip install --quiet torch==2.13.0" in ci
