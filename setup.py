"""Build: the engine's hot path compiled with mypyc (everything else is in pyproject.toml).

The modules in `HOT` are what every run goes through: the run actor, the
workflow sandbox, the engine's directory of live runs, a run's creation, a step's
call, the group commit and the SQLite writer; the public API (`Engine`, `Run`,
`af.*`) stays interpreted, and hands its work to them once its arguments are taken
(`Engine.start` to `record_run`, `Run.result` to `RunDirectory.result_of`; a step
is a `StepFunction`, whose call its compiled base `StepCall` makes). mypyc turns
them into C extension modules from the same type-annotated sources, which
stay the code of record; `actorflow._build` says at run time which build runs
and falls back to the sources when a build is stale or `ACTORFLOW_PURE=1`.
The measured effect is in the README (Performance: the compiled hot path).

`ACTORFLOW_PURE=1` at install time builds nothing. A machine without a C
compiler, or where mypyc fails, gets the pure-Python package and a warning.

What compiled modules must keep to (mypyc's native classes):
- no async generators; no subclass of a builtin type other than object and
  exceptions, unless marked `@mypyc_attr(native_class=False)` (the `Mailbox`
  deque, the sandbox's `ReadyCallback` list and `WorkflowLoop`);
- a class that code outside the set subclasses is marked
  `@mypyc_attr(allow_interpreted_subclasses=True)` (`GroupCommitted`, the stores' base);
- class-level constants are `Final` (else they are instance attributes);
- their classes cannot be weakly referenced or patched at run time.

And what makes them fast: a module attribute, global or enum member read on every
workflow is a `Final` module constant, which mypyc reads from a C static (or inlines,
for a literal) instead of looking it up by name. A method of an object mypyc does not
know natively (an asyncio future, the sandbox loop), called on every step, is called
through a `Final` function constant (`_set_result = asyncio.Future.set_result`): by
name, each call is a type lookup. Code generated at run time stays interpreted: a
dataclass on the hot path writes its `__init__` out (`RunRow`), a `NamedTuple` is built
with `tuple.__new__`; and interpreted code calls a compiled constructor by position
(keywords cost it a parse of their names on every call).
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

GROUP = "actorflow"  # the shared module is `actorflow__mypyc`, beside the package
HOT = [
    "actorflow/_actor/_children.py",
    "actorflow/_actor/_control.py",
    "actorflow/_actor/_driver.py",
    "actorflow/_actor/_host.py",
    "actorflow/_actor/_mailbox.py",
    "actorflow/_actor/_operations.py",
    "actorflow/_actor/_ops.py",
    "actorflow/_actor/_state.py",
    "actorflow/_actor/_runners.py",
    "actorflow/_actor/_status.py",
    "actorflow/_actor/_steps.py",
    "actorflow/_actor/_turns.py",
    "actorflow/_asyncio_helpers.py",
    "actorflow/_creation.py",
    "actorflow/_directory.py",
    "actorflow/_ids.py",
    "actorflow/_limiter.py",
    "actorflow/_messages.py",
    "actorflow/_results.py",
    "actorflow/_sandbox.py",
    "actorflow/_serde.py",
    "actorflow/_step_call.py",
    "actorflow/_store/_base.py",
    "actorflow/_store/_group_commit.py",
    "actorflow/_store/_sqlite_events.py",
    "actorflow/_store/_sqlite_writer.py",
    "actorflow/_workflow_context.py",
    "actorflow/_workflow_task.py",
]


def _warn(what: str, error: BaseException) -> None:
    print(f"actorflow: {what} ({error!r}); installing the pure-Python build", file=sys.stderr)


def _remove_leftovers(package: str, suffix: str, built: set[str]) -> list[str]:
    """Delete the extension modules under `package` with this interpreter's `suffix` that
    are not in `built` (this build's outputs), and return their paths. One left by an
    earlier build, when `HOT` still listed its module, would be imported before its
    source and fail: the shared module of this build no longer knows it."""
    removed = []
    for directory, _, files in os.walk(package):
        for name in files:
            path = os.path.abspath(os.path.join(directory, name))
            if name.endswith(suffix) and path not in built:
                os.remove(path)
                removed.append(path)
    return removed


class _OptionalBuildExt(build_ext):
    """A failed compilation leaves the pure-Python package, not a failed install."""

    def run(self) -> None:
        try:
            super().run()
            # A module whose C did not change is not relinked, and keeps an older time than
            # its source just edited: `actorflow._build` would call the new build stale.
            for extension in self.extensions:
                path = self.get_ext_fullpath(extension.name)
                if os.path.exists(path):
                    os.utime(path)
            if self.extensions:
                built = {os.path.abspath(self.get_ext_fullpath(e.name)) for e in self.extensions}
                package = os.path.dirname(self.get_ext_fullpath(f"{GROUP}._build"))
                suffix = self.get_ext_filename("x")[1:]
                for path in _remove_leftovers(package, suffix, built):
                    print(f"actorflow: removed {path}, left by an earlier build", file=sys.stderr)
        except Exception as error:
            _warn("compiling the hot path failed", error)
            # A part of a group is no build: its modules would import the missing rest.
            for extension in self.extensions:
                for path in (
                    self.get_ext_fullpath(extension.name),
                    self.get_ext_filename(extension.name),
                ):
                    if os.path.exists(path):
                        os.remove(path)
            self.extensions = []


def _extensions() -> list:
    if os.environ.get("ACTORFLOW_PURE", "") not in ("", "0") or sys.platform == "win32":
        return []
    try:
        from mypyc.build import mypycify

        # A fixed name for the module the compiled modules share (mypyc names it after a
        # hash of the module list otherwise): an editable install records it, and a
        # rebuild in place after `HOT` changed would leave that record pointing at a
        # module that no longer exists.
        return mypycify(HOT, opt_level="3", multi_file=True, group_name=GROUP)
    except (Exception, SystemExit) as error:  # mypyc exits on a type error
        _warn("mypyc could not compile the hot path", error)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": _OptionalBuildExt})
