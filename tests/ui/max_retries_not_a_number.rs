#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg, max_retries = -1)]
async fn negative(n: u64) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
