//! Redis in Sidekiq's layout: `queues` set, `queue:Q` lists (LPUSH to enqueue, oldest at the
//! right), `schedule`, `retry` and `dead` sorted sets scored in seconds, and Sidekiq's job JSON.
//!
//! Fetch is reliable: a Lua script moves claimed jobs from `queue:Q` into this process's working
//! list `jobs:working:<identity>:Q` in the same step, and they leave it only when their outcome is
//! recorded (again in one script, and only if still there). Each process heartbeats into
//! `jobs:heartbeats`; a process whose heartbeat is older than a lease is presumed dead and any
//! other process moves its working lists back to their queues. The same fetch script first moves
//! due jobs of `schedule` and `retry` to their queues, each exactly once (ZREM decides).

use super::{Backend, Fetched, Lease, Outcome, Wait};
use crate::{DeadLetter, Envelope, Error, JobId};
use bb8::ManageConnection;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use sidekiq::redis_rs::{self, AsyncCommands, Script};
use sidekiq::{RedisConnectionManager, RedisPool};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Due jobs moved from `schedule` and `retry` by one fetch, per set.
const DUE_BATCH: usize = 1000;
/// Connections for enqueuing (never blocked by a processor).
const ENQUEUE_CONNECTIONS: u32 = 10;
/// Connections for fetching, blocking waits and outcomes.
const FETCH_CONNECTIONS: u32 = 8;
/// The longest a blocking wait lasts, so shutdown and new queues are noticed.
const MAX_BLOCK: Duration = Duration::from_secs(2);
/// The blocking wait per queue when several are served (BLMOVE takes one list).
const MULTI_QUEUE_BLOCK: Duration = Duration::from_millis(100);

/// ARGV: identity, max, due batch, lease seconds, queue names…; returns queue, job, queue, job, …
static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local identity, max, due_batch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', 'jobs:heartbeats', now + tonumber(ARGV[4]), identity)
for _, set in ipairs({'schedule', 'retry'}) do
  local due = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, due_batch)
  for _, job in ipairs(due) do
    if redis.call('ZREM', set, job) == 1 then
      local ok, decoded = pcall(cjson.decode, job)
      local queue = 'default'
      if ok and type(decoded) == 'table' and type(decoded['queue']) == 'string' then
        queue = decoded['queue']
      end
      redis.call('SADD', 'queues', queue)
      redis.call('LPUSH', 'queue:' .. queue, job)
    end
  end
end
local out = {}
local claimed = 0
for i = 5, #ARGV do
  local want = max - claimed
  if want <= 0 then break end
  local queue = ARGV[i]
  local jobs = redis.call('RPOP', 'queue:' .. queue, want)
  if jobs then
    local working = 'jobs:working:' .. identity .. ':' .. queue
    redis.call('SADD', 'jobs:worklists:' .. identity, working)
    for _, job in ipairs(jobs) do
      redis.call('LPUSH', working, job)
      out[#out + 1] = queue
      out[#out + 1] = job
      claimed = claimed + 1
    end
  end
end
return out
",
    )
});

/// ARGV: groups of (kind, working list, job, target, score); an outcome applies only while its
/// job is still in the working list, i.e. nobody recovered it meanwhile.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 1, #ARGV, 5 do
  local kind, working, job, target, score = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if redis.call('LREM', working, -1, job) > 0 then
    if kind == 'release' then
      redis.call('RPUSH', target, job)
    elseif kind == 'retry' or kind == 'dead' then
      redis.call('ZADD', kind, score, target)
    end
  end
end
return 0
",
    )
});

/// ARGV: identity, lease seconds; the heartbeat's score is the moment, in the server's time,
/// after which this process counts as dead: its own lease decides, not the reader's.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
redis.call('ZADD', 'jobs:heartbeats', tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2]), ARGV[1])
return 0
",
    )
});

