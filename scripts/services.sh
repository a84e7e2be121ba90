# Sourced by the scripts that need the servers: defines ensure_postgres and ensure_redis, which
# install (apt) and start PostgreSQL and Redis unless DATABASE_URL / REDIS_URL point elsewhere.

redact() { sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#' <<<"$1"; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "need root to install $*; or set DATABASE_URL / REDIS_URL to running servers" >&2
    return 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then return 0; fi
  command -v pg_lsclusters >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
    || apt_install postgresql
  local version
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
  pg_lsclusters -h | grep -q "^$version main .* online" || pg_ctlcluster "$version" main start
  local port
  port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')
  for _ in $(seq 1 30); do
    runuser -u postgres -- pg_isready -q -p "$port" && break
    sleep 1
  done
  runuser -u postgres -- psql -q -p "$port" -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
  runuser -u postgres -- psql -q -p "$port" -tc "SELECT 1 FROM pg_database WHERE datname = 'jobs_test'" \
    | grep -q 1 || runuser -u postgres -- createdb -p "$port" jobs_test
  export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$port/jobs_test"
}

ensure_redis() {
  if [ -n "${REDIS_URL:-}" ]; then return 0; fi
  command -v redis-server >/dev/null || apt_install redis-server
  if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --save '' --appendonly no >/dev/null
    for _ in $(seq 1 30); do
      redis-cli -p 6379 ping >/dev/null 2>&1 && break
      sleep 0.2
    done
  fi
  export REDIS_URL="redis://127.0.0.1:6379"
}

ensure_ruby_sidekiq() {
  ruby -e 'require "sidekiq"' >/dev/null 2>&1 || apt_install ruby-sidekiq
}
