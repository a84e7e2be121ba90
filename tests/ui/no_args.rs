#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg)]
async fn nothing() -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
