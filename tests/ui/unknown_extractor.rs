#![allow(unused)]

use jobs::{worker, Pg};

struct Database;

#[worker(enqueuer = Pg)]
async fn lookup(n: u64, db: Database) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
