#!/usr/bin/env python3
"""Mutation testing on demand: how many planted bugs the unit tests guarding a module catch.

Not part of CI (a module takes minutes on two cores). For each module in `MODULES` this copies
the working tree (tracked and untracked, not ignored files) to a scratch directory, writes a
[tool.mutmut] section that mutates only that module and runs only its guarding test files,
runs `mutmut run` under `nice -n 19`, and reads the verdicts back with `mutmut results`.

Why a scratch copy per module: mutmut reads its settings from ./pyproject.toml and writes the
mutated tree to ./mutants; a copy keeps the checkout clean and lets each module have its own
test selection.

Two corrections to mutmut's defaults, both for code that runs at import (g711's tables, constants
built by functions): forkserver isolation with no warm-up, so the module is
imported after the mutant is chosen (with fork it is imported once, unmutated); and every mutant
runs every guarding test file (`_mutmut_all_tests`), because mutmut otherwise runs only the tests
it saw calling the function, and an import-time call is credited to whichever test imported the
module first, so the tests that check the tables would never see those mutants.

A mutant whose test run ends in an exception outside pytest (mutmut's exit code 255, which
`mutmut results` calls "timeout") is counted as "crashed": the tests did not pass, so caught.

Mutants judged equivalent or harmless are listed with a reason in `tests/mutation-equivalent.md`
(lines ``- `NAME`: reason``) and counted apart. Score = (killed + timeout) / (all - equivalent):
a timeout is a mutant that made the guarding tests hang (an endless loop), i.e. one caught.
Mutant names are numbered per function by mutmut: after an edit to a function, check that its
allow-listed names still point at the mutants the reasons describe (`mutmut show NAME` in a
copy kept with --keep).

    scripts/mutation.py                    # every module, one after the other
    scripts/mutation.py --module jitter    # one (a key of MODULES or a path)
    scripts/mutation.py --json out.json    # also write the report as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOW_LIST = ROOT / "tests" / "mutation-equivalent.md"

# module key -> (source file, the fast unit test files that guard it)
# (a listed test file that does not exist yet is skipped)
MODULES: dict[str, tuple[str, list[str]]] = {
    "g711": (
        "gateway/media/g711.py",
        ["tests/unit/test_g711.py", "tests/unit/test_g711_contract.py"],
    ),
    "jitter": (
        "gateway/media/jitter.py",
        ["tests/unit/test_jitter.py", "tests/unit/test_jitter_edges.py"],
    ),
    "transactions": (
        "gateway/sip/transactions.py",
        [
            "tests/unit/test_session_refresh.py",
            "tests/unit/test_sip_parse.py",
            "tests/unit/test_sip_transaction_table.py",
            "tests/unit/test_sip_transaction_keys.py",
        ],
    ),
    "digest": (
        "gateway/sip/digest.py",
        ["tests/unit/test_digest.py", "tests/unit/test_digest_edges.py"],
    ),
    "validate": (
        "gateway/sip/validate.py",
        ["tests/unit/test_sip_parse.py", "tests/unit/test_sip_request_checks.py"],
    ),
    "door": (
        "gateway/sip/door.py",
        ["tests/unit/test_sip_parse.py", "tests/unit/test_sdp.py", "tests/unit/test_sip_door.py"],
    ),
    "addresses": (
        "gateway/sip/addresses.py",
        ["tests/unit/test_sip_parse.py", "tests/unit/test_sip_addresses.py"],
    ),
    "protocol": (
        "gateway/realtime/protocol.py",
        ["tests/unit/test_protocol.py", "tests/unit/test_protocol_events.py"],
    ),
    "playback": (
        "gateway/bridge/playback.py",
        [
            "tests/unit/test_playback.py",
            "tests/unit/test_playback_accounting.py",
            "tests/unit/test_playback_paths.py",
        ],
    ),
    "ending": (
        "gateway/bridge/ending.py",
        [
            "tests/unit/test_call_core.py",
            "tests/unit/test_call_guards.py",
            "tests/unit/test_actions.py",
        ],
    ),
    "guards": (
        "gateway/bridge/guards.py",
        ["tests/unit/test_guards.py", "tests/unit/test_call_guards.py"],
    ),
    "core": (
        "gateway/bridge/core.py",
        [
            "tests/unit/test_call_core.py",
            "tests/unit/test_call_core_paths.py",
            "tests/unit/test_call_guards.py",
        ],
    ),
    "receiver": (
        "gateway/media/receiver.py",
        ["tests/unit/test_rtp_receiver.py", "tests/unit/test_rtp_receiver_paths.py"],
    ),
    "turns": (
        "gateway/realtime/turns.py",
        ["tests/unit/test_link.py", "tests/unit/test_session_turns.py"],
    ),
    "conversation": (
        "gateway/realtime/conversation.py",
        [
            "tests/unit/test_conversation.py",
            "tests/unit/test_conversation_edges.py",
            "tests/unit/test_call_core.py",
        ],
    ),
}

# mutmut's exit codes (mutmut/stats.py); anything else is "suspicious"
_STATUS = {0: "survived", 1: "killed", 3: "killed", 255: "crashed", 33: "no tests", 34: "skipped"}
_STATUS |= dict.fromkeys((24, -24, 36, 152), "timeout")
_STATUS |= dict.fromkeys((-9, -11), "segfault")
_STATUS[37] = "caught by type check"
_ALLOW_LINE = re.compile(r"^\s*[-*]\s*`([^`]+__mutmut_\d+)`\s*[:—-]\s*(.+)$")


@dataclass
class ModuleReport:
    module: str
    source: str
    tests: list[str]
    seconds: float = 0.0
    total: int = 0
    killed: int = 0
    crashed: int = 0
    timeout: int = 0
    survived: int = 0
    equivalent: int = 0
    other: dict[str, int] = field(default_factory=dict)
    score: float = 0.0
    survivors: dict[str, str] = field(default_factory=dict)  # name -> diff (unexplained)
    stale_allow: list[str] = field(default_factory=list)  # allow-listed but killed now
    rerun: int = 0  # with --rerun: the earlier survivors run again (the rest kept)


def read_allow_list(path: Path = ALLOW_LIST) -> dict[str, str]:
    """Mutant name -> why it is equivalent or harmless."""
    if not path.exists():
        return {}
    allowed = {}
    for line in path.read_text().splitlines():
        m = _ALLOW_LINE.match(line)
        if m:
            allowed[m.group(1)] = m.group(2).strip()
    return allowed


def scratch_copy(dest: Path, *, ref: str | None = None) -> None:
    """The working tree as it is (new test files included), without ignored files; or the
    commit ``ref`` (to measure "before" while new tests are being written)."""
    if ref:
        archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "x", "-C", str(dest)], input=archive.stdout, check=True)
        return
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def mutmut_section(source: str, tests: list[str], timeout_s: float) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["gateway"]\n'
        f"only_mutate = {toml_list([source])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
        'process_isolation = "forkserver"\n'
        'forkserver_warmup = "none"\n'
        f"timeout_constant = {timeout_s}\n"
        # CPU limit (test time + constant) * multiplier * 2, wall limit half of it: a mutant
        # that makes the tests loop costs about 30 s, not mutmut's default minutes.
        "timeout_multiplier = 4.0\n"
        "use_git_change_detection = false\n"
    )


def run_module(
    key: str,
    *,
    children: int,
    timeout_s: float,
    allowed: dict[str, str],
    keep: bool,
    ref: str | None = None,
    previous: dict | None = None,
) -> ModuleReport:
    """Mutate one module; with ``previous`` (its entry in an earlier JSON report), re-run only
    that report's survivors and keep its other verdicts (valid when tests were only added)."""
    source, tests = MODULES[key]
    tmp = Path(tempfile.mkdtemp(prefix=f"mutation-{key}-"))
    scratch_copy(tmp, ref=ref)
    tests = [t for t in tests if (tmp / t).exists()]
    report = ModuleReport(module=key, source=source, tests=tests)
    mutmut = Path(sys.executable).with_name("mutmut")
    env = dict(os.environ, PATH=f"{mutmut.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        pyproject = tmp / "pyproject.toml"
        pyproject.write_text(pyproject.read_text() + mutmut_section(source, tests, timeout_s))
        started = time.monotonic()
        subprocess.run(
            [
                *("nice", "-n", "19", sys.executable, str(Path(__file__).resolve())),
                *("--_mutmut-all-tests", "run", "--max-children", str(children)),
                *(previous["survivors"] if previous else ()),
            ],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        report.seconds = round(time.monotonic() - started, 1)
        meta = json.loads((tmp / "mutants" / (source + ".meta")).read_text())
        verdicts = meta["exit_code_by_key"]
        if previous:
            verdicts = {name: verdicts.get(name) for name in previous["survivors"]}
            report.total = previous["total"] - len(verdicts)
            report.killed, report.crashed = previous["killed"], previous["crashed"]
            report.timeout, report.other = previous["timeout"], dict(previous["other"])
            report.equivalent = previous["equivalent"]
            report.rerun = len(verdicts)
        for name, code in sorted(verdicts.items(), key=_natural):
            status = _STATUS.get(code, "suspicious") if code is not None else "not checked"
            report.total += 1
            if status in ("killed", "crashed", "timeout"):
                setattr(report, status, getattr(report, status) + 1)
                if name in allowed:
                    report.stale_allow.append(name)
            elif status == "survived" and name in allowed:
                report.equivalent += 1
            elif status == "survived":
                report.survived += 1
                diff = subprocess.run(
                    [str(mutmut), "show", name],
                    cwd=tmp,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                report.survivors[name] = _diff_summary(diff)
            else:
                report.other[status] = report.other.get(status, 0) + 1
        judged = report.total - report.equivalent
        caught = report.killed + report.crashed + report.timeout
        report.score = round(100.0 * caught / judged, 1) if judged else 0.0
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def _natural(item: tuple[str, object]) -> tuple[str, int]:
    base, _, number = item[0].rpartition("_")
    return base, int(number) if number.isdigit() else 0


def _mutmut_all_tests(argv: list[str]) -> None:
    """mutmut's CLI, with every mutant given every selected test (see the module docstring)."""
    import mutmut.__main__ as mm
    from mutmut.state import state

    class AllTests(dict):
        def get(self, key, default=None):  # type: ignore[override]
            return set(state().duration_by_test)

        def __getitem__(self, key):  # type: ignore[override]
            return set(state().duration_by_test)

    collect = mm.collect_or_load_stats

    def collect_then_widen(*args, **kwargs):  # type: ignore[no-untyped-def]
        collect(*args, **kwargs)
        st = state()
        st.tests_by_mangled_function_name = AllTests(st.tests_by_mangled_function_name)

    mm.collect_or_load_stats = collect_then_widen
    mm.cli(argv, standalone_mode=True)


def _diff_summary(diff: str) -> str:
    """The changed lines of a mutant's diff (the +/- lines, not the headers)."""
    lines = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    return "\n".join(lines[:6])


def print_table(reports: list[ModuleReport]) -> None:
    head = f"{'module':<14}{'mutants':>8}{'killed':>8}{'crashed':>8}{'timeout':>8}{'survived':>9}"
    head += f"{'equiv':>7}{'other':>7}{'score':>8}{'secs':>8}"
    print(head)
    for r in reports:
        print(
            f"{r.module:<14}{r.total:>8}{r.killed:>8}{r.crashed:>8}{r.timeout:>8}{r.survived:>9}"
            f"{r.equivalent:>7}{sum(r.other.values()):>7}{r.score:>7.1f}%{r.seconds:>8.0f}"
        )
    for r in reports:
        for name, diff in r.survivors.items():
            print(f"\nSURVIVED {name}\n{diff}")
        for name in r.stale_allow:
            print(f"\nALLOW-LISTED BUT KILLED (remove from the list): {name}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_mutmut-all-tests"]:
        _mutmut_all_tests(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="a key of MODULES or its source path")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutants (<= 2)")
    parser.add_argument("--timeout", type=float, default=5.0, help="mutmut timeout_constant, s")
    parser.add_argument("--json", type=Path, help="write the report here as JSON too")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument(
        "--rerun",
        type=Path,
        help="an earlier --json report: run only its survivors again, keep its other verdicts",
    )
    parser.add_argument("--ref", help="test this commit (e.g. HEAD), not the working tree")
    args = parser.parse_args(argv)
    by_path = {src: key for key, (src, _) in MODULES.items()}
    keys = [by_path.get(m, m) for m in (args.module or list(MODULES))]
    unknown = [k for k in keys if k not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    if not Path(sys.executable).with_name("mutmut").exists():
        # Without it every module would "fail" with a missing mutants/ directory.
        parser.error("mutmut is not installed in this venv: pip install -e '.[mutation]'")
    allowed = read_allow_list()
    earlier = {r["module"]: r for r in json.loads(args.rerun.read_text())} if args.rerun else {}
    if args.rerun and not args.module:
        keys = [k for k in keys if k in earlier]
    reports = []
    for key in keys:
        print(f"mutating {MODULES[key][0]} ...", file=sys.stderr, flush=True)
        reports.append(
            run_module(
                key,
                children=args.max_children,
                timeout_s=args.timeout,
                allowed=allowed,
                keep=args.keep,
                ref=args.ref,
                previous=earlier.get(key),
            )
        )
        if args.json:  # after each module: a long run stopped half-way keeps what it measured
            args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    print_table(reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