/// ARGV: own identity; returns how many jobs were put back.
static RECOVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local dead = redis.call('ZRANGEBYSCORE', 'jobs:heartbeats', '-inf', now)
local moved = 0
for _, identity in ipairs(dead) do
  if identity ~= ARGV[1] then
    local lists = 'jobs:worklists:' .. identity
    for _, working in ipairs(redis.call('SMEMBERS', lists)) do
      local queue = string.sub(working, string.len('jobs:working:' .. identity .. ':') + 1)
      while redis.call('LMOVE', working, 'queue:' .. queue, 'LEFT', 'RIGHT') do
        moved = moved + 1
      end
    end
    redis.call('DEL', lists)
    redis.call('ZREM', 'jobs:heartbeats', identity)
  end
end
return moved
",
    )
});

/// ARGV: a working list, its queue's list, a job as stored, how many of it to put back; returns
/// how many were put back (to the end fetched next).
static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = redis.call('LREM', ARGV[1], tonumber(ARGV[4]), ARGV[3])
for _ = 1, removed do
  redis.call('RPUSH', ARGV[2], ARGV[3])
end
return removed
",
    )
});

/// ARGV: the dead job as stored, its queue, the job to enqueue; 1 if it was still dead.
static REVIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('ZREM', 'dead', ARGV[1]) == 0 then return 0 end
redis.call('SADD', 'queues', ARGV[2])
redis.call('LPUSH', 'queue:' .. ARGV[2], ARGV[3])
return 1
",
    )
});

/// The oldest Redis with every command used here (`RPOP` with a count, `LMOVE`, `BLMOVE`).
const MIN_REDIS: (u32, u32) = (6, 2);
/// Dead letters read per page when listing.
const DEAD_PAGE: isize = 500;

pub(crate) struct SidekiqBackend {
    enqueue: RedisPool,
    fetch: RedisPool,
    identity: String,
    /// Jobs seen in this process's working lists without being claimed here, at the last
    /// check: (queue, job as stored) → how many.
    suspects: Mutex<Held>,
}

/// Jobs by (queue, job as stored), counted.
type Held = HashMap<(String, Vec<u8>), usize>;

/// Members of a sorted set with their scores.
type Scored = Vec<(String, f64)>;

