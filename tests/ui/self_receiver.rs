#![allow(unused)]

use jobs::{worker, Pg};

struct Mailer;

impl Mailer {
    #[worker(enqueuer = Pg)]
    async fn send(&self, n: u64) -> anyhow::Result<()> {
        Ok(())
    }
}

fn main() {}
