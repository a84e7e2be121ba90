//! Throughput of the engine against the raw backend ceiling, measured in the same run.
//!
//! `cargo bench -p jobs --bench throughput -- [--backend pg|sidekiq|sqlite|all] [--jobs N]
//!  [--workers W[,W…]] [--backlog N] [--json PATH]`
//!
//! With `--backlog N` it only drains a backlog of N queued no-op jobs per worker count and
//! reports jobs/s and the peak resident memory of this process (the processor) while draining.
//!
//! For each worker count (1, 8, 64 and 256 unless `--workers` is given) it enqueues N no-op jobs,
//! times a processor with that many worker slots until all are acked, then times a bare loop
//! moving N messages over as many tasks: pgmq `read_batch` of 100 + `delete_batch` for Postgres,
//! `BRPOP` + JSON parse for Redis (SQLite reports jobs/s only). It also compares enqueue, single and batched, with raw
//! `send` / `send_batch` (Postgres) and `LPUSH` (Redis). Needs DATABASE_URL and REDIS_URL
//! (scripts/bench.sh starts local servers).

use jobs::{worker, BackendKind, Jobs, Pg, Sidekiq, Sqlite};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PG_QUEUE: &str = "bench_pg";
const REDIS_QUEUE: &str = "bench_redis";
const SQLITE_QUEUE: &str = "bench_sqlite";
const POOL_SIZE: u32 = 16;
const SEND_CHUNK: usize = 1000;

static DONE: AtomicU64 = AtomicU64::new(0);

#[derive(serde::Serialize, serde::Deserialize)]
struct Noop {
    n: u64,
}

#[worker(enqueuer = Pg, queue = "bench_pg")]
async fn bench_noop(_args: Noop) -> anyhow::Result<()> {
    DONE.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[worker(enqueuer = Sqlite, queue = "bench_sqlite")]
async fn bench_noop_sqlite(_args: Noop) -> anyhow::Result<()> {
    DONE.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[worker(enqueuer = Sidekiq, queue = "bench_redis")]
async fn bench_noop_redis(_args: Noop) -> anyhow::Result<()> {
    DONE.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

struct Options {
    backends: Vec<BackendKind>,
    jobs: u64,
    workers: Vec<usize>,
    backlog: Option<u64>,
    json: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        backends: vec![BackendKind::Pg, BackendKind::Sidekiq, BackendKind::Sqlite],
        jobs: 20_000,
        workers: vec![1, 8, 64, 256],
        backlog: None,
        json: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--backend" => {
                options.backends = match value()?.as_str() {
                    "pg" => vec![BackendKind::Pg],
                    "sidekiq" | "redis" => vec![BackendKind::Sidekiq],
                    "sqlite" => vec![BackendKind::Sqlite],
                    "all" => vec![BackendKind::Pg, BackendKind::Sidekiq, BackendKind::Sqlite],
                    other => anyhow::bail!("unknown backend {other:?}: pg, sidekiq, sqlite or all"),
                }
            }
            "--jobs" => options.jobs = value()?.parse()?,
            "--workers" => {
                options.workers = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--backlog" => options.backlog = Some(value()?.parse()?),
            "--json" => options.json = Some(value()?),
            // cargo bench passes --bench; other harness flags do not apply here.
            other if other.starts_with("--") => {}
            other => anyhow::bail!("unexpected argument {other:?}"),
        }
    }
    Ok(options)
}

#[derive(Serialize)]
struct Row {
    backend: &'static str,
    measurement: &'static str,
    workers: usize,
    jobs: u64,
    jobs_per_sec: f64,
    baseline: &'static str,
    /// `None` where no raw ceiling is measured (SQLite).
    baseline_jobs_per_sec: Option<f64>,
    ratio: Option<f64>,
    /// Peak resident memory while draining, in MiB (backlog rows).
    peak_rss_mib: Option<f64>,
}

/// Peak resident memory of this process so far (`VmHWM`), in MiB.
fn peak_rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(kib / 1024.0)
}