/// A failed checkout: Redis's own error when connecting failed (a wrong password stays a
/// wrong password), else the pool's timeout.
fn pool_error(err: bb8::RunError<sidekiq::redis_rs::RedisError>) -> Error {
    match err {
        bb8::RunError::User(err) => Error::Redis(err),
        bb8::RunError::TimedOut => Error::RedisPool("timed out waiting for a connection".into()),
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A Sidekiq jid: 12 random bytes in hex.
fn new_jid() -> String {
    (0..12)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

fn working_list(identity: &str, queue: &str) -> String {
    format!("jobs:working:{identity}:{queue}")
}

impl SidekiqBackend {
    pub(crate) async fn connect(url: &str) -> Result<Self, Error> {
        // One connection of our own first: a wrong address or password is reported as itself
        // (a pool would only time out), and a Redis too old is refused before any use.
        let mut first = RedisConnectionManager::new(url)?.connect().await?;
        let info: String = redis_rs::cmd("INFO")
            .arg("server")
            .query_async(first.unnamespaced_borrow_mut())
            .await?;
        check_version(&info)?;
        let build = |size| async move {
            let manager = RedisConnectionManager::new(url)?;
            bb8::Pool::builder()
                .max_size(size)
                // bb8 PINGs each connection on checkout: a round trip per call, but the only way
                // a connection broken by a Redis restart leaves the pool (the manager cannot tell).
                .connection_timeout(crate::client::ACQUIRE_TIMEOUT)
                .build(manager)
                .await
                .map_err(Error::Redis)
        };
        let enqueue = build(ENQUEUE_CONNECTIONS).await?;
        let fetch = build(FETCH_CONNECTIONS).await?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned());
        let identity = format!("{host}:{}:{}", std::process::id(), new_jid());
        Ok(Self {
            enqueue,
            fetch,
            identity,
            suspects: Mutex::new(HashMap::new()),
        })
    }

    /// Puts back jobs held in this process's working lists that it is not running and has no
    /// outcome on the way for (`claimed` holds both). A fetch whose reply was lost (the
    /// connection dropped after Redis ran it) leaves such jobs there, and this process's
    /// heartbeat would keep them from recovery for as long as it lives. A job must be seen so
    /// at two checks in a row, so one fetched while the first check ran is left alone.
    async fn put_back_orphans(
        &self,
        conn: &mut redis_rs::aio::MultiplexedConnection,
        claimed: &[Lease],
    ) -> Result<(), Error> {
        // Taken first: a check that fails leaves no stale suspects for the next one.
        let suspects =
            std::mem::take(&mut *self.suspects.lock().unwrap_or_else(PoisonError::into_inner));
        let prefix = working_list(&self.identity, "");
        let lists: Vec<String> = conn
            .smembers(format!("jobs:worklists:{}", self.identity))
            .await?;
        if lists.is_empty() {
            return Ok(());
        }
        let mut pipe = redis_rs::pipe();
        for list in &lists {
            pipe.lrange(list, 0, -1);
        }
        let held: Vec<Vec<Vec<u8>>> = pipe.query_async(conn).await?;
        let mut busy: HashMap<(&str, &[u8]), usize> = HashMap::new();
        for lease in claimed {
            if let Some(raw) = &lease.raw {
                *busy.entry((&*lease.queue, &**raw)).or_default() += 1;
            }
        }
        let mut idle: Held = HashMap::new();
        for (list, jobs) in lists.iter().zip(held) {
            let Some(queue) = list.strip_prefix(&prefix) else {
                continue;
            };
            for raw in jobs {
                *idle.entry((queue.to_owned(), raw)).or_default() += 1;
            }
        }
        idle.retain(|(queue, raw), held| {
            let running = busy.get(&(queue.as_str(), raw.as_slice())).copied();
            *held = held.saturating_sub(running.unwrap_or(0));
            *held > 0
        });
        let confirmed: Vec<((String, Vec<u8>), usize)> = idle
            .iter()
            .filter_map(|(key, held)| {
                suspects
                    .get(key)
                    .map(|before| (key.clone(), (*held).min(*before)))
            })
            .collect();
        *self.suspects.lock().unwrap_or_else(PoisonError::into_inner) = idle;
        for ((queue, raw), count) in confirmed {
            let moved: i64 = REQUEUE
                .arg(working_list(&self.identity, &queue))
                .arg(format!("queue:{queue}"))
                .arg(raw)
                .arg(count)
                .invoke_async(conn)
                .await?;
            if moved > 0 {
                tracing::warn!(queue = %queue, jobs = moved,
                    "put back jobs this processor claimed but never received (a reply was lost)");
            }
        }
        Ok(())
    }

    /// Reads one stored job into a [`Fetched`], in the engine's envelope shape.
    fn fetched(queue: &Arc<str>, raw: Vec<u8>) -> Fetched {
        let parsed: Result<Map<String, Value>, String> = match serde_json::from_slice(&raw) {
            Ok(Value::Object(fields)) => Ok(fields),
            Ok(_) => Err("not a Sidekiq job: the JSON is not an object".to_owned()),
            Err(err) => Err(format!("not JSON: {err}")),
        };
        let jid = parsed
            .as_ref()
            .ok()
            .and_then(|f| f.get("jid"))
            .and_then(Value::as_str)
            .map_or_else(new_jid, str::to_owned);
        let enqueued_at = parsed
            .as_ref()
            .ok()
            .and_then(|f| f.get("created_at"))
            .and_then(Value::as_f64)
            .and_then(|secs| chrono::DateTime::from_timestamp_micros((secs * 1e6) as i64));
        let payload = parsed.as_ref().map(envelope_of).map_err(Clone::clone);
        let size = raw.len();
        Fetched {
            lease: Lease {
                queue: queue.clone(),
                id: JobId::from(jid),
                delivery: 0,
                raw: Some(raw.into()),
            },
            payload,
            size,
            enqueued_at,
        }
    }

    async fn fetch_conn(&self) -> Result<bb8::PooledConnection<'_, RedisConnectionManager>, Error> {
        self.fetch.get().await.map_err(pool_error)
    }
}

fn check_version(info: &str) -> Result<(), Error> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("0")
        .trim();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_REDIS {
        return Err(Error::RedisTooOld(version.to_owned()));
    }
    Ok(())
}

