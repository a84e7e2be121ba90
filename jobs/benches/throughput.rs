//! Throughput of the engine against the raw backend ceiling, measured in the same run.
//!
//! `cargo bench -p jobs --bench throughput -- [--backend pg] [--jobs N] [--workers W] [--json PATH]`
//!
//! For each worker count (1, 8, 64 and 256 unless `--workers` is given) it enqueues N no-op jobs,
//! times a processor with that many worker slots until all are acked, then times a bare pgmq
//! loop (`read_batch` of 100 + `delete_batch`, over as many tasks) moving N messages, and prints
//! both with their ratio. It also compares enqueue, single and batched, with raw `send` and
//! `send_batch`. Needs DATABASE_URL (scripts/bench.sh sets up a local server).

use jobs::{worker, Jobs, Pg};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const QUEUE: &str = "bench_noop";
const POOL_SIZE: u32 = 16;
const SEND_CHUNK: usize = 1000;

static DONE: AtomicU64 = AtomicU64::new(0);

#[derive(serde::Serialize, serde::Deserialize)]
struct Noop {
    n: u64,
}

#[worker(enqueuer = Pg, queue = "bench_noop")]
async fn bench_noop(_args: Noop) -> anyhow::Result<()> {
    DONE.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

struct Options {
    backend: String,
    jobs: u64,
    workers: Vec<usize>,
    json: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        backend: "pg".into(),
        jobs: 20_000,
        workers: vec![1, 8, 64, 256],
        json: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--backend" => options.backend = value()?,
            "--jobs" => options.jobs = value()?.parse()?,
            "--workers" => {
                options.workers = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--json" => options.json = Some(value()?),
            // cargo bench passes --bench; other harness flags do not apply here.
            other if other.starts_with("--") => {}
            other => anyhow::bail!("unexpected argument {other:?}"),
        }
    }
    anyhow::ensure!(
        options.backend == "pg",
        "unknown backend {:?}: pg",
        options.backend
    );
    Ok(options)
}

