"""Command line: ``python -m devstack up [--no-sample]``."""

from __future__ import annotations

import argparse

from devstack.stack import up


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser(
        "up", help="run Redis, the local room, web, worker and flower; push a sample clip"
    )
    up_parser.add_argument(
        "--no-sample", action="store_true", help="do not generate or push the sample clip"
    )
    args = parser.parse_args(argv)
    return up(sample=not args.no_sample)


if __name__ == "__main__":
    raise SystemExit(main())
