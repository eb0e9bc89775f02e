//! The process-level test harness: starts the real `mq-broker` binary on a reserved port with
//! its own data directory and log file, kills (`SIGKILL`), stops (`SIGTERM`) and restarts it,
//! waits for conditions with named deadlines, prints a node's log when a test fails, and fails
//! a test when a node panicked.
//!
//! Binaries come from the cargo target directory this test binary lives in; `cargo build
//! --workspace --bins` (which `.ci/run` does first) puts them there.

pub mod workload;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mq_client::{Client, ClientConfig};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tempfile::TempDir;

/// Path of a workspace binary in the target directory of the running test or tool.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Tests run from target/<profile>/deps/, tools from target/<profile>/.
    let mut dir = exe.parent().expect("exe has a directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps has a parent");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A free port on 127.0.0.1 (bound once, then released for the node to take).
pub fn reserve_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("reserve a port")
}

/// Polls `condition` every 20 ms until it returns `Some`, or fails naming `what` after
/// `timeout`.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut condition: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the gRPC health service at `address` reports SERVING.
pub async fn wait_serving(address: &str, timeout: Duration) -> anyhow::Result<()> {
    let uri = format!("http://{address}");
    wait_until(&format!("{address} to serve"), timeout, || {
        let uri = uri.clone();
        async move {
            let channel = tonic::transport::Endpoint::from_shared(uri)
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let reply = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?;
            let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
            (reply.into_inner().status == serving).then_some(())
        }
    })
    .await
}

/// A standalone node process under test.
#[derive(Debug)]
pub struct Node {
    name: String,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    // Owns the directory: removed when the node is dropped.
    _dir: TempDir,
    starts: u32,
}

impl Node {
    /// Starts a standalone node and waits until it reports SERVING.
    pub async fn start_standalone(name: &str) -> anyhow::Result<Self> {
        Self::start_with(name, &[]).await
    }

    /// Starts a standalone node with extra `mq-broker` arguments.
    pub async fn start_with(name: &str, extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mq-{name}-"))
            .tempdir()?;
        let mut node = Self {
            name: name.to_owned(),
            port: reserve_port(),
            data_dir: dir.path().join("data"),
            log_path: dir.path().join("node.log"),
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
            _dir: dir,
            starts: 0,
        };
        node.spawn()?;
        node.wait_ready().await?;
        Ok(node)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn client(&self) -> Client {
        Client::new(ClientConfig::new([self.address()])).expect("client")
    }

    /// The `mq-broker` command line of this node (for a second start on the same directory).
    pub fn command(&self, port: u16) -> Command {
        let mut command = Command::new(binary("mq-broker"));
        command
            .arg("--standalone")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&self.extra_args)
            .env("MQ_LOG", "info,openraft=warn");
        command
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        use std::io::Write;
        writeln!(
            &log,
            "==== start #{} of node {} ====",
            self.starts, self.name
        )?;
        let child = self
            .command(self.port)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn mq-broker")?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the node's health service reports SERVING (bounded).
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let outcome = wait_serving(&self.address(), Duration::from_secs(30)).await;
        if outcome.is_err()
            && let Some(status) = self.try_exit_status()
        {
            bail!(
                "node {} exited with {status} before serving:\n{}",
                self.name,
                self.log()
            );
        }
        outcome
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and reap the process.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then wait (bounded) for the process to exit; returns its status.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("node {} is not running", self.name);
        };
        signal(child.id(), Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!("node {} did not stop within 30 s of SIGTERM", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the process again on the same data directory and port, and waits until ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("node {} is still running", self.name);
        }
        self.spawn()?;
        self.wait_ready().await
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Fails if the node's log shows a panic.
    pub fn assert_no_panic(&self) {
        let log = self.log();
        assert!(
            !log.contains("panicked at"),
            "node {} panicked:\n{log}",
            self.name
        );
    }
}

fn signal(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let pid = Pid::from_raw(i32::try_from(pid)?);
    nix::sys::signal::kill(pid, signal).with_context(|| format!("kill({pid}, {signal})"))
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- log of node {} ----\n{}\n---- end of log ----",
                self.name,
                self.log()
            );
        } else if self.log().contains("panicked at") {
            eprintln!(
                "---- log of node {} ----\n{}\n---- end of log ----",
                self.name,
                self.log()
            );
            panic!("node {} panicked (see its log above)", self.name);
        }
    }
}
