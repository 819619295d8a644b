#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the gateway with a demo IdP.
# Then open http://127.0.0.1:8080/login in a browser. State lives in ./demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
SAMLGATE_SKIP_VENV=1 SAMLGATE_SKIP_BROWSER=1 SAMLGATE_SKIP_SSP=1 ./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin samlgate
exec ./target/release/samlgate demo --dir demo "$@"
