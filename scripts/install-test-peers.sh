#!/usr/bin/env bash
# Install the real SIP/RTP peers used by the integration tests (tests/integration):
#   sipp (Debian package sip-tester), baresip (baresip-core), espeak-ng, sox, kamailio and its
#   tls module (kamailio-tls-modules, for deploy/kamailio with WITH_TLS), systemd-analyze (package systemd) to verify the units in deploy/systemd, and strace
#   (tests/integration/test_fuzz_sockets.py traces where the gateway sends), and libopus0 (the
#   gateway's Opus codec loads it through opuslib-next; baresip-core's opus module needs it too), chromium and chromium-driver (the console's
#   tests in a headless browser) and nodejs (the console's scripts checked outside a browser).
#
# Idempotent and fast: when every tool is already present it makes no apt call at all.
# Otherwise it runs `apt-get update` once and installs only what is missing
# (--no-install-recommends), using sudo when not root (and sudo exists).
# Exits non-zero with a clear message if it cannot install something.
#
# Usage: scripts/install-test-peers.sh
set -euo pipefail

BARESIP_MODULE_DIR="${BARESIP_MODULE_PATH:-/usr/lib/baresip/modules}"
# Modules the harness config loads (tests/integration/peers/baresip/config.in).
BARESIP_MODULES=(g711 g722 opus aufile aubridge sndfile account menu)

say() { printf 'install-test-peers: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

baresip_ok() {
    command -v baresip >/dev/null 2>&1 || return 1
    local m
    for m in "${BARESIP_MODULES[@]}"; do
        [[ -f "$BARESIP_MODULE_DIR/$m.so" ]] || return 1
    done
}

# Kamailio's tls.so (in /usr/lib/<triplet>/kamailio/modules on Debian).
kamailio_tls_ok() {
    compgen -G '/usr/lib/*/kamailio/modules/tls.so' >/dev/null \
        || [[ -f /usr/lib/kamailio/modules/tls.so ]]
}

missing_packages() {
    command -v sipp >/dev/null 2>&1 || echo sip-tester
    baresip_ok || echo baresip-core
    command -v espeak-ng >/dev/null 2>&1 || echo espeak-ng
    command -v sox >/dev/null 2>&1 || echo sox
    command -v kamailio >/dev/null 2>&1 || [[ -x /usr/sbin/kamailio ]] || echo kamailio
    kamailio_tls_ok || echo kamailio-tls-modules
    command -v systemd-analyze >/dev/null 2>&1 || echo systemd
    command -v strace >/dev/null 2>&1 || echo strace
    command -v chromium >/dev/null 2>&1 || echo chromium
    command -v chromedriver >/dev/null 2>&1 || echo chromium-driver
    command -v node >/dev/null 2>&1 || echo nodejs
    libopus_ok || echo libopus0
}

libopus_ok() {
    ldconfig -p 2>/dev/null | grep -q 'libopus\.so\.0' \
        || compgen -G '/usr/lib/*/libopus.so.0' >/dev/null
}

mapfile -t MISSING < <(missing_packages)
if [[ ${#MISSING[@]} -eq 0 ]]; then
    say "all test peers present (sipp, baresip, espeak-ng, sox, kamailio with tls, systemd-analyze, strace, chromium, chromedriver, node, libopus0)"
    exit 0
fi

say "missing: ${MISSING[*]}"
command -v apt-get >/dev/null 2>&1 \
    || die "apt-get not found; install these packages by hand: ${MISSING[*]}"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 \
        || die "not root and sudo is not available; as root run: apt-get update && apt-get install -y --no-install-recommends ${MISSING[*]}"
    if [[ -t 0 ]]; then
        SUDO=(sudo)
    else
        SUDO=(sudo -n)   # never hang on a password prompt in CI
    fi
fi

APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120)

"${APT[@]}" update -q \
    || die "apt-get update failed (no network, or no permission?)"
"${APT[@]}" install -y -q --no-install-recommends "${MISSING[@]}" \
    || die "apt-get install failed for: ${MISSING[*]}"

mapfile -t STILL < <(missing_packages)
if [[ ${#STILL[@]} -ne 0 ]]; then
    die "still missing after install: ${STILL[*]} (baresip modules expected in $BARESIP_MODULE_DIR)"
fi
say "installed: ${MISSING[*]}"
