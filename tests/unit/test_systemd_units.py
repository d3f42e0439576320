"""deploy/systemd: the units pass `systemd-analyze verify` without a single warning, stay
hardened (`systemd-analyze security`), and the instance template stays in step with the unit."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
MAIN = UNITS / "sip-realtime-gateway.service"
TEMPLATE = UNITS / "sip-realtime-gateway@.service"
INSTALLED = "/opt/sip-realtime-gateway/venv/bin/sip-realtime-gateway"
MAX_EXPOSURE = 2.0  # systemd-analyze security's 0-10 scale; "OK" is below 4

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package systemd; "
    "scripts/install-test-peers.sh installs it)",
)


def _staged(tmp_path: Path, unit: Path, name: str | None = None) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks)."""
    fake = tmp_path / "bin" / "sip-realtime-gateway"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    staged = tmp_path / (name or unit.name)
    staged.write_text(unit.read_text().replace(INSTALLED, str(fake)))
    return staged


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_analyze
@pytest.mark.parametrize(
    ("unit", "name"),
    [
        (MAIN, None),
        (TEMPLATE, None),
        (TEMPLATE, "sip-realtime-gateway@sales.service"),  # an instance of the template
    ],
)
def test_systemd_analyze_verify_passes_without_warnings(
    tmp_path: Path, unit: Path, name: str | None
) -> None:
    staged = _staged(tmp_path, unit, name)
    result = _analyze("verify", "--man=no", str(staged))
    # verify exits 0 on unknown keys or bad values, it only warns: any output is a failure.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        f"systemd-analyze verify {staged.name}:\n{result.stdout}{result.stderr}"
    )


@needs_analyze
def test_verify_would_catch_a_broken_directive(tmp_path: Path) -> None:
    """The check above is not blind: a misspelt hardening value is reported."""
    broken = tmp_path / "broken.service"
    broken.write_text(
        _staged(tmp_path, MAIN).read_text().replace("ProtectHome=yes", "ProtectHome=yess")
    )
    result = _analyze("verify", "--man=no", str(broken))
    assert "ProtectHome" in result.stdout + result.stderr or "protect home" in result.stderr


@needs_analyze
def test_unit_is_hardened(tmp_path: Path) -> None:
    staged = _staged(tmp_path, MAIN)
    result = _analyze("security", "--offline=true", str(staged))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


def _directives(unit: Path) -> list[str]:
    return [
        line for line in unit.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def test_service_contract() -> None:
    lines = set(_directives(MAIN))
    for wanted in (
        "Type=notify",
        "Restart=on-failure",
        "User=sipgw",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert wanted in lines, wanted
    assert any(line.startswith("WatchdogSec=") for line in lines)
    assert any(line.startswith("EnvironmentFile=") for line in lines)


def test_template_is_the_unit_per_instance() -> None:
    """The template differs from the unit only where an instance must: its name in the
    description, its config file, its own secrets file and state directory."""
    expected = [
        line.replace("gateway.yaml", "%i.yaml")
        .replace("voice gateway", "voice gateway (%i)")
        .replace(
            "sip-realtime-gateway sip-realtime-gateway/",
            "sip-realtime-gateway/%i sip-realtime-gateway/%i/",
        )
        .replace("sip-realtime-gateway/transcripts", "sip-realtime-gateway/%i/transcripts")
        for line in _directives(MAIN)
    ]
    env = expected.index("EnvironmentFile=-/etc/sip-realtime-gateway/gateway.env")
    expected.insert(env + 1, "EnvironmentFile=-/etc/sip-realtime-gateway/%i.env")
    assert _directives(TEMPLATE) == expected