/// Starts a new peak: `VmHWM` restarts from the current resident size.
fn reset_peak_rss() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")?;
    Ok(())
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// Direct access to one backend's queue, for filling it and for the raw baseline.
enum Target {
    Pg(PgPool),
    Redis(redis::Client),
    Sqlite(sqlx::SqlitePool),
}

fn noops(range: std::ops::Range<u64>, kind: BackendKind) -> Vec<serde_json::Value> {
    range
        .map(|n| match kind {
            BackendKind::Pg => serde_json::json!({"worker": "BenchNoop", "args": {"n": n}}),
            BackendKind::Sqlite => {
                serde_json::json!({"worker": "BenchNoopSqlite", "args": {"n": n}})
            }
            _ => serde_json::json!({
                "class": "BenchNoopRedis", "args": [{"n": n}], "queue": REDIS_QUEUE, "retry": true,
                "jid": format!("{n:024x}"), "created_at": 1.7e9, "enqueued_at": 1.7e9,
            }),
        })
        .collect()
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Pg(_) => "pg",
            Target::Redis(_) => "sidekiq",
            Target::Sqlite(_) => "sqlite",
        }
    }

    fn kind(&self) -> BackendKind {
        match self {
            Target::Pg(_) => BackendKind::Pg,
            Target::Redis(_) => BackendKind::Sidekiq,
            Target::Sqlite(_) => BackendKind::Sqlite,
        }
    }

    async fn redis(client: &redis::Client) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(client.get_multiplexed_async_connection().await?)
    }

    async fn purge(&self) -> anyhow::Result<()> {
        match self {
            Target::Pg(pool) => {
                sqlx::query(&format!("TRUNCATE pgmq.q_{PG_QUEUE}"))
                    .execute(pool)
                    .await?;
            }
            Target::Sqlite(pool) => {
                sqlx::query("DELETE FROM jobs_queue WHERE queue = ?1")
                    .bind(SQLITE_QUEUE)
                    .execute(pool)
                    .await?;
            }
            Target::Redis(client) => {
                let mut conn = Self::redis(client).await?;
                let _: () = redis::cmd("DEL")
                    .arg(format!("queue:{REDIS_QUEUE}"))
                    .query_async(&mut conn)
                    .await?;
            }
        }
        Ok(())
    }

    async fn remaining(&self) -> anyhow::Result<i64> {
        Ok(match self {
            Target::Pg(pool) => {
                sqlx::query_scalar(&format!("SELECT count(*) FROM pgmq.q_{PG_QUEUE}"))
                    .fetch_one(pool)
                    .await?
            }
            Target::Sqlite(pool) => {
                sqlx::query_scalar("SELECT count(*) FROM jobs_queue WHERE queue = ?1")
                    .bind(SQLITE_QUEUE)
                    .fetch_one(pool)
                    .await?
            }
            Target::Redis(client) => {
                let mut conn = Self::redis(client).await?;
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("jobs:working:*:{REDIS_QUEUE}"))
                    .query_async(&mut conn)
                    .await?;
                let mut pipe = redis::pipe();
                pipe.cmd("LLEN").arg(format!("queue:{REDIS_QUEUE}"));
                for key in &keys {
                    pipe.cmd("LLEN").arg(key);
                }
                let lens: Vec<i64> = pipe.query_async(&mut conn).await?;
                lens.iter().sum()
            }
        })
    }

    /// Stores `jobs` no-op jobs the raw way, in batches made as they are sent.
    async fn fill(&self, jobs: u64) -> anyhow::Result<()> {
        let kind = self.kind();
        let chunks = (0..jobs)
            .step_by(SEND_CHUNK)
            .map(move |start| noops(start..jobs.min(start + SEND_CHUNK as u64), kind));
        match self {
            Target::Pg(pool) => {
                let pgmq = pgmq::PGMQueueExt::new_with_pool(pool.clone()).await;
                for chunk in chunks {
                    pgmq.send_batch(PG_QUEUE, &chunk).await?;
                }
            }
            Target::Sqlite(pool) => {
                for chunk in chunks {
                    let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                        "INSERT INTO jobs_queue (queue, payload, run_at, enqueued_at) ",
                    );
                    query.push_values(&chunk, |mut row, body| {
                        row.push_bind(SQLITE_QUEUE)
                            .push_bind(body.to_string())
                            .push_bind(0)
                            .push_bind(0);
                    });
                    query.build().execute(pool).await?;
                }
            }
            Target::Redis(client) => {
                let mut conn = Self::redis(client).await?;
                for chunk in chunks {
                    let bodies: Vec<String> = chunk.iter().map(ToString::to_string).collect();
                    let _: () = redis::cmd("LPUSH")
                        .arg(format!("queue:{REDIS_QUEUE}"))
                        .arg(bodies)
                        .query_async(&mut conn)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The bare loop: read and delete in batches of 100 (pgmq), or BRPOP and parse (Redis).
    async fn raw_ceiling(&self, jobs: u64, tasks: usize) -> anyhow::Result<Option<Duration>> {
        if let Target::Sqlite(_) = self {
            return Ok(None);
        }
        self.purge().await?;
        self.fill(jobs).await?;
        let moved = Arc::new(AtomicU64::new(0));
        let mut set = tokio::task::JoinSet::new();
        let start = Instant::now();
        for _ in 0..tasks {
            let moved = moved.clone();
            match self {
                Target::Pg(pool) => {
                    let pgmq = pgmq::PGMQueueExt::new_with_pool(pool.clone()).await;
                    set.spawn(async move {
                        while moved.load(Ordering::Relaxed) < jobs {
                            let batch = pgmq
                                .read_batch::<serde_json::Value>(PG_QUEUE, 30, 100)
                                .await?;
                            if batch.is_empty() {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                continue;
                            }
                            let ids: Vec<i64> = batch.iter().map(|m| m.msg_id).collect();
                            pgmq.delete_batch(PG_QUEUE, &ids).await?;
                            moved.fetch_add(ids.len() as u64, Ordering::Relaxed);
                        }
                        anyhow::Ok(())
                    });
                }
                Target::Sqlite(_) => {}
                Target::Redis(client) => {
                    let mut conn = Self::redis(client).await?;
                    set.spawn(async move {
                        while moved.load(Ordering::Relaxed) < jobs {
                            let popped: Option<(String, String)> = redis::cmd("BRPOP")
                                .arg(format!("queue:{REDIS_QUEUE}"))
                                .arg(0.05)
                                .query_async(&mut conn)
                                .await?;
                            if let Some((_, body)) = popped {
                                let _: serde_json::Value = serde_json::from_str(&body)?;
                                moved.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        anyhow::Ok(())
                    });
                }
            }
        }
        while let Some(result) = set.join_next().await {
            result??;
        }
        Ok(Some(start.elapsed()))
    }
}

async fn engine(
    client: &Jobs,
    target: &Target,
    jobs: u64,
    workers: usize,
) -> anyhow::Result<Duration> {
    target.purge().await?;
    DONE.store(0, Ordering::SeqCst);
    target.fill(jobs).await?;
    // Where /proc/self/clear_refs is missing the peak also covers the (chunked) fill.
    let _ = reset_peak_rss();
    let processor = match target {
        Target::Pg(_) => jobs::PgProcessor::builder(client).register::<BenchNoop>(),
        Target::Redis(_) => jobs::SidekiqProcessor::builder(client).register::<BenchNoopRedis>(),
        Target::Sqlite(_) => jobs::SqliteProcessor::builder(client).register::<BenchNoopSqlite>(),
    }
    .concurrency(workers)
    .build()?;
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let handle = tokio::spawn(processor.run(shutdown.clone()));
    while DONE.load(Ordering::Relaxed) < jobs {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while target.remaining().await? > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    handle.await??;
    Ok(elapsed)
}

async fn enqueue_rows(client: &Jobs, target: &Target, jobs: u64) -> anyhow::Result<Vec<Row>> {
    let single = jobs.min(2_000);
    let enqueue_one = |n| async move {
        match target {
            Target::Pg(_) => client.enqueue::<BenchNoop>(Noop { n }).await,
            Target::Redis(_) => client.enqueue::<BenchNoopRedis>(Noop { n }).await,
            Target::Sqlite(_) => client.enqueue::<BenchNoopSqlite>(Noop { n }).await,
        }
    };
    target.purge().await?;
    let start = Instant::now();
    for n in 0..single {
        enqueue_one(n).await?;
    }
    let ours_single = rate(single, start.elapsed());

    target.purge().await?;
    let bodies = noops(0..single, target.kind());
    let start = Instant::now();
    match target {
        Target::Sqlite(pool) => {
            for body in &bodies {
                sqlx::query("INSERT INTO jobs_queue (queue, payload, run_at, enqueued_at) VALUES (?1, ?2, 0, 0)")
                    .bind(SQLITE_QUEUE)
                    .bind(body.to_string())
                    .execute(pool)
                    .await?;
            }
        }
        Target::Pg(pool) => {
            let pgmq = pgmq::PGMQueueExt::new_with_pool(pool.clone()).await;
            for body in &bodies {
                pgmq.send(PG_QUEUE, body).await?;
            }
        }
        Target::Redis(client) => {
            let mut conn = Target::redis(client).await?;
            for body in &bodies {
                let _: () = redis::cmd("LPUSH")
                    .arg(format!("queue:{REDIS_QUEUE}"))
                    .arg(body.to_string())
                    .query_async(&mut conn)
                    .await?;
            }
        }
    }
    let raw_single = rate(single, start.elapsed());

    target.purge().await?;
    let start = Instant::now();
    let mut n = 0;
    while n < jobs {
        let end = (n + SEND_CHUNK as u64).min(jobs);
        let args = (n..end).map(|n| Noop { n });
        match target {
            Target::Pg(_) => client.enqueue_batch::<BenchNoop>(args).await?,
            Target::Redis(_) => client.enqueue_batch::<BenchNoopRedis>(args).await?,
            Target::Sqlite(_) => client.enqueue_batch::<BenchNoopSqlite>(args).await?,
        };
        n = end;
    }
    let ours_batch = rate(jobs, start.elapsed());
    target.purge().await?;
    let start = Instant::now();
    target.fill(jobs).await?;
    let raw_batch = rate(jobs, start.elapsed());
    target.purge().await?;

    let (raw_one, raw_many) = match target {
        Target::Pg(_) => ("pgmq send", "pgmq send_batch"),
        Target::Redis(_) => ("LPUSH", "LPUSH of 1000"),
        Target::Sqlite(_) => ("INSERT", "multi-row INSERT of 1000"),
    };
    let row = |measurement, n, ours: f64, baseline, raw: f64| Row {
        backend: target.name(),
        measurement,
        workers: 1,
        jobs: n,
        jobs_per_sec: ours,
        baseline,
        baseline_jobs_per_sec: Some(raw),
        ratio: Some(ours / raw),
        peak_rss_mib: None,
    };
    Ok(vec![
        row("enqueue_single", single, ours_single, raw_one, raw_single),
        row("enqueue_batch_1000", jobs, ours_batch, raw_many, raw_batch),
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let mut builder = Jobs::builder();
    let mut queues = Vec::new();
    let mut targets = Vec::new();
    for kind in &options.backends {
        match kind {
            BackendKind::Pg => {
                let url = std::env::var("DATABASE_URL").map_err(|_| {
                    anyhow::anyhow!("set DATABASE_URL (scripts/bench.sh starts a local PostgreSQL)")
                })?;
                let pool = PgPoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .connect(&url)
                    .await?;
                builder = builder.postgres_pool(pool.clone());
                queues.push(PG_QUEUE);
                targets.push(Target::Pg(pool));
            }
            BackendKind::Sqlite => {
                let url = std::env::var("SQLITE_URL").unwrap_or_else(|_| {
                    let path = std::env::temp_dir().join("jobs-bench.db");
                    format!("sqlite://{}", path.display())
                });
                builder = builder.sqlite(&url);
                queues.push(SQLITE_QUEUE);
                let options = url
                    .parse::<sqlx::sqlite::SqliteConnectOptions>()?
                    .create_if_missing(true);
                targets.push(Target::Sqlite(
                    sqlx::SqlitePool::connect_with(options).await?,
                ));
            }
            _ => {
                let url = std::env::var("REDIS_URL").map_err(|_| {
                    anyhow::anyhow!("set REDIS_URL (scripts/bench.sh starts a local Redis)")
                })?;
                builder = builder.redis(&url);
                queues.push(REDIS_QUEUE);
                targets.push(Target::Redis(redis::Client::open(url)?));
            }
        }
    }
    let client = builder.queues(queues).connect().await?;

    println!(
        "{:<8} {:<20} {:>7} {:>8} {:>12} {:>12} {:>7} {:>12}",
        "backend",
        "measurement",
        "workers",
        "jobs",
        "jobs/s",
        "raw jobs/s",
        "ratio",
        "peak RSS MiB"
    );
    let mut rows = Vec::new();
    if let Some(backlog) = options.backlog {
        for target in &targets {
            for &workers in &options.workers {
                let elapsed = engine(&client, target, backlog, workers).await?;
                let row = Row {
                    backend: target.name(),
                    measurement: "drain_backlog",
                    workers,
                    jobs: backlog,
                    jobs_per_sec: rate(backlog, elapsed),
                    baseline: "none",
                    baseline_jobs_per_sec: None,
                    ratio: None,
                    peak_rss_mib: peak_rss_mib().ok(),
                };
                print_row(&row);
                rows.push(row);
            }
        }
        return finish(rows, options.json);
    }
    for target in &targets {
        for &workers in &options.workers {
            let ours = rate(
                options.jobs,
                engine(&client, target, options.jobs, workers).await?,
            );
            let raw = target
                .raw_ceiling(options.jobs, workers)
                .await?
                .map(|elapsed| rate(options.jobs, elapsed));
            let row = Row {
                backend: target.name(),
                measurement: "process_noop",
                workers,
                jobs: options.jobs,
                jobs_per_sec: ours,
                baseline: match target {
                    Target::Pg(_) => "pgmq read_batch 100 + delete_batch",
                    Target::Redis(_) => "BRPOP + JSON parse",
                    Target::Sqlite(_) => "none",
                },
                baseline_jobs_per_sec: raw,
                ratio: raw.map(|raw| ours / raw),
                peak_rss_mib: None,
            };
            print_row(&row);
            rows.push(row);
        }
        for row in enqueue_rows(&client, target, options.jobs).await? {
            print_row(&row);
            rows.push(row);
        }
    }
    finish(rows, options.json)
}

fn finish(rows: Vec<Row>, json: Option<String>) -> anyhow::Result<()> {
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
        println!("wrote {path}");
    }
    Ok(())
}

fn print_row(row: &Row) {
    let or_dash = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    println!(
        "{:<8} {:<20} {:>7} {:>8} {:>12.0} {:>12} {:>7} {:>12}",
        row.backend,
        row.measurement,
        row.workers,
        row.jobs,
        row.jobs_per_sec,
        or_dash(row.baseline_jobs_per_sec, 0),
        or_dash(row.ratio, 2),
        or_dash(row.peak_rss_mib, 1)
    );
}
