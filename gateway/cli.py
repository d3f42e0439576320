"""Command line: `run` the daemon, `check-config` a file, `dial` a test call, and print
the `config-reference`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, check_environment, load_config

if TYPE_CHECKING:
    from .dial import DialReport

DEFAULT_CONFIG = "config/gateway.yaml"
DEFAULT_SENTENCE = "Hello, this is a test call from the gateway dialer. One, two, three."


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
    dial = sub.add_parser(
        "dial",
        help="place a test call: play a WAV or spoken text, record what comes back, report",
    )
    dial.add_argument("uri", help="whom to call, e.g. sip:echo@192.0.2.10:5060")
    what = dial.add_mutually_exclusive_group()
    what.add_argument("--wav", type=Path, help="16-bit WAV file to play (any rate, mono)")
    what.add_argument("--say", help="text to speak with espeak-ng (the default is a sentence)")
    dial.add_argument("--record", type=Path, help="write what was heard to this WAV file")
    dial.add_argument("--codec", default="PCMU", choices=["PCMU", "PCMA"])
    dial.add_argument("--listen", type=float, default=5.0, help="seconds to listen after playing")
    dial.add_argument("--max-duration", type=float, default=120.0, help="hang up after (s)")
    dial.add_argument("--answer-timeout", type=float, default=30.0, help="give up after (s)")
    dial.add_argument("--bind", help="local IP address to call from (default: the route's)")
    dial.add_argument("--json", action="store_true", help="print the report as JSON")
    ref = sub.add_parser(
        "config-reference", help="write the config reference (Markdown) from the schema"
    )
    ref.add_argument("--output", "-o", help="file to write (default: standard output)")
    args = parser.parse_args(argv)

    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "dial":
        return _dial(args)
    if args.command == "config-reference":
        return _config_reference(args.output)
    return _run(args.config)


def _dial(args: argparse.Namespace) -> int:
    from .dial import DialError, dial, load_wav, speak

    async def go() -> DialReport:
        audio = load_wav(args.wav) if args.wav else await speak(args.say or DEFAULT_SENTENCE)
        return await dial(
            args.uri,
            audio,
            codec=args.codec,
            listen_s=args.listen,
            max_duration_s=args.max_duration,
            answer_timeout_s=args.answer_timeout,
            bind=args.bind,
            record=args.record,
        )

    try:
        report = asyncio.run(go())
    except (DialError, OSError) as exc:
        print(f"dial: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print("\n".join(report.lines()))
    return 0 if report.answered else 1


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
    _raise_fd_limit()
    gateway = Gateway(cfg)
    try:
        asyncio.run(Service(gateway, path).run())
    except StartupError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    if gateway.failure is not None:
        # Non-zero, so that systemd (Restart=on-failure) starts a gateway that listens again.
        print(f"{path}: the gateway failed: {gateway.failure}", file=sys.stderr)
        return 3
    return 0


def _raise_fd_limit() -> None:
    """Up to the hard limit: each call holds a few descriptors and each SIP/TCP peer one, and
    the soft limit of 1024 would refuse connections long before sip.tcp.max_connections."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass
