//! The process-level test harness: starts the real binaries (`mq-broker`, standalone or as a
//! cluster member, and `mq-cluster-manager`) on reserved ports, each with its own data
//! directory and log file; kills (`SIGKILL`), pauses (`SIGSTOP`/`SIGCONT`), stops (`SIGTERM`)
//! and restarts them; waits for conditions with named deadlines; prints a node's log when a
//! test fails, and fails a test when a node panicked. [`cluster::Cluster`] builds whole
//! clusters from these nodes.
//!
//! Binaries come from the cargo target directory this test binary lives in; `cargo build
//! --workspace --bins` (which `.ci/run` does first) puts them there.

pub mod chaos;
pub mod cluster;
pub mod metrics;
pub mod net;
pub mod workload;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// User+system CPU seconds of a process so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .context("malformed /proc stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let per_second =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("CLK_TCK")? as f64;
    Ok(ticks / per_second)
}

/// Resident memory of a process, bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kib * 1024)
}

/// A free port on 127.0.0.1 (bound once, then released for the node to take).
pub fn reserve_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("reserve a port")
}

/// Runs `mqctl` against `server` with `args` (what a user types after `mqctl`).
pub fn mqctl(server: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(binary("mqctl"))
        .env("MQ_SERVER", server)
        .args(args)
        .output()
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

/// A node process under test: one binary, its port, data directory and log.
#[derive(Debug)]
pub struct Node {
    name: String,
    program: &'static str,
    /// The address it listens on: loopback, or its own in a network namespace.
    host: String,
    /// The network namespace it runs in (see [`net::Net`]).
    namespace: Option<String>,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Where the log is copied when the node is dropped (besides `MQ_TEST_LOG_DIR`).
    keep_log_in: Option<PathBuf>,
    child: Option<Child>,
    /// The data directory is a tmpfs mount of this test's (unmounted when dropped).
    small_disk: bool,
    /// Where the node serves Prometheus metrics (see [`Node::with_metrics`]).
    metrics_port: Option<u16>,
    /// A delaying proxy every connection to the node goes through (see `mq-delay-proxy`).
    proxy: Option<DelayProxy>,
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
        let mut args = vec!["--standalone".to_owned()];
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        let mut node = Self::new(name, "mq-broker", reserve_port(), args)?;
        node.spawn()?;
        node.wait_ready().await?;
        Ok(node)
    }

    /// A node of `program` (not started) on `port`, run with `args` plus its own
    /// `--data-dir` and `--listen`.
    pub fn new(
        name: &str,
        program: &'static str,
        port: u16,
        args: Vec<String>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mq-{name}-"))
            .tempdir()?;
        Ok(Self {
            name: name.to_owned(),
            program,
            host: "127.0.0.1".to_owned(),
            namespace: None,
            port,
            data_dir: dir.path().join("data"),
            log_path: dir.path().join("node.log"),
            args,
            env: Vec::new(),
            keep_log_in: None,
            child: None,
            small_disk: false,
            proxy: None,
            metrics_port: None,
            _dir: dir,
            starts: 0,
        })
    }

    /// Puts the data directory on a tmpfs of `bytes` (needs root), before the node starts: a
    /// small disk, for tests of what happens when it fills up.
    pub fn on_small_disk(&mut self, bytes: u64) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)?;
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={bytes}"),
            "tmpfs",
            &self.data_dir.to_string_lossy(),
        ])?;
        self.small_disk = true;
        Ok(())
    }

    /// Free bytes on the data directory's disk.
    pub fn free_disk_bytes(&self) -> anyhow::Result<u64> {
        let stats = nix::sys::statvfs::statvfs(&self.data_dir)?;
        Ok(stats.blocks_available() as u64 * stats.fragment_size() as u64)
    }

    /// Runs the node in network namespace `namespace`, listening on `ip`.
    pub fn in_namespace(mut self, namespace: String, ip: std::net::Ipv4Addr) -> Self {
        self.namespace = Some(namespace);
        self.host = ip.to_string();
        self
    }

    /// Serves Prometheus metrics (`GET /metrics`) on a port of its own; see
    /// [`Node::scrape_metrics`].
    pub fn with_metrics(mut self) -> Self {
        let port = reserve_port();
        self.metrics_port = Some(port);
        let address = format!("{}:{port}", self.host);
        self.with_env("MQ_SERVER__METRICS_LISTEN", &address)
    }

    /// Where the node serves metrics, with [`Node::with_metrics`].
    pub fn metrics_address(&self) -> Option<String> {
        self.metrics_port
            .map(|port| format!("{}:{port}", self.host))
    }

    /// The node's metrics now, parsed (needs [`Node::with_metrics`]).
    pub async fn scrape_metrics(&self) -> anyhow::Result<metrics::Scrape> {
        let Some(address) = self.metrics_address() else {
            bail!(
                "node {} serves no metrics (see Node::with_metrics)",
                self.name
            );
        };
        metrics::scrape(&address).await
    }

    /// Sets an environment variable of the node's process.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets (or with `None` removes) an environment variable for the node's next start.
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.env.retain(|(n, _)| n != name);
        if let Some(value) = value {
            self.env.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Copies the node's log into `dir` when the node is dropped.
    pub fn keep_log_in(mut self, dir: &Path) -> Self {
        self.keep_log_in = Some(dir.to_owned());
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Where clients and peers reach the node (through its proxy, if it has one).
    pub fn address(&self) -> String {
        let port = self.proxy.as_ref().map_or(self.port, |proxy| proxy.port);
        format!("{}:{port}", self.host)
    }

    /// Puts a delaying proxy in front of the node (before it starts): it advertises the
    /// proxy's address, so clients and peers connect through it, and
    /// [`Self::set_link_delay`] slows every connection to it.
    pub fn behind_delay_proxy(&mut self) {
        let port = reserve_port();
        self.args.extend([
            "--set".to_owned(),
            format!("server.advertised_address={}:{port}", self.host),
        ]);
        self.proxy = Some(DelayProxy {
            port,
            delay_file: self.log_path.with_file_name("delay_ms"),
            child: None,
        });
    }

    /// Delays everything sent to and from the node by `delay` (needs a proxy).
    pub fn set_link_delay(&self, delay: Duration) -> anyhow::Result<()> {
        let proxy = self.proxy.as_ref().context("the node has no delay proxy")?;
        std::fs::write(&proxy.delay_file, delay.as_millis().to_string())?;
        Ok(())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn client(&self) -> Client {
        Client::new(ClientConfig::new([self.address()])).expect("client")
    }

    /// The command line of this node listening on `port` (another port gives a second start
    /// on the same directory).
    pub fn command(&self, port: u16) -> Command {
        let mut command = self.in_own_namespace(self.program);
        command
            .args(&self.args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("{}:{port}", self.host))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "MQ_LOG",
                // `MQ_TEST_NODE_LOG` overrides the nodes' log filter (e.g. to debug one crate).
                std::env::var("MQ_TEST_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            );
        command
    }

    /// Starts the process (without waiting for it to serve).
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("node {} is already running", self.name);
        }
        self.spawn_proxy()?;
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
            .with_context(|| format!("spawn {}", self.program))?;
        self.child = Some(child);
        Ok(())
    }

    /// A command running `program` in the node's network namespace, if it has one (`ip netns
    /// exec` execs the program: the child's pid is the program's).
    fn in_own_namespace(&self, program: &str) -> Command {
        match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", namespace])
                    .arg(binary(program));
                command
            }
            None => Command::new(binary(program)),
        }
    }

    /// Starts the node's proxy, once (it outlives the node's restarts).
    fn spawn_proxy(&mut self) -> anyhow::Result<()> {
        if self.proxy.as_ref().is_none_or(|p| p.child.is_some()) {
            return Ok(());
        }
        let upstream = format!("{}:{}", self.host, self.port);
        let listen = self.address();
        let mut command = self.in_own_namespace("mq-delay-proxy");
        let proxy = self.proxy.as_mut().expect("checked above");
        let child = command
            .args(["--listen", &listen, "--upstream", &upstream, "--delay-file"])
            .arg(&proxy.delay_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn mq-delay-proxy")?;
        proxy.child = Some(child);
        Ok(())
    }

    /// Waits until the node's health service reports SERVING (bounded).
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        self.wait_ready_within(Duration::from_secs(30)).await
    }

    /// Waits until the node's health service reports SERVING, at most `timeout`.
    pub async fn wait_ready_within(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let outcome = wait_serving(&self.address(), timeout).await;
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

    /// SIGSTOP: the process stays, frozen, until [`Self::resume`].
    pub fn pause(&self) -> anyhow::Result<()> {
        match self.pid() {
            Some(pid) => signal(pid, Signal::SIGSTOP),
            None => bail!("node {} is not running", self.name),
        }
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) -> anyhow::Result<()> {
        match self.pid() {
            Some(pid) => signal(pid, Signal::SIGCONT),
            None => bail!("node {} is not running", self.name),
        }
    }

    /// SIGTERM, then wait (bounded) for the process to exit; returns its status.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.send_terminate()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.exit_status()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill9()?;
                bail!("node {} did not stop within 30 s of SIGTERM", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM without waiting: the process goes through its shutdown while the caller
    /// watches what it does, polling [`Self::exit_status`] to learn when it is gone.
    pub fn send_terminate(&self) -> anyhow::Result<()> {
        match self.pid() {
            Some(pid) => signal(pid, Signal::SIGTERM),
            None => bail!("node {} is not running", self.name),
        }
    }

    /// The process's exit status once it has exited (it is reaped then, and the node counts
    /// as stopped); `None` while it still runs. Anything observed before a call that returns
    /// `None` happened while the process was alive.
    pub fn exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            bail!("node {} is not running", self.name);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
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
        let _ = self.resume();
        let _ = self.kill9();
        if let Some(mut child) = self.proxy.as_mut().and_then(|p| p.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.small_disk {
            let _ = mount_command("umount")
                .args(["-l", &self.data_dir.to_string_lossy()])
                .status();
        }
        // MQ_TEST_LOG_DIR keeps every node's log for a look after the test.
        let dirs = std::env::var_os("MQ_TEST_LOG_DIR")
            .map(PathBuf::from)
            .into_iter()
            .chain(self.keep_log_in.clone());
        for dir in dirs {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(
                &self.log_path,
                dir.join(format!("{}-{}.log", self.name, self.port)),
            );
        }
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

fn mount_command(program: &str) -> Command {
    let mut command = Command::new(program);
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

fn mount(args: &[&str]) -> anyhow::Result<()> {
    let output = mount_command("mount").args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "mount {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A node's delaying proxy process.
#[derive(Debug)]
struct DelayProxy {
    port: u16,
    delay_file: PathBuf,
    child: Option<Child>,
}
