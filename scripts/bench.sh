#!/usr/bin/env bash
# Runs the throughput benchmark against local servers (started like the tests' are).
# Arguments go to the benchmark: --backend pg --jobs N --workers W[,W…] --json PATH
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_postgres
ensure_redis
cargo bench -p jobs --bench throughput -- "$@"
