#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg)]
async fn code(n: u64) -> Result<(), u32> {
    Ok(())
}

fn main() {}
