"""Which build of the engine's hot path runs: compiled with mypyc, or its Python sources.

`setup.py` compiles the modules the hot path runs through (the run actor,
the workflow sandbox, the directory of live runs, the group commit: its
`HOT` list) with mypyc into extension modules next to their sources, and Python imports an
extension module before a source file of the same name. The sources stay the
code of record: the extensions are a build of them.

The package imports this module first, and it decides once per process:

- `ACTORFLOW_PURE=1` in the environment: the sources, always;
- an extension module older than its source (the source was edited after
  the build, as in a working copy): the sources, with a warning that says
  how to rebuild. Silently running the old build would run code that is no
  longer in the file;
- otherwise whatever the import system finds: the extensions when they were
  built, the sources when they were not (no compiler where it was installed).

Running the sources means every `actorflow` module, not only the stale one:
the compiled modules call each other directly, so a mix is not possible.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_PACKAGE = Path(__file__).parent
# This interpreter's extension file names (other versions' builds may lie beside them).
_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds `actorflow` modules in their source files, never in extension modules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("actorflow.") or path is None:
            return None
        name = fullname.rpartition(".")[2]
        for directory in path:
            package = os.path.join(directory, name, "__init__.py")
            if os.path.isfile(package):
                return importlib.util.spec_from_file_location(
                    fullname, package, submodule_search_locations=[os.path.dirname(package)]
                )
            module = os.path.join(directory, name + ".py")
            if os.path.isfile(module):
                return importlib.util.spec_from_file_location(fullname, module)
        return None


def _built() -> list[tuple[Path, Path]]:
    """(extension, source) of every module built for this interpreter."""
    pairs = []
    for extension in _PACKAGE.rglob("*" + _SUFFIX):
        source = extension.with_name(extension.name[: -len(_SUFFIX)] + ".py")
        if source.exists():
            pairs.append((extension, source))
    return pairs


def _stale(built: list[tuple[Path, Path]]) -> list[str]:
    return [
        str(source.relative_to(_PACKAGE.parent))
        for extension, source in built
        if source.stat().st_mtime > extension.stat().st_mtime
    ]


def _run_sources() -> bool:
    if not any(isinstance(finder, _SourcesFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())
    return False


def _choose() -> bool:
    """Install the sources-first finder when the sources must run; True if the
    compiled build runs."""
    if os.environ.get("ACTORFLOW_PURE", "") not in ("", "0"):
        return _run_sources()
    built = _built()
    stale = _stale(built)
    if stale:
        warnings.warn(
            f"actorflow: the compiled build is older than {', '.join(stale[:3])}"
            f"{' and more' if len(stale) > 3 else ''}; running the Python sources "
            "(rebuild with `pip install -e .`, or set ACTORFLOW_PURE=1 to say so)",
            RuntimeWarning,
            stacklevel=3,
        )
        return _run_sources()
    return bool(built)


#: Whether the engine's hot path runs compiled (mypyc) in this process.
COMPILED = _choose()
