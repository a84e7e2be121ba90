#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg)]
async fn counts(n: u64) -> u64 {
    n
}

fn main() {}
