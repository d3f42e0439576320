"""Command line: `run` the daemon, `check-config` a file."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .config import ConfigError, check_environment, load_config

DEFAULT_CONFIG = "config/gateway.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="SIP gateway that bridges phone calls to a GPT Realtime voice model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway in the foreground until SIGINT/SIGTERM")
    run.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    check = sub.add_parser("check-config", help="validate a config file and its environment")
    check.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    args = parser.parse_args(argv)

    if args.command == "check-config":
        return _check_config(args.config)
    return _run(args.config)


def _check_config(path: str) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    problems = check_environment(cfg)
    if problems:
        for line in problems:
            print(f"{path}: {line}", file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


def _run(path: str) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from .app import Gateway, StartupError
    from .observability import setup_logging

    setup_logging(cfg.logging)
    try:
        asyncio.run(Gateway(cfg).run_until_signalled())
    except StartupError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
