#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg, queue = "Mail-ers")]
async fn shouting(n: u64) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
