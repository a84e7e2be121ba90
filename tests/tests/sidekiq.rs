//! The Redis backend in Sidekiq's layout against a real server: the conformance suite, plus
//! reliable fetch, scheduling, fairness, draining and interoperability with Ruby's Sidekiq.

use jobs::{worker, BackendKind, Jobs, Pg, Sidekiq};
use jobs_tests::{eventually, record, runs, Probe, Running, Store};
use std::collections::HashMap;
use std::time::Duration;

type B = Sidekiq;
const KIND: BackendKind = BackendKind::Sidekiq;
const WAIT: Duration = Duration::from_secs(20);

fn builder() -> jobs::JobsBuilder {
    Jobs::builder()
        .redis(jobs_tests::redis_url())
        .postgres(jobs_tests::database_url())
}

mod conformance;
#[path = "../src/crash_worker.rs"]
mod crash_worker;
use crash_worker::sidekiq as scenarios;
mod crash;

use conformance::{connect, fresh};

#[worker(enqueuer = Pg, queue = "t_moved", drain = Sidekiq)]
async fn moved(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn a_worker_that_moved_to_pg_still_drains_its_sidekiq_jobs() {
    let redis = fresh("t_moved").await;
    let pg = Store::of(BackendKind::Pg).await;
    pg.purge("t_moved").await;
    let jobs = connect("t_moved").await;
    // Left in Redis by the deploy before the move…
    redis
        .send_job(
            "t_moved",
            "Moved",
            serde_json::json!({"key": "moved", "n": 1}),
        )
        .await;
    // …and enqueued to Postgres since.
    Moved::enqueue(Probe::new("moved", 2)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async { runs("moved").len() == 2 }).await,
        "{:?}",
        runs("moved")
    );
    assert!(
        eventually(WAIT, || async {
            redis.pending("t_moved").await == 0 && pg.pending("t_moved").await == 0
        })
        .await
    );
    running.stop().await;
}

// ---- interoperability with Ruby's Sidekiq -----------------------------------------------------

