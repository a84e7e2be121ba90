//! The workers of the crash suite, shared by the tests and the child processors they kill: each
//! run counts itself in a Redis hash named after its queue, so runs in a killed process count
//! too. One worker per backend and scenario, so the scenarios run side by side.

use jobs::{worker, Pg, Sidekiq, Sqlite};
use std::time::Duration;
use tokio::sync::OnceCell;

static REDIS: OnceCell<redis::aio::MultiplexedConnection> = OnceCell::const_new();

/// The Redis hash counting the runs of each job of `queue`.
pub fn runs_key(queue: &str) -> String {
    format!("jobs_test:runs:{queue}")
}

async fn count(queue: &str, n: u64) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let conn = REDIS
        .get_or_try_init(|| async {
            redis::Client::open(jobs_tests::redis_url())?
                .get_multiplexed_async_connection()
                .await
        })
        .await?;
    let _: i64 = redis::cmd("HINCRBY")
        .arg(runs_key(queue))
        .arg(n)
        .arg(1)
        .query_async(&mut conn.clone())
        .await?;
    Ok(())
}

/// The three crash scenarios' workers of one backend, in a module named after it.
macro_rules! scenarios {
    ($module:ident, $enqueuer:ident, [$($name:ident: $queue:tt, $job:tt;)*]) => {
        pub mod $module {
            use super::*;
            $(
                #[worker(enqueuer = $enqueuer, queue = $queue, name = $job)]
                pub async fn $name(n: u64) -> anyhow::Result<()> {
                    count($queue, n).await
                }
            )*
        }
    };
}

scenarios!(sidekiq, Sidekiq, [
    restarted: "t_crash_restart", "CrashRestart";
    alongside: "t_crash_alongside", "CrashAlongside";
    repeated: "t_crash_repeated", "CrashRepeated";
]);

scenarios!(pg, Pg, [
    restarted: "t_crash_pg_restart", "CrashPgRestart";
    alongside: "t_crash_pg_alongside", "CrashPgAlongside";
    repeated: "t_crash_pg_repeated", "CrashPgRepeated";
]);

scenarios!(sqlite, Sqlite, [
    restarted: "t_crash_sqlite_restart", "CrashSqliteRestart";
    alongside: "t_crash_sqlite_alongside", "CrashSqliteAlongside";
    repeated: "t_crash_sqlite_repeated", "CrashSqliteRepeated";
]);
