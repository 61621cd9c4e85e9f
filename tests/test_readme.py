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
