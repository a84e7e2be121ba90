#!/usr/bin/env bash
# Runs the PostgreSQL example end to end, starting a local server when DATABASE_URL is unset.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_postgres
cargo run -q -p jobs-examples --example postgres
