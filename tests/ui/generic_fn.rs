#![allow(unused)]

use jobs::{worker, Pg};

#[worker(enqueuer = Pg)]
async fn any_args<T: serde::de::DeserializeOwned>(args: T) -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