/// Sidekiq's job fields in the engine's envelope shape: `class` is the worker; `args` holds one
/// value (several positional args are passed as the array); `retry_count` counts retries done
/// (absent before the first failure), the envelope counts failures.
fn envelope_of(job: &Map<String, Value>) -> Value {
    let mut envelope = Map::new();
    if let Some(class) = job.get("class") {
        envelope.insert("worker".into(), class.clone());
    }
    if let Some(args) = job.get("args") {
        let args = match args {
            Value::Array(items) if items.len() == 1 => items[0].clone(),
            other => other.clone(),
        };
        envelope.insert("args".into(), args);
    }
    if let Some(retries) = job.get("retry_count").and_then(Value::as_u64) {
        envelope.insert("retry_count".into(), Value::from(retries + 1));
    }
    if let Some(error) = job.get("error_message") {
        envelope.insert("error".into(), error.clone());
    }
    // Sidekiq's per-job `retry`: `false` → no retries (dead at the first failure; nothing is
    // dropped), a number → that many; `true` → the worker's own setting.
    match job.get("retry") {
        Some(Value::Bool(false)) => {
            envelope.insert("max_retries".into(), Value::from(0));
        }
        Some(Value::Number(n)) => {
            envelope.insert("max_retries".into(), Value::Number(n.clone()));
        }
        _ => {}
    }
    Value::Object(envelope)
}

/// A new Sidekiq job from an engine envelope, built with rusty-sidekiq's job type.
fn job_of(queue: &str, envelope: Value, delayed: bool) -> Result<(String, String), Error> {
    let envelope: Envelope = serde_json::from_value(envelope).map_err(Error::Serialize)?;
    let now = now_secs();
    let jid = new_jid();
    let job = sidekiq::Job {
        queue: queue.to_owned(),
        args: Value::Array(vec![envelope.args]),
        retry: sidekiq::RetryOpts::Yes,
        class: envelope.worker,
        jid: jid.clone(),
        created_at: now,
        enqueued_at: (!delayed).then_some(now),
        failed_at: None,
        error_message: None,
        error_class: None,
        retry_count: None,
        retried_at: None,
        retry_queue: None,
        unique_for: None,
    };
    Ok((jid, serde_json::to_string(&job).map_err(Error::Serialize)?))
}

/// The stored job with a failure recorded as Sidekiq records it.
fn failed_job(raw: &[u8], queue: &str, error: &str, failures: u32) -> String {
    let now = now_secs();
    let mut job = match serde_json::from_slice(raw) {
        Ok(Value::Object(fields)) => fields,
        // Not a job at all: keep it, wrapped so Sidekiq's tools can show it.
        _ => {
            let mut fields = Map::new();
            fields.insert("class".into(), Value::from("jobs::InvalidJob"));
            let text = String::from_utf8_lossy(raw);
            fields.insert("args".into(), Value::Array(vec![Value::from(text)]));
            fields.insert("queue".into(), Value::from(queue));
            fields.insert("jid".into(), Value::from(new_jid()));
            fields.insert("created_at".into(), Value::from(now));
            fields.insert("retry".into(), Value::Bool(false));
            fields
        }
    };
    job.entry("queue").or_insert_with(|| Value::from(queue));
    job.entry("jid").or_insert_with(|| Value::from(new_jid()));
    if job.contains_key("failed_at") && job.get("failed_at") != Some(&Value::Null) {
        job.insert("retried_at".into(), Value::from(now));
    } else {
        job.insert("failed_at".into(), Value::from(now));
    }
    job.insert("error_message".into(), Value::from(error));
    job.insert("error_class".into(), Value::from("jobs::JobError"));
    job.insert(
        "retry_count".into(),
        Value::from(failures.saturating_sub(1)),
    );
    Value::Object(job).to_string()
}

