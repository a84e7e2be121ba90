//! Helpers shared by the integration tests: the database, a probe recorder, and waiting.

pub mod servers;

use jobs::Jobs;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The database the test command set up.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/jobs_test".to_owned())
}

/// A small pool for assertions against the tables.
pub async fn pool() -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&database_url())
        .await
        .expect("connect to DATABASE_URL")
}

/// The args of most test workers: which test, and which job of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Probe {
    pub key: String,
    pub n: u64,
}

impl Probe {
    pub fn new(key: &str, n: u64) -> Self {
        Self {
            key: key.to_owned(),
            n,
        }
    }
}

/// One run of a job, as a worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub n: u64,
    pub attempt: u32,
}

static RUNS: Mutex<Option<HashMap<String, Vec<Run>>>> = Mutex::new(None);

/// Records that a worker ran job `n` of test `key` on `attempt`.
pub fn record(key: &str, n: u64, attempt: u32) {
    let mut runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    runs.get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_default()
        .push(Run { n, attempt });
}

/// Every run recorded for test `key`.
pub fn runs(key: &str) -> Vec<Run> {
    let runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    runs.as_ref()
        .and_then(|r| r.get(key).cloned())
        .unwrap_or_default()
}

/// Prints a figure a test measured, past the test harness's output capture (which takes only
/// `print!`/`eprint!`), so it shows in every run of the test command. Use [`report!`].
pub fn report_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `eprintln!` that shows in every run of the test command, not only failing ones.
#[macro_export]
macro_rules! report {
    ($($arg:tt)*) => {
        $crate::report_line(format_args!($($arg)*))
    };
}

/// Polls `check` until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

/// A processor running in the background.
pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<Result<(), jobs::Error>>,
}

impl Running {
    pub fn start(jobs: &Jobs) -> Self {
        let shutdown = CancellationToken::new();
        let runner = jobs.clone();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move { runner.run(token).await });
        Self { shutdown, handle }
    }

    /// Cancels and waits for a clean exit.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("processor task panicked")
            .expect("processor returned an error");
    }
}

/// Removes what earlier runs left in `queue` and its dead letters.
pub async fn purge(pool: &PgPool, queue: &str) {
    // The queue may not exist yet on a fresh database.
    let _ = sqlx::query(&format!("DELETE FROM pgmq.q_{queue}"))
        .execute(pool)
        .await;
    let _ = sqlx::query("DELETE FROM jobs.dead_letters WHERE queue = $1")
        .bind(queue)
        .execute(pool)
        .await;
}

/// How many jobs sit in `queue`, ready or not.
pub async fn queued(pool: &PgPool, queue: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM pgmq.q_{queue}"))
        .fetch_one(pool)
        .await
        .expect("count queue")
}

/// Sends a raw JSON body to `queue`, as a client in another language would.
pub async fn send_raw(pool: &PgPool, queue: &str, body: serde_json::Value) -> i64 {
    sqlx::query_scalar("SELECT pgmq.send($1, $2)")
        .bind(queue)
        .bind(body)
        .fetch_one(pool)
        .await
        .expect("pgmq.send")
}

/// The Redis the test command set up.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The SQLite file of this test process (one per test binary).
pub fn sqlite_url() -> String {
    std::env::var("SQLITE_URL").unwrap_or_else(|_| {
        let path = std::env::temp_dir().join(format!("jobs-tests-{}.db", std::process::id()));
        format!("sqlite://{}", path.display())
    })
}

/// Direct access to one backend's storage, for writing raw jobs and checking what is left.
#[derive(Clone)]
pub enum Store {
    Pg(PgPool),
    Redis(redis::aio::MultiplexedConnection),
    Sqlite(sqlx::SqlitePool),
}

