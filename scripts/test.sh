#!/usr/bin/env bash
# The test command: installs what is missing (Debian packages, the python venv with the
# independent signer), then runs unit tests, integration tests and lints.
#   ./scripts/test.sh            everything
#   ./scripts/test.sh --quick    cargo tests only (no clippy/fmt)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# A throwaway PostgreSQL cluster for the store conformance suite and the two-instance test
# (scripts/pg.sh); stopped and deleted when this script exits, however it exits.
if [ -z "${SAMLGATE_TEST_PG_URL:-}" ]; then
  pgdir=$(mktemp -d /tmp/samlgate-pg.XXXXXX)
  trap './scripts/pg.sh stop "$pgdir"' EXIT
  SAMLGATE_TEST_PG_URL=$(./scripts/pg.sh start "$pgdir")
  export SAMLGATE_TEST_PG_URL
fi
echo "== cargo test" >&2
cargo test --all-targets 2>&1
# The behaviour suites once more with every gateway on PostgreSQL (tests/common: a fresh
# database per gateway). The conformance suite, tests/two_instances.rs and tests/nginx_ha.rs
# (two instances behind nginx) ran on it above.
echo "== cargo test (consent, crash, proxy, sp_initiated, sessions_end) on PostgreSQL" >&2
SAMLGATE_TEST_STORE=pg cargo test --test consent --test crash --test proxy --test sp_initiated --test sessions_end 2>&1
if [ "${1:-}" != "--quick" ]; then
  echo "== cargo fmt --check" >&2
  cargo fmt --check
  echo "== cargo clippy" >&2
  cargo clippy --all-targets -- -D warnings
  echo "== cargo deny (deny.toml)" >&2
  ./scripts/deny.sh
fi
echo "samlgate: all tests passed" >&2