impl Backend for SidekiqBackend {
    fn prepare<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            if queues.is_empty() {
                return Ok(());
            }
            let mut conn = self.enqueue.get().await.map_err(pool_error)?;
            let _: () = conn
                .unnamespaced_borrow_mut()
                .sadd("queues", queues)
                .await?;
            Ok(())
        })
    }

    fn push<'a>(
        &'a self,
        queue: &'a str,
        payloads: Vec<Value>,
        delay: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<JobId>, Error>> {
        Box::pin(async move {
            let jobs = payloads
                .into_iter()
                .map(|payload| job_of(queue, payload, delay.is_some()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut pipe = redis_rs::pipe();
            match delay {
                Some(delay) => {
                    let at = now_secs() + delay.as_secs_f64();
                    let entries: Vec<(f64, &str)> =
                        jobs.iter().map(|(_, job)| (at, job.as_str())).collect();
                    pipe.zadd_multiple("schedule", &entries).ignore();
                }
                None => {
                    let bodies: Vec<&str> = jobs.iter().map(|(_, job)| job.as_str()).collect();
                    pipe.sadd("queues", queue)
                        .ignore()
                        .lpush(format!("queue:{queue}"), bodies)
                        .ignore();
                }
            }
            let mut conn = self.enqueue.get().await.map_err(pool_error)?;
            let () = pipe.query_async(conn.unnamespaced_borrow_mut()).await?;
            Ok(jobs.into_iter().map(|(jid, _)| JobId::from(jid)).collect())
        })
    }

    fn fetch<'a>(
        &'a self,
        queues: &'a [String],
        max: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<Fetched>, Error>> {
        Box::pin(async move {
            let mut invocation = FETCH.prepare_invoke();
            invocation
                .arg(&self.identity)
                .arg(max)
                .arg(DUE_BATCH)
                .arg(lease.as_secs_f64());
            for queue in queues {
                invocation.arg(queue);
            }
            let mut conn = self.fetch_conn().await?;
            // Bytes, not strings: a job that is not UTF-8 is still a job to dead-letter.
            let flat: Vec<Vec<u8>> = invocation
                .invoke_async(conn.unnamespaced_borrow_mut())
                .await?;
            let mut fetched = Vec::with_capacity(flat.len() / 2);
            let mut names: Vec<Arc<str>> = Vec::new();
            for pair in flat.chunks_exact(2) {
                let queue = match names.iter().find(|n| n.as_bytes() == pair[0].as_slice()) {
                    Some(name) => name.clone(),
                    None => {
                        let name: Arc<str> = Arc::from(String::from_utf8_lossy(&pair[0]).as_ref());
                        names.push(name.clone());
                        name
                    }
                };
                fetched.push(Self::fetched(&queue, pair[1].clone()));
            }
            Ok(fetched)
        })
    }

    fn idle<'a>(&'a self, wait: Wait<'a>) -> BoxFuture<'a, Result<Vec<Fetched>, Error>> {
        Box::pin(async move {
            let Some(first) = wait.queues.first() else {
                tokio::time::sleep(wait.poll).await;
                return Ok(Vec::new());
            };
            let mut conn = self.fetch_conn().await?;
            let redis = conn.unnamespaced_borrow_mut();
            // Never block past the next scheduled or retried job.
            let (schedule, retry, (secs, micros)): (Scored, Scored, (u64, u64)) = redis_rs::pipe()
                .zrange_withscores("schedule", 0, 0)
                .zrange_withscores("retry", 0, 0)
                .cmd("TIME")
                .query_async(&mut *redis)
                .await?;
            // Due times are compared in the server's clock, as the fetch script does.
            let server_now = secs as f64 + micros as f64 / 1e6;
            let mut block = if wait.queues.len() == 1 {
                wait.poll.min(MAX_BLOCK)
            } else {
                MULTI_QUEUE_BLOCK
            };
            if let Some(due) = schedule
                .iter()
                .chain(&retry)
                .map(|(_, at)| *at)
                .reduce(f64::min)
            {
                let until = (due - server_now).max(0.0);
                block = block.min(Duration::from_secs_f64(until));
            }
            if block < Duration::from_millis(10) || wait.shutdown.is_cancelled() {
                return Ok(Vec::new());
            }
            let working = working_list(&self.identity, first);
            let _: () = redis
                .sadd(format!("jobs:worklists:{}", self.identity), &working)
                .await?;
            // Claims straight into the working list: as reliable as the fetch script.
            let job: Option<Vec<u8>> = redis_rs::cmd("BLMOVE")
                .arg(format!("queue:{first}"))
                .arg(&working)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(block.as_secs_f64())
                .query_async(&mut *redis)
                .await?;
            let queue: Arc<str> = Arc::from(first.as_str());
            Ok(job
                .map(|raw| Self::fetched(&queue, raw))
                .into_iter()
                .collect())
        })
    }

    fn complete<'a>(&'a self, batch: &'a [(Lease, Outcome)]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut invocation = COMPLETE.prepare_invoke();
            for (lease, outcome) in batch {
                let Some(raw) = lease.raw.as_deref() else {
                    continue;
                };
                let working = working_list(&self.identity, &lease.queue);
                let (kind, target, score) = match outcome {
                    Outcome::Done => ("done", String::new(), 0.0),
                    Outcome::Release => ("release", format!("queue:{}", lease.queue), 0.0),
                    Outcome::Retry {
                        delay,
                        retry_count,
                        error,
                    } => (
                        "retry",
                        failed_job(raw, &lease.queue, error, *retry_count),
                        now_secs() + delay.as_secs_f64(),
                    ),
                    Outcome::Dead {
                        error, attempts, ..
                    } => (
                        "dead",
                        failed_job(raw, &lease.queue, error, *attempts),
                        now_secs(),
                    ),
                };
                invocation
                    .arg(kind)
                    .arg(working)
                    .arg(raw)
                    .arg(target)
                    .arg(score);
            }
            let mut conn = self.fetch_conn().await?;
            let _: i64 = invocation
                .invoke_async(conn.unnamespaced_borrow_mut())
                .await?;
            Ok(())
        })
    }

    fn extend<'a>(
        &'a self,
        leases: &'a [Lease],
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        // A Redis lease is the process's heartbeat: one beat covers every running job.
        Box::pin(async move {
            let mut conn = self.fetch_conn().await?;
            let _: i64 = HEARTBEAT
                .arg(&self.identity)
                .arg(lease.as_secs_f64())
                .invoke_async(conn.unnamespaced_borrow_mut())
                .await?;
            self.put_back_orphans(conn.unnamespaced_borrow_mut(), leases)
                .await
        })
    }

    fn maintain(&self, _lease: Duration) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let mut conn = self.fetch_conn().await?;
            let moved: i64 = RECOVER
                .arg(&self.identity)
                .invoke_async(conn.unnamespaced_borrow_mut())
                .await?;
            if moved > 0 {
                tracing::warn!(
                    jobs = moved,
                    "recovered the jobs of a processor that stopped heartbeating"
                );
            }
            Ok(())
        })
    }

    fn listen(
        &self,
        _queues: Vec<String>,
        _wake: Arc<Notify>,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        // Redis waits by blocking in `idle`; nothing to listen to.
        Box::pin(async move { stop.cancelled().await })
    }

    fn dead_list<'a>(
        &'a self,
        queue: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, Error>> {
        Box::pin(async move {
            let mut conn = self.enqueue.get().await.map_err(pool_error)?;
            let redis = conn.unnamespaced_borrow_mut();
            let mut letters = Vec::new();
            let mut start = 0;
            while letters.len() < limit {
                let page: Vec<(Vec<u8>, f64)> = redis
                    .zrevrange_withscores("dead", start, start + DEAD_PAGE - 1)
                    .await?;
                let exhausted = (page.len() as isize) < DEAD_PAGE;
                letters.extend(
                    page.into_iter()
                        .filter_map(|(raw, score)| dead_letter(&raw, score))
                        .filter(|letter| queue.is_none_or(|q| letter.queue == q)),
                );
                if exhausted {
                    break;
                }
                start += DEAD_PAGE;
            }
            letters.truncate(limit);
            Ok(letters)
        })
    }

    fn dead_retry<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<JobId, Error>> {
        Box::pin(async move {
            let raw = self.find_dead(id).await?;
            let mut job = match serde_json::from_slice(&raw) {
                Ok(Value::Object(fields)) => fields,
                _ => return Err(Error::DeadLetterNotFound(id.to_owned())),
            };
            for field in [
                "retry_count",
                "error_message",
                "error_class",
                "failed_at",
                "retried_at",
            ] {
                job.remove(field);
            }
            let queue = job
                .get("queue")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            job.insert("enqueued_at".into(), Value::from(now_secs()));
            let mut conn = self.enqueue.get().await.map_err(pool_error)?;
            let revived: i64 = REVIVE
                .arg(&raw)
                .arg(&queue)
                .arg(Value::Object(job).to_string())
                .invoke_async(conn.unnamespaced_borrow_mut())
                .await?;
            if revived == 0 {
                return Err(Error::DeadLetterNotFound(id.to_owned()));
            }
            Ok(JobId::from(id.to_owned()))
        })
    }

    fn dead_delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let raw = self.find_dead(id).await?;
            let mut conn = self.enqueue.get().await.map_err(pool_error)?;
            let removed: i64 = conn.unnamespaced_borrow_mut().zrem("dead", &raw).await?;
            if removed == 0 {
                return Err(Error::DeadLetterNotFound(id.to_owned()));
            }
            Ok(())
        })
    }
}

