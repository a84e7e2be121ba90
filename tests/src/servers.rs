//! Throwaway servers for the tests that stop, restart or cut off their backend: each runs on a
//! free loopback port with its own data directory, so the other tests never notice.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A free TCP port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(command: &mut Command) {
    let out = command.output().expect("run a server command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL cluster of its own (`initdb`, `pg_ctl`), stopped and removed on drop.
pub struct ThrowawayPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl ThrowawayPostgres {
    /// Creates and starts a cluster; trust authentication, user `postgres`, no fsync.
    pub fn start() -> Self {
        let bin = postgres_bin();
        let port = free_port();
        // Under /tmp, not $TMPDIR: the `postgres` user must be able to write there, and the
        // socket path must stay short.
        let dir = PathBuf::from(format!("/tmp/jobs-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let server = Self { bin, dir, port };
        run(server
            .as_owner("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&server.dir));
        server.up();
        server
    }

    /// The connection URL. Authentication is `trust`, so the password is ignored: it is there
    /// so that logs can be checked for it.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            Self::PASSWORD,
            self.port
        )
    }

    /// The password in [`url`](Self::url), which must never be logged.
    pub const PASSWORD: &'static str = "throwaway-secret";

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn down(&self) {
        run(self
            .as_owner("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.dir));
    }

    /// Starts the stopped server again on the same port and data.
    pub fn up(&self) {
        let log = self.dir.join("server.log");
        run(self
            .as_owner("pg_ctl")
            .args(["start", "-w", "-D"])
            .arg(&self.dir)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
                self.port,
                self.dir.display()
            )));
    }

    /// `tool` of this PostgreSQL, run as the `postgres` user when we are root (which
    /// PostgreSQL refuses to run as).
    fn as_owner(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.stdin(Stdio::null());
        command
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// The newest installed PostgreSQL's binaries (Debian keeps them per version).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql")
        .1
}

/// A Redis server of its own, with an append-only file synced on every write so a restart
/// keeps what it held; killed and removed on drop.
pub struct ThrowawayRedis {
    dir: PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl ThrowawayRedis {
    /// Starts a server and waits until it answers.
    pub async fn start() -> Self {
        let port = free_port();
        let dir = PathBuf::from(format!("/tmp/jobs-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the Redis directory");
        let mut server = Self {
            dir,
            port,
            child: None,
        };
        server.up().await;
        server
    }

    /// The connection URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port and data, and waits until it answers.
    pub async fn up(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_for_redis(&self.url()).await;
        // Answered by ours, not by a server that took the port first (ours would have exited).
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "redis-server could not start on port {}",
            self.port
        );
        self.child = Some(child);
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn wait_for_redis(url: &str) {
    let client = redis::Client::open(url).expect("a Redis URL");
    for _ in 0..100 {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
            if pong.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server on {url} did not answer");
}
