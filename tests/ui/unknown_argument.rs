#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg, retries = 3)]
async fn typo(n: u64) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