#[derive(Serialize)]
struct Row {
    backend: String,
    measurement: &'static str,
    workers: usize,
    jobs: u64,
    jobs_per_sec: f64,
    baseline: &'static str,
    baseline_jobs_per_sec: f64,
    ratio: f64,
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

async fn purge(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(&format!("TRUNCATE pgmq.q_{QUEUE}"))
        .execute(pool)
        .await?;
    Ok(())
}

fn noops(range: std::ops::Range<u64>) -> Vec<serde_json::Value> {
    range
        .map(|n| serde_json::json!({"worker": "BenchNoop", "args": {"n": n}}))
        .collect()
}

async fn fill_raw(pgmq: &pgmq::PGMQueueExt, jobs: u64) -> anyhow::Result<()> {
    let all = noops(0..jobs);
    for chunk in all.chunks(SEND_CHUNK) {
        pgmq.send_batch(QUEUE, chunk).await?;
    }
    Ok(())
}

async fn engine(
    jobs_client: &Jobs,
    pool: &PgPool,
    jobs: u64,
    workers: usize,
) -> anyhow::Result<Duration> {
    purge(pool).await?;
    DONE.store(0, Ordering::SeqCst);
    let pgmq = pgmq::PGMQueueExt::new_with_pool(pool.clone()).await;
    fill_raw(&pgmq, jobs).await?;
    let processor = jobs::PgProcessor::builder(jobs_client)
        .register::<BenchNoop>()
        .concurrency(workers)
        .build()?;
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let handle = tokio::spawn(processor.run(shutdown.clone()));
    while DONE.load(Ordering::Relaxed) < jobs {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    loop {
        let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM pgmq.q_{QUEUE}"))
            .fetch_one(pool)
            .await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    handle.await??;
    Ok(elapsed)
}

async fn raw_ceiling(pool: &PgPool, jobs: u64, tasks: usize) -> anyhow::Result<Duration> {
    purge(pool).await?;
    let pgmq = pgmq::PGMQueueExt::new_with_pool(pool.clone()).await;
    fill_raw(&pgmq, jobs).await?;
    let moved = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let pgmq = pgmq.clone();
        let moved = moved.clone();
        set.spawn(async move {
            while moved.load(Ordering::Relaxed) < jobs {
                let batch = pgmq.read_batch::<serde_json::Value>(QUEUE, 30, 100).await?;
                if batch.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let ids: Vec<i64> = batch.iter().map(|m| m.msg_id).collect();
                pgmq.delete_batch(QUEUE, &ids).await?;
                moved.fetch_add(ids.len() as u64, Ordering::Relaxed);
            }
            Ok::<_, pgmq::PgmqError>(())
        });
    }
    while let Some(result) = set.join_next().await {
        result??;
    }
    Ok(start.elapsed())
}

async fn enqueue_rows(jobs_client: &Jobs, pool: &PgPool, jobs: u64) -> anyhow::Result<Vec<Row>> {
    let pgmq = pgmq::PGMQueueExt::new_with_pool(pool.clone()).await;
    let single = jobs.min(2_000);

    purge(pool).await?;
    let start = Instant::now();
    for n in 0..single {
        jobs_client.enqueue::<BenchNoop>(Noop { n }).await?;
    }
    let ours_single = rate(single, start.elapsed());
    purge(pool).await?;
    let start = Instant::now();
    for body in noops(0..single) {
        pgmq.send(QUEUE, &body).await?;
    }
    let raw_single = rate(single, start.elapsed());

    purge(pool).await?;
    let start = Instant::now();
    let mut n = 0;
    while n < jobs {
        let end = (n + SEND_CHUNK as u64).min(jobs);
        jobs_client
            .enqueue_batch::<BenchNoop>((n..end).map(|n| Noop { n }))
            .await?;
        n = end;
    }
    let ours_batch = rate(jobs, start.elapsed());
    purge(pool).await?;
    let start = Instant::now();
    fill_raw(&pgmq, jobs).await?;
    let raw_batch = rate(jobs, start.elapsed());
    purge(pool).await?;

    let row = |measurement, n, ours: f64, baseline, raw: f64| Row {
        backend: "pg".into(),
        measurement,
        workers: 1,
        jobs: n,
        jobs_per_sec: ours,
        baseline,
        baseline_jobs_per_sec: raw,
        ratio: ours / raw,
    };
    Ok(vec![
        row(
            "enqueue_single",
            single,
            ours_single,
            "pgmq send",
            raw_single,
        ),
        row(
            "enqueue_batch_1000",
            jobs,
            ours_batch,
            "pgmq send_batch",
            raw_batch,
        ),
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let url = std::env::var("DATABASE_URL").map_err(|_| {
        anyhow::anyhow!("set DATABASE_URL (scripts/bench.sh starts a local PostgreSQL)")
    })?;
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .connect(&url)
        .await?;
    let jobs_client = Jobs::builder()
        .postgres_pool(pool.clone())
        .queues([QUEUE])
        .connect()
        .await?;

    println!(
        "{:<22} {:>7} {:>8} {:>12} {:>12} {:>7}",
        "measurement", "workers", "jobs", "jobs/s", "raw jobs/s", "ratio"
    );
    let mut rows = Vec::new();
    for &workers in &options.workers {
        let ours = engine(&jobs_client, &pool, options.jobs, workers).await?;
        let raw = raw_ceiling(&pool, options.jobs, workers).await?;
        let (ours, raw) = (rate(options.jobs, ours), rate(options.jobs, raw));
        rows.push(Row {
            backend: options.backend.clone(),
            measurement: "process_noop",
            workers,
            jobs: options.jobs,
            jobs_per_sec: ours,
            baseline: "pgmq read_batch 100 + delete_batch",
            baseline_jobs_per_sec: raw,
            ratio: ours / raw,
        });
        if let Some(row) = rows.last() {
            print_row(row);
        }
    }
    for row in enqueue_rows(&jobs_client, &pool, options.jobs).await? {
        print_row(&row);
        rows.push(row);
    }
    if let Some(path) = options.json {
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
        println!("wrote {path}");
    }
    Ok(())
}

fn print_row(row: &Row) {
    println!(
        "{:<22} {:>7} {:>8} {:>12.0} {:>12.0} {:>7.2}",
        row.measurement,
        row.workers,
        row.jobs,
        row.jobs_per_sec,
        row.baseline_jobs_per_sec,
        row.ratio
    );
}
