"""The `actorflow` command (`pip install 'actorflow[cli]'`), also `python -m actorflow`.

Each command lives in a module of its own and is added to the `main` group in
`_main.py`; command groups (`workflows`, `runs`, ...) join the same way.
"""

from ._main import main

__all__ = ["main"]
