"""Command line: `run` the daemon, `check-config` a file, print the `config-reference`."""

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
    run = sub.add_parser(
        "run", help="run the gateway in the foreground: SIGTERM/Ctrl-C drains, SIGHUP reloads"
    )
    run.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    check = sub.add_parser("check-config", help="validate a config file and its environment")
    check.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    ref = sub.add_parser(
        "config-reference", help="write the config reference (Markdown) from the schema"
    )
    ref.add_argument("--output", "-o", help="file to write (default: standard output)")
    args = parser.parse_args(argv)

    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "config-reference":
        return _config_reference(args.output)
    return _run(args.config)


def _config_reference(output: str | None) -> int:
    from .config_reference import render

    text = render()
    if output is None:
        sys.stdout.write(text)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


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
    from .lifecycle import Service
    from .observability import setup_logging

    setup_logging(cfg.logging)
    try:
        asyncio.run(Service(Gateway(cfg), path).run())
    except StartupError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
