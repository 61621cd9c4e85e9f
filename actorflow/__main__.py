"""Command line: `python -m actorflow demo`."""

from __future__ import annotations

import argparse

from ._runner import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actorflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a few real workflows on embedded SQLite")
    demo.add_argument(
        "--db", default="actorflow-demo.db", help="SQLite file (default: %(default)s)"
    )
    demo.add_argument("--burst", type=int, default=2000, help="size of the throughput burst")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.burst < 0:
            parser.error("--burst must be >= 0")
        from ._demo import demo as run_demo

        run(run_demo(f"sqlite:///{args.db}", args.burst))


if __name__ == "__main__":
    main()
