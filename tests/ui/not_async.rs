#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg)]
fn blocking(n: u64) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
