"""The compiled hot path (setup.py, actorflow._build): the build that runs is the one
installed, the sources run when asked or when the build is stale, and both run workflows."""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from actorflow import _build

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
PURE = os.environ.get("ACTORFLOW_PURE", "") not in ("", "0")

# A 3-step workflow in a fresh process: which files its hot modules came from, and its result.
PROGRAM = """
import json, sys, tempfile, warnings
warnings.simplefilter("always")
import actorflow as af
from actorflow import _build
import actorflow._actor._turns as turns

@af.step
async def add_one(x: int) -> int:
    return x + 1

@af.workflow
async def chain(x: int) -> int:
    for _ in range(3):
        x = await add_one(x)
    return x

async def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        async with af.Engine(f"sqlite:///{directory}/build.db", workflows=[chain]) as engine:
            run = await engine.start(chain, 1)
            return await run.result(timeout=30)

result = af.run(main())
print(json.dumps({"compiled": _build.COMPILED, "turns": turns.__file__, "result": result}))
"""


def hot_modules() -> list[str]:
    """setup.py's HOT list, as module names."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "HOT":
            paths = ast.literal_eval(node.value)
            return [p.removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no HOT list")


def run_program(cwd: Path, **env: str) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_the_hot_path_runs_the_build_that_was_installed() -> None:
    # CI installs with a compiler: a build that silently fell back to the sources fails
    # here, unless ACTORFLOW_PURE=1 asked for them.
    modules = [importlib.import_module(name) for name in hot_modules()]
    files = {m.__name__: m.__file__ or "" for m in modules}
    assert _build.COMPILED is not PURE
    if PURE:
        assert all(f.endswith(".py") for f in files.values()), files
    else:
        assert all(f.endswith(SUFFIX) for f in files.values()), files
        # The module they share has a fixed name, whatever HOT lists: an editable
        # install's record of it stays right when a rebuild in place adds a module.
        shared = importlib.import_module("actorflow__mypyc")
        assert (shared.__file__ or "").endswith("actorflow__mypyc" + SUFFIX)


def test_the_sources_run_when_asked() -> None:
    out, _ = run_program(ROOT, ACTORFLOW_PURE="1")
    assert out == {
        "compiled": False,
        "turns": str(ROOT / "actorflow" / "_actor" / "_turns.py"),
        "result": 4,
    }


def test_a_stale_build_runs_the_sources_and_says_how_to_rebuild(tmp_path: Path) -> None:
    # A copy of the package with its build, where one compiled module's source is then
    # edited: the old build must not run code that is no longer in the file.
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "actorflow", tmp_path / "actorflow", ignore=ignore)
    shutil.copy2(ROOT / ("actorflow__mypyc" + SUFFIX), tmp_path)
    out, _ = run_program(tmp_path, ACTORFLOW_PURE="0")
    assert out["compiled"] is True and out["result"] == 4
    built = (tmp_path / "actorflow" / ("_directory" + SUFFIX)).stat().st_mtime
    os.utime(tmp_path / "actorflow" / "_directory.py", (built + 10, built + 10))
    out, stderr = run_program(tmp_path, ACTORFLOW_PURE="0")
    assert out == {
        "compiled": False,
        "turns": str(tmp_path / "actorflow" / "_actor" / "_turns.py"),
        "result": 4,
    }
    assert "compiled build is older than actorflow/_directory.py" in stderr
    assert "pip install -e ." in stderr


def test_a_build_removes_the_extension_modules_an_earlier_build_left(tmp_path: Path) -> None:
    # setup.py's own function (setup.py cannot be imported: it builds), run on a tree with
    # this build's outputs, one left by a build whose HOT list still had its module, and
    # another interpreter's build, which stays.
    tree = ast.parse((ROOT / "setup.py").read_text())
    (function,) = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "_remove_leftovers"
    ]
    namespace: dict[str, object] = {"os": os}
    exec(compile(ast.Module([function], []), "setup.py", "exec"), namespace)
    remove_leftovers = namespace["_remove_leftovers"]
    package = tmp_path / "actorflow"
    (package / "_actor").mkdir(parents=True)
    built = {package / ("_directory" + SUFFIX), package / "_actor" / ("_turns" + SUFFIX)}
    left = package / ("_limiter" + SUFFIX)
    other_python = package / "_limiter.cpython-399-x86_64-linux-gnu.so"
    kept = [*built, other_python, package / "_limiter.py", package / "_directory.py"]
    for path in [*kept, left]:
        path.write_bytes(b"")
    removed = remove_leftovers(str(package), SUFFIX, {str(p) for p in built})  # type: ignore[operator]
    assert removed == [str(left)]
    assert not left.exists()
    assert all(path.exists() for path in kept)
