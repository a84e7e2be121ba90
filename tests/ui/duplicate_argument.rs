#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg, queue = "a", queue = "b")]
async fn twice(n: u64) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
