//! A small web service in the seed's spirit: the HTTP handler enqueues and returns at once; the
//! processors run the jobs in the same process (or in others: `ROLE=web` serves HTTP only,
//! `ROLE=worker` runs jobs only).
//!
//! Configuration from the environment: `DATABASE_URL`, `REDIS_URL`, `BIND` (default
//! `127.0.0.1:3000`), `ROLE` (`all`, `web` or `worker`; default `all`), `MAIL_FROM`.
//!
//! ```sh
//! DATABASE_URL=postgres://… REDIS_URL=redis://127.0.0.1:6379 cargo run -p jobs-example-service
//! curl -X POST localhost:3000/signups -H 'content-type: application/json' -d '{"email":"a@b.c"}'
//! ```

mod workers;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use jobs::Jobs;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use workers::{Mailer, SendReceipt, SendWelcomePg, SendWelcomeRedis, Welcome};

struct Config {
    database_url: String,
    redis_url: String,
    bind: String,
    role: String,
    mail_from: String,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("set {name}"));
        let or = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        Ok(Self {
            database_url: var("DATABASE_URL")?,
            redis_url: var("REDIS_URL")?,
            bind: or("BIND", "127.0.0.1:3000"),
            role: or("ROLE", "all"),
            mail_from: or("MAIL_FROM", "hello@example.com"),
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct Signup {
    pub email: String,
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub welcome_pg: String,
    pub welcome_redis: String,
    pub receipt: String,
}

/// Enqueues the slow work and answers at once with the jobs' ids.
async fn signup(
    Json(signup): Json<Signup>,
) -> Result<(StatusCode, Json<Accepted>), (StatusCode, String)> {
    let mail = Welcome {
        email: signup.email,
    };
    let unavailable = |err: jobs::Error| (StatusCode::SERVICE_UNAVAILABLE, err.to_string());
    let welcome_pg = SendWelcomePg::enqueue(mail.clone())
        .await
        .map_err(unavailable)?;
    let welcome_redis = SendWelcomeRedis::enqueue(mail.clone())
        .await
        .map_err(unavailable)?;
    let receipt = SendReceipt::enqueue(mail).await.map_err(unavailable)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            welcome_pg: welcome_pg.to_string(),
            welcome_redis: welcome_redis.to_string(),
            receipt: receipt.to_string(),
        }),
    ))
}

fn router() -> Router {
    Router::new().route("/signups", post(signup))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let jobs = Jobs::builder()
        .postgres(&config.database_url)
        .redis(&config.redis_url)
        .state(Mailer {
            from: config.mail_from.clone(),
        })
        .connect()
        .await?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });

    let processors = (config.role != "web").then(|| {
        let runner = jobs.clone();
        let token = shutdown.clone();
        tokio::spawn(async move { runner.run(token).await })
    });
    if config.role != "worker" {
        let listener = tokio::net::TcpListener::bind(&config.bind).await?;
        println!("listening on http://{}", config.bind);
        let token = shutdown.clone();
        axum::serve(listener, router())
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await?;
    }
    if let Some(processors) = processors {
        processors.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobs::testing::Fake;

    #[tokio::test]
    async fn a_signup_enqueues_the_mails_and_answers_at_once() {
        let fake = Fake::new().state(Mailer {
            from: "test@example.com".into(),
        });
        let (status, Json(accepted)) = fake
            .scope(signup(Json(Signup {
                email: "ada@example.com".into(),
            })))
            .await
            .expect("accepted");
        assert_eq!(status, StatusCode::ACCEPTED);
        let mail = Welcome {
            email: "ada@example.com".into(),
        };
        fake.assert_enqueued::<SendWelcomePg>(&mail);
        fake.assert_enqueued::<SendWelcomeRedis>(&mail);
        fake.assert_enqueued::<SendReceipt>(&mail);
        assert_ne!(accepted.welcome_pg, accepted.welcome_redis);
        let report = fake.drain().await;
        assert_eq!(report.succeeded, 3);
        assert!(report.dead.is_empty());
    }
}
