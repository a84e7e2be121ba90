//! `jobs::testing`: capture enqueued jobs without a server, assert on them, run them inline.

use jobs::testing::Fake;
use jobs::{worker, JobInfo, Pg, Sidekiq, Sqlite, State};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub user_id: u64,
}

#[worker(enqueuer = Pg, queue = "mailers")]
async fn send_welcome(_args: Welcome) -> anyhow::Result<()> {
    Ok(())
}

#[worker(enqueuer = Sidekiq)]
async fn track_signup(_args: Welcome) -> anyhow::Result<()> {
    Ok(())
}

#[worker(enqueuer = Sqlite)]
async fn warm_cache(_args: Welcome) -> anyhow::Result<()> {
    Ok(())
}

/// Code under test: what a request handler would do.
async fn sign_up(user_id: u64) -> Result<(), jobs::Error> {
    SendWelcome::enqueue(Welcome { user_id }).await?;
    TrackSignup::enqueue(Welcome { user_id }).await?;
    WarmCache::enqueue_batch([
        Welcome { user_id },
        Welcome {
            user_id: user_id + 1,
        },
    ])
    .await?;
    Ok(())
}

#[tokio::test]
async fn enqueues_are_captured_whatever_the_backend() {
    let fake = Fake::new();
    fake.scope(sign_up(7)).await.unwrap();
    fake.assert_enqueued::<SendWelcome>(&Welcome { user_id: 7 });
    fake.assert_enqueued::<TrackSignup>(&Welcome { user_id: 7 });
    assert_eq!(fake.count::<WarmCache>(), 2);
    assert_eq!(
        fake.enqueued::<WarmCache>(),
        vec![Welcome { user_id: 7 }, Welcome { user_id: 8 }]
    );
    let jobs = fake.jobs();
    assert_eq!(jobs.len(), 4);
    assert_eq!(jobs[0].queue, "mailers");
}

#[tokio::test]
#[should_panic(expected = "no `SendWelcome` job with args {\"user_id\":8} was enqueued")]
async fn assert_enqueued_names_what_is_missing() {
    let fake = Fake::new();
    fake.scope(sign_up(7)).await.unwrap();
    fake.assert_enqueued::<SendWelcome>(&Welcome { user_id: 8 });
}

#[tokio::test]
async fn parallel_scopes_never_see_each_others_jobs() {
    let (a, b) = (Fake::new(), Fake::new());
    let (fa, fb) = (a.clone(), b.clone());
    let ta = tokio::spawn(async move { fa.scope(sign_up(1)).await });
    let tb = tokio::spawn(async move {
        fb.scope(async {
            for user_id in 100..110 {
                SendWelcome::enqueue(Welcome { user_id }).await?;
                tokio::task::yield_now().await;
            }
            Ok::<_, jobs::Error>(())
        })
        .await
    });
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();
    assert_eq!(a.jobs().len(), 4);
    assert_eq!(b.count::<SendWelcome>(), 10);
    assert!(b.enqueued::<SendWelcome>().iter().all(|w| w.user_id >= 100));
    // Outside a scope nothing is captured: with no client connected, enqueue is an error.
    assert!(matches!(
        SendWelcome::enqueue(Welcome { user_id: 1 }).await,
        Err(jobs::Error::NotConnected)
    ));
}

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

#[worker(enqueuer = Pg, max_retries = 3)]
async fn flaky_once(
    _args: Welcome,
    info: JobInfo,
    State(runs): State<Counter>,
) -> anyhow::Result<()> {
    runs.0.fetch_add(1, Ordering::SeqCst);
    anyhow::ensure!(info.attempt > 1, "first attempt fails");
    FollowUp::enqueue(Welcome { user_id: 0 }).await?;
    Ok(())
}

#[worker(enqueuer = Pg)]
async fn follow_up(_args: Welcome, State(runs): State<Counter>) -> anyhow::Result<()> {
    runs.0.fetch_add(100, Ordering::SeqCst);
    Ok(())
}

#[worker(enqueuer = Sidekiq, max_retries = 1)]
async fn hopeless(_args: Welcome) -> anyhow::Result<()> {
    anyhow::bail!("mailbox does not exist")
}

#[tokio::test]
async fn drain_runs_jobs_inline_with_the_engines_rules() {
    let runs = Counter::default();
    let fake = Fake::new().state(runs.clone());
    fake.scope(async {
        FlakyOnce::enqueue(Welcome { user_id: 1 }).await?;
        Hopeless::enqueue(Welcome { user_id: 2 }).await?;
        Ok::<_, jobs::Error>(())
    })
    .await
    .unwrap();
    let report = fake.drain().await;
    assert_eq!(
        runs.0.load(Ordering::SeqCst),
        2 + 100,
        "retried once, then its follow-up ran"
    );
    assert_eq!(
        report.succeeded, 2,
        "FlakyOnce and the FollowUp it enqueued"
    );
    assert_eq!(report.retried, 2, "FlakyOnce once, Hopeless once");
    assert_eq!(report.dead.len(), 1);
    assert_eq!(report.dead[0].0.worker, "Hopeless");
    assert_eq!(report.dead[0].1, "mailbox does not exist");
    assert_eq!(fake.count::<FollowUp>(), 1);
    assert_eq!(
        fake.drain().await,
        jobs::testing::DrainReport::default(),
        "each job runs once"
    );
}