impl SidekiqBackend {
    /// The stored dead job whose jid is `jid` (as Sidekiq's `find_job` does, by scanning).
    async fn find_dead(&self, jid: &str) -> Result<Vec<u8>, Error> {
        let mut conn = self.enqueue.get().await.map_err(pool_error)?;
        let redis = conn.unnamespaced_borrow_mut();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<Vec<u8>>) = redis_rs::cmd("ZSCAN")
                .arg("dead")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("*{jid}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut *redis)
                .await?;
            // ZSCAN returns member, score, member, score…
            if let Some(found) = page.chunks(2).map(|pair| &pair[0]).find(|raw| {
                serde_json::from_slice::<Value>(raw)
                    .ok()
                    .and_then(|job| job.get("jid").and_then(Value::as_str).map(|j| j == jid))
                    .unwrap_or(false)
            }) {
                return Ok(found.clone());
            }
            if next == 0 {
                return Err(Error::DeadLetterNotFound(jid.to_owned()));
            }
            cursor = next;
        }
    }
}

fn dead_letter(raw: &[u8], score: f64) -> Option<DeadLetter> {
    let job: Map<String, Value> = match serde_json::from_slice(raw) {
        Ok(Value::Object(fields)) => fields,
        _ => return None,
    };
    let text = |key: &str| job.get(key).and_then(Value::as_str).map(str::to_owned);
    let time = |secs: f64| chrono::DateTime::from_timestamp_micros((secs * 1e6) as i64);
    let jid = text("jid")?;
    Some(DeadLetter {
        id: jid.clone(),
        queue: text("queue").unwrap_or_else(|| "default".to_owned()),
        job_id: JobId::from(jid),
        worker: text("class"),
        error: text("error_message").unwrap_or_default(),
        attempts: job
            .get("retry_count")
            .and_then(Value::as_u64)
            .map_or(1, |n| u32::try_from(n + 1).unwrap_or(u32::MAX)),
        enqueued_at: job.get("created_at").and_then(Value::as_f64).and_then(time),
        failed_at: time(score).unwrap_or_default(),
        message: Some(Value::Object(job)),
    })
}
