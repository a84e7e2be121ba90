#![allow(unused)]

use jobs::{worker, Pg, Sidekiq};

#[worker(enqueuer = Pg, drain = [Sidekiq, Pg])]
async fn circular(n: u64) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
