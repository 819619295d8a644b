#!/usr/bin/env bash
# One-time setup for the samlgate benchmarks:
#  - a private copy of the peers harness (../shared/peers beside the repository) with its venv and Debian packages
#    (wrk, xmlsec1, ...), in $BENCH_WORK (default /tmp/samlgate-bench)
#  - criterion fixtures in bench/fixtures/: one Response per signature layout, signed by the
#    peers' gen_responses.py (signxml, the fixed test IdP key), for samlgate's bench SP identity.
# After this, `cargo bench --bench acs` needs no network.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
peers_copy

FX="$BENCH_DIR/fixtures"
mkdir -p "$FX"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for s in response assertion both; do
    "$PY" "$PEERS/gen_responses.py" --sp-entity "$SG_ENTITY" --acs "$SG_ACS" --count 1 \
        --sign "$s" --nameid GM0012345 --self-check --out "$tmp/$s/" >&2
    cp "$tmp/$s/000000.xml" "$FX/$s.xml"
done
cp "$PEERS/idp/idp-metadata.xml" "$FX/idp-metadata.xml"
{
    echo "sp_entity=$SG_ENTITY"
    echo "acs=$SG_ACS"
    echo "generated=$(date -u +%Y-%m-%dT%H:%M:%SZ) by gen_responses.py (signxml), IdP key $PEERS_SRC/idp/idp.key"
} > "$FX/params"
ls -l "$FX" >&2
blog "fixtures ready; run: cargo bench --bench acs"
