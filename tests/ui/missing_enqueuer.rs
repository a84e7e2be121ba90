#![allow(unused)]

use jobs::worker;

#[worker(queue = "mailers")]
async fn no_backend(n: u64) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
