#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg)]
async fn silent(n: u64) {}

fn main() {}