impl Store {
    pub async fn of(kind: jobs::BackendKind) -> Self {
        match kind {
            jobs::BackendKind::Pg => Store::Pg(pool().await),
            jobs::BackendKind::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&sqlite_url())
                    .expect("SQLITE_URL")
                    .create_if_missing(true)
                    .busy_timeout(Duration::from_secs(10));
                Store::Sqlite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(2)
                        .connect_with(options)
                        .await
                        .expect("open the SQLite file"),
                )
            }
            _ => {
                let client = redis::Client::open(redis_url()).expect("REDIS_URL");
                Store::Redis(
                    client
                        .get_multiplexed_async_connection()
                        .await
                        .expect("connect to REDIS_URL"),
                )
            }
        }
    }

    fn redis(&self) -> redis::aio::MultiplexedConnection {
        match self {
            Store::Redis(conn) => conn.clone(),
            _ => unreachable!("not a Redis store"),
        }
    }

    async fn redis_keys(&self, pattern: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut self.redis())
            .await
            .expect("KEYS")
    }

    /// Redis sorted-set entries (schedule, retry, dead) of `queue`.
    async fn zset_entries(&self, set: &str, queue: &str) -> Vec<String> {
        let all: Vec<String> = redis::cmd("ZRANGE")
            .arg(set)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.redis())
            .await
            .expect("ZRANGE");
        all.into_iter()
            .filter(|raw| {
                serde_json::from_str::<serde_json::Value>(raw)
                    .map(|job| job["queue"] == queue)
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Removes what earlier runs left in `queue`: jobs, claims, schedules, dead letters.
    pub async fn purge(&self, queue: &str) {
        match self {
            Store::Pg(pool) => purge(pool, queue).await,
            Store::Sqlite(pool) => {
                // The tables may not exist yet: connect creates them.
                for table in ["jobs_queue", "jobs_dead_letters"] {
                    let _ = sqlx::query(&format!("DELETE FROM {table} WHERE queue = ?1"))
                        .bind(queue)
                        .execute(pool)
                        .await;
                }
            }
            Store::Redis(_) => {
                let mut conn = self.redis();
                let mut keys = self.redis_keys(&format!("jobs:working:*:{queue}")).await;
                keys.push(format!("queue:{queue}"));
                let _: () = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .expect("DEL");
                for set in ["schedule", "retry", "dead"] {
                    let entries = self.zset_entries(set, queue).await;
                    if !entries.is_empty() {
                        let _: () = redis::cmd("ZREM")
                            .arg(set)
                            .arg(&entries)
                            .query_async(&mut conn)
                            .await
                            .expect("ZREM");
                    }
                }
            }
        }
    }

    /// Jobs of `queue` not yet finished: waiting, scheduled, claimed or awaiting a retry.
    pub async fn pending(&self, queue: &str) -> i64 {
        match self {
            Store::Pg(pool) => queued(pool, queue).await,
            Store::Sqlite(pool) => {
                sqlx::query_scalar("SELECT count(*) FROM jobs_queue WHERE queue = ?1")
                    .bind(queue)
                    .fetch_one(pool)
                    .await
                    .expect("count queue")
            }
            Store::Redis(_) => {
                let mut total = self.ready(queue).await;
                for key in self.redis_keys(&format!("jobs:working:*:{queue}")).await {
                    let n: i64 = redis::cmd("LLEN")
                        .arg(&key)
                        .query_async(&mut self.redis())
                        .await
                        .expect("LLEN");
                    total += n;
                }
                for set in ["schedule", "retry"] {
                    total += self.zset_entries(set, queue).await.len() as i64;
                }
                total
            }
        }
    }

    /// Jobs of `queue` that a processor could claim right now.
    pub async fn ready(&self, queue: &str) -> i64 {
        match self {
            Store::Pg(pool) => sqlx::query_scalar(&format!(
                "SELECT count(*) FROM pgmq.q_{queue} WHERE vt <= clock_timestamp()"
            ))
            .fetch_one(pool)
            .await
            .expect("count ready"),
            Store::Sqlite(pool) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                sqlx::query_scalar(
                    "SELECT count(*) FROM jobs_queue WHERE queue = ?1 AND run_at <= ?2",
                )
                .bind(queue)
                .bind(now)
                .fetch_one(pool)
                .await
                .expect("count ready")
            }
            Store::Redis(_) => redis::cmd("LLEN")
                .arg(format!("queue:{queue}"))
                .query_async(&mut self.redis())
                .await
                .expect("LLEN"),
        }
    }

    /// Stores a job for `worker` in the backend's own format, as another client would.
    pub async fn send_job(&self, queue: &str, worker: &str, args: serde_json::Value) {
        match self {
            Store::Pg(pool) => {
                send_raw(
                    pool,
                    queue,
                    serde_json::json!({"worker": worker, "args": args}),
                )
                .await;
            }
            Store::Sqlite(_) => {
                let envelope = serde_json::json!({"worker": worker, "args": args});
                self.insert_sqlite(queue, Some(envelope.to_string())).await;
            }
            Store::Redis(_) => {
                let job = serde_json::json!({
                    "class": worker, "args": [args], "queue": queue, "retry": true,
                    "jid": format!("{:024x}", rand_id()), "created_at": 1.7e9, "enqueued_at": 1.7e9,
                });
                self.push_raw(queue, &job.to_string()).await;
            }
        }
    }

    /// Inserts a row as it is into the SQLite jobs table (text or, for bytes, a BLOB).
    async fn insert_sqlite<T>(&self, queue: &str, payload: Option<T>)
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send,
    {
        let Store::Sqlite(pool) = self else {
            unreachable!("not an SQLite store")
        };
        sqlx::query(
            "INSERT INTO jobs_queue (queue, payload, run_at, enqueued_at) VALUES (?1, ?2, 0, 0)",
        )
        .bind(queue)
        .bind(payload)
        .execute(pool)
        .await
        .expect("insert");
    }

    /// Pushes bytes as they are onto a Redis queue list.
    pub async fn push_raw(&self, queue: &str, raw: impl redis::ToRedisArgs + Send + Sync) {
        let _: () = redis::cmd("LPUSH")
            .arg(format!("queue:{queue}"))
            .arg(raw)
            .query_async(&mut self.redis())
            .await
            .expect("LPUSH");
    }

    /// Stores hostile jobs straight into the backend's storage: random bytes, truncated JSON,
    /// JSON of the wrong shape, an empty body, and a job of `worker` over 2 MiB (each where the
    /// storage can hold it: a Postgres `jsonb` column refuses what is not JSON). Returns how many.
    pub async fn send_poison(&self, queue: &str, worker: &str) -> usize {
        let huge =
            serde_json::json!({"worker": worker, "args": {"key": "x".repeat(3 << 20), "n": 1}});
        let random: Vec<u8> = (0..4096).map(|_| fastrand::u8(..)).collect();
        match self {
            Store::Pg(pool) => {
                send_raw(pool, queue, serde_json::json!("just a string")).await;
                send_raw(pool, queue, serde_json::json!([1, 2, 3])).await;
                send_raw(pool, queue, serde_json::json!({"args": {"n": 1}})).await;
                send_raw(pool, queue, serde_json::json!({"worker": 42, "args": {}})).await;
                send_raw(pool, queue, huge).await;
                sqlx::query(&format!("SELECT pgmq.send('{queue}', NULL::jsonb)"))
                    .execute(pool)
                    .await
                    .expect("send NULL");
                6
            }
            Store::Sqlite(_) => {
                for payload in [
                    Some("not json at all".to_owned()),
                    Some("{\"worker\": \"Trunc".to_owned()),
                    Some("\"just a string\"".to_owned()),
                    Some("{\"args\": 1}".to_owned()),
                    Some(huge.to_string()),
                    None,
                ] {
                    self.insert_sqlite(queue, payload).await;
                }
                self.insert_sqlite(queue, Some(random)).await;
                7
            }
            Store::Redis(_) => {
                for raw in [
                    "not json at all",
                    "{\"class\": \"Trunc",
                    "[1, 2, 3]",
                    "{\"args\": [1]}",
                ] {
                    self.push_raw(queue, raw).await;
                }
                self.push_raw(queue, &b"\xff\xfe not UTF-8"[..]).await;
                self.push_raw(queue, random).await;
                let huge = serde_json::json!({
                    "class": worker, "args": [huge["args"]], "queue": queue,
                    "jid": format!("{:024x}", rand_id()), "created_at": 1.7e9,
                });
                self.push_raw(queue, huge.to_string()).await;
                7
            }
        }
    }
}

fn rand_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    u128::from(hasher.finish())
}
