"""`python -m actorflow ...`: the `actorflow` command (`pip install 'actorflow[cli]'`)."""

from __future__ import annotations

import sys


def _main() -> None:
    try:
        from .cli import main
    except ImportError as exc:
        sys.exit(f"error: the actorflow command needs: pip install 'actorflow[cli]' ({exc})")
    main(prog_name="python -m actorflow")


if __name__ == "__main__":
    _main()
