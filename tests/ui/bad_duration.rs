#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg, retry_delay = "soon")]
async fn vague(n: u64) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
