"""The README's quickstart works when pasted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quickstart_runs(tmp_path: Path) -> None:
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None, "README has a Quickstart code block"
    script = tmp_path / "quickstart.py"
    script.write_text(code.group(1))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "'approved_by': 'alice'" in done.stdout
    assert "('charge', 'completed', 1)" in done.stdout
    assert (tmp_path / "orders.db").exists()


def test_types_example_survives_a_crash(tmp_path: Path) -> None:
    code = re.search(r"## Types\n.*?```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None, "README has a Types code block"
    script = tmp_path / "types_example.py"
    script.write_text(code.group(1))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), *args]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    crashed = run("crash")
    assert crashed.returncode == -9, crashed.stderr
    assert crashed.stdout == "quoting o-1\n"
    replayed = run()
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == (  # the step did not run again; its result is a Quote again
        "Quote(order_id='o-1 approved by alice', ship_by=datetime.datetime(2026, 12, 3, 0, 0, "
        "tzinfo=datetime.timezone.utc), tier=<Tier.EXPRESS: 'express'>)\n"
    )