fn ruby_script(name: &str) -> String {
    format!("{}/ruby/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs one of the Ruby scripts and returns its standard output.
async fn ruby(script: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new("ruby")
        .arg(ruby_script(script))
        .args(args)
        .env("REDIS_URL", jobs_tests::redis_url())
        .output()
        .await
        .expect("ruby (installed by scripts/test.sh)");
    assert!(
        output.status.success(),
        "ruby {script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

async fn seen_by_ruby(queue: &str) -> serde_json::Value {
    serde_json::from_str(&ruby("inspect.rb", &[queue]).await).expect("inspect.rb JSON")
}

#[worker(enqueuer = Sidekiq, queue = "t_ruby_in", name = "RubyPushed")]
async fn ruby_pushed(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn a_job_pushed_by_ruby_sidekiq_client_is_run() {
    let store = fresh("t_ruby_in").await;
    let jobs = connect("t_ruby_in").await;
    ruby(
        "push.rb",
        &[
            "RubyPushed",
            "t_ruby_in",
            r#"[{"key": "ruby-in", "n": 42}]"#,
        ],
    )
    .await;
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { !runs("ruby-in").is_empty() }).await);
    assert!(eventually(WAIT, || async { store.pending("t_ruby_in").await == 0 }).await);
    running.stop().await;
    assert_eq!(runs("ruby-in")[0].n, 42);
}

#[worker(enqueuer = Sidekiq, queue = "t_ruby_out", name = "RubyWorker")]
async fn for_ruby(_p: Probe) -> anyhow::Result<()> {
    unreachable!("run by the Ruby worker in this test")
}

#[tokio::test]
async fn a_job_we_enqueue_is_seen_and_run_by_ruby_sidekiq() {
    let _store = fresh("t_ruby_out").await;
    let _jobs = connect("t_ruby_out").await;
    let id = ForRuby::enqueue(Probe::new("ruby-out", 7)).await.unwrap();

    let seen = seen_by_ruby("t_ruby_out").await;
    let queued = &seen["queue"][0];
    assert_eq!(queued["class"], "RubyWorker");
    assert_eq!(queued["jid"], id.to_string());
    assert_eq!(
        queued["args"],
        serde_json::json!([{"key": "ruby-out", "n": 7}])
    );

    // The real Sidekiq server runs it with the Ruby class of that name.
    let out = std::env::temp_dir().join(format!("ruby-worker-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut server = tokio::process::Command::new("sidekiq")
        .args([
            "-r",
            &ruby_script("worker.rb"),
            "-q",
            "t_ruby_out",
            "-c",
            "1",
        ])
        .env("REDIS_URL", jobs_tests::redis_url())
        .env("RUBY_WORKER_OUT", &out)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sidekiq (from ruby-sidekiq)");
    let ran = eventually(Duration::from_secs(30), || async { out.exists() }).await;
    let _ = server.kill().await;
    assert!(ran, "the Ruby worker did not run the job");
    let args: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(args, serde_json::json!({"key": "ruby-out", "n": 7}));
}

#[worker(enqueuer = Sidekiq, queue = "t_ruby_sets", max_retries = 1, retry_delay = "1h")]
async fn fails_for_ruby(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    anyhow::bail!("failed for {}", p.key)
}

#[worker(enqueuer = Sidekiq, queue = "t_ruby_sets", max_retries = 0)]
async fn dies_for_ruby(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    anyhow::bail!("died for {}", p.key)
}

#[tokio::test]
async fn our_retries_and_dead_jobs_show_in_ruby_retry_and_dead_sets() {
    let _store = fresh("t_ruby_sets").await;
    let jobs = connect("t_ruby_sets").await;
    FailsForRuby::enqueue(Probe::new("ruby-retry", 1))
        .await
        .unwrap();
    DiesForRuby::enqueue(Probe::new("ruby-dead", 2))
        .await
        .unwrap();
    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async {
            runs("ruby-retry").len() == 1 && runs("ruby-dead").len() == 1
        })
        .await
    );
    assert!(
        eventually(WAIT, || async {
            let seen = seen_by_ruby("t_ruby_sets").await;
            seen["retry"].as_array().map_or(0, Vec::len) == 1
                && seen["dead"].as_array().map_or(0, Vec::len) == 1
        })
        .await
    );
    running.stop().await;
    let seen = seen_by_ruby("t_ruby_sets").await;
    let retry = &seen["retry"][0];
    assert_eq!(retry["class"], "FailsForRuby");
    assert_eq!(retry["error_message"], "failed for ruby-retry");
    assert_eq!(retry["retry_count"], 0, "Sidekiq counts retries from 0");
    let dead = &seen["dead"][0];
    assert_eq!(dead["class"], "DiesForRuby");
    assert_eq!(dead["error_message"], "died for ruby-dead");
    assert_eq!(
        dead["args"],
        serde_json::json!([{"key": "ruby-dead", "n": 2}])
    );
}

// ---- lost replies ------------------------------------------------------------------------------

#[worker(enqueuer = Sidekiq, queue = "t_orphan")]
async fn orphan_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

/// A fetch whose reply is lost leaves its jobs in the working list of a processor that never
/// received them, and that keeps heartbeating: it must put them back itself.
#[tokio::test]
async fn a_job_claimed_but_never_received_is_put_back() {
    let store = fresh("t_orphan").await;
    let Store::Redis(conn) = &store else {
        unreachable!()
    };
    let mut conn = conn.clone();
    let jobs = conformance::connect_with("t_orphan", |b| b.lease(Duration::from_secs(3))).await;
    OrphanProbe::enqueue(Probe::new("orphan", 1)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { runs("orphan").len() == 1 }).await);
    // The processor's working list of this queue, registered when it fetched.
    let lists: Vec<String> = redis::cmd("KEYS")
        .arg("jobs:worklists:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut working = None;
    for list in lists {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&list)
            .query_async(&mut conn)
            .await
            .unwrap();
        working = working.or(members.into_iter().find(|m| m.ends_with(":t_orphan")));
    }
    let working = working.expect("the processor's working list");
    // As if a fetch had moved this job there and its reply had been lost.
    let job = serde_json::json!({
        "class": "OrphanProbe", "args": [{"key": "orphan", "n": 2}], "queue": "t_orphan",
        "jid": "0123456789abcdef01234567", "created_at": 1.7e9, "enqueued_at": 1.7e9,
    });
    let _: () = redis::cmd("LPUSH")
        .arg(&working)
        .arg(job.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async { runs("orphan").len() == 2 }).await,
        "the orphaned job ran"
    );
    assert!(eventually(WAIT, || async { store.pending("t_orphan").await == 0 }).await);
    running.stop().await;
    assert_eq!(runs("orphan").iter().filter(|r| r.n == 2).count(), 1);
}

// ---- scheduling ---------------------------------------------------------------------------------

#[worker(enqueuer = Sidekiq, queue = "t_scheduled")]
async fn scheduled(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn due_jobs_move_exactly_once_however_many_processors_run() {
    const JOBS: u64 = 1_000;
    let store = fresh("t_scheduled").await;
    let processors = [
        conformance::connect("t_scheduled").await,
        conformance::connect("t_scheduled").await,
        conformance::connect("t_scheduled").await,
    ];
    for n in 0..JOBS {
        Scheduled::enqueue_in(Duration::from_millis(1500), Probe::new("scheduled", n))
            .await
            .unwrap();
    }
    let running: Vec<Running> = processors.iter().map(Running::start).collect();
    let start = std::time::Instant::now();
    assert!(eventually(WAIT, || async { runs("scheduled").len() as u64 >= JOBS }).await);
    let took = start.elapsed();
    assert!(eventually(WAIT, || async { store.pending("t_scheduled").await == 0 }).await);
    for r in running {
        r.stop().await;
    }
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for run in runs("scheduled") {
        *seen.entry(run.n).or_default() += 1;
    }
    assert_eq!(seen.len() as u64, JOBS);
    assert!(seen.values().all(|c| *c == 1), "a due job moved twice");
    // No 10-jobs-per-poll limit: a thousand due jobs run within seconds of falling due.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

// ---- the manual form --------------------------------------------------------------------------

struct HandWrittenPg;

impl jobs::Worker for HandWrittenPg {
    type Args = Probe;
    type Enqueuer = Pg;
    const NAME: &'static str = "HandWrittenPg";
    const CONFIG: jobs::WorkerConfig = jobs::WorkerConfig::new("t_manual");

    async fn handle(p: Probe, _ctx: jobs::JobContext) -> Result<(), jobs::BoxError> {
        record(&p.key, p.n, 1);
        Ok(())
    }
}

#[tokio::test]
async fn a_pg_worker_registered_by_hand_on_the_sidekiq_processor_runs_redis_jobs() {
    let store = fresh("t_manual").await;
    let jobs = connect("t_manual").await;
    store
        .send_job(
            "t_manual",
            "HandWrittenPg",
            serde_json::json!({"key": "manual", "n": 9}),
        )
        .await;
    let processor = jobs::SidekiqProcessor::builder(&jobs)
        .register::<HandWrittenPg>()
        .build()
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(processor.run(shutdown.clone()));
    assert!(eventually(WAIT, || async { !runs("manual").is_empty() }).await);
    assert!(eventually(WAIT, || async { store.pending("t_manual").await == 0 }).await);
    shutdown.cancel();
    handle.await.unwrap().unwrap();
}

#[worker(enqueuer = Sidekiq, queue = "t_no_retry", max_retries = 5, retry_delay = "10ms")]
async fn no_retry(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    anyhow::bail!("fails")
}

#[tokio::test]
async fn a_ruby_job_with_retry_false_is_not_retried_but_kept_dead() {
    let store = fresh("t_no_retry").await;
    let jobs = connect("t_no_retry").await;
    let job = serde_json::json!({
        "class": "NoRetry", "args": [{"key": "no-retry", "n": 1}], "queue": "t_no_retry",
        "retry": false, "jid": "0123456789abcdef01234567", "created_at": 1.7e9,
    });
    store.push_raw("t_no_retry", job.to_string()).await;
    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async {
            conformance::dead_letters(&jobs, "t_no_retry").await.len() == 1
        })
        .await
    );
    running.stop().await;
    assert_eq!(runs("no-retry").len(), 1, "retry: false means one run");
}
