#!/usr/bin/env bash
# Runs every test on a fresh Debian machine: installs and starts PostgreSQL and Redis when they
# are missing (honouring DATABASE_URL and REDIS_URL when set), and Ruby's Sidekiq for the
# interoperability tests, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_postgres
ensure_redis
ensure_ruby_sidekiq
echo "DATABASE_URL=$(redact "$DATABASE_URL")  REDIS_URL=$(redact "$REDIS_URL")"
cargo test --workspace --locked --no-fail-fast "$@"
