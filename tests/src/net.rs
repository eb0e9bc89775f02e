//! Separate hosts on one machine: every node in its own network namespace, each with one
//! veth link into a bridge that the test process (in the root namespace) also reaches, so
//! clients can always talk to every node while links between nodes are cut with nftables
//! rules inside the nodes' namespaces, or slowed with a token-bucket qdisc on a node's link.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and `tc`. Everything is removed on drop.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// A bridge and one namespace per host, on a /24 of 10.64.0.0/10 of their own.
#[derive(Debug)]
pub struct Net {
    id: u32,
    hosts: usize,
}

/// Whether this machine can make namespaced networks (root and the tools present).
pub fn available() -> bool {
    nix::unistd::geteuid().is_root()
        && ["ip", "nft", "tc"]
            .iter()
            .all(|tool| run(Command::new(tool).arg("-V")).is_ok())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Net {
    /// Makes `hosts` namespaces linked by a bridge.
    pub fn create(hosts: usize) -> anyhow::Result<Self> {
        assert!(hosts < 250, "one /24 per net");
        // Unique among concurrent test processes: the pid, and a counter within one.
        let base = (std::process::id() * 4 + NEXT.fetch_add(1, Ordering::Relaxed)) % 16_000;
        let mut id = base;
        while std::path::Path::new(&format!("/sys/class/net/mqb{id}")).exists() {
            id = (id + 1) % 16_000;
            if id == base {
                bail!("no free bridge name");
            }
        }
        let net = Self { id, hosts: 0 };
        let mut net = net;
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["link", "set", &bridge, "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway()),
            "dev",
            &bridge,
        ])?;
        for host in 0..hosts {
            let namespace = net.namespace(host);
            let veth = net.veth(host);
            ip(&["netns", "add", &namespace])?;
            net.hosts = host + 1;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            ip(&[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{}/24", net.host_ip(host)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("mqb{}", self.id)
    }

    fn veth(&self, host: usize) -> String {
        format!("mqv{}h{host}", self.id)
    }

    /// The network namespace of `host`.
    pub fn namespace(&self, host: usize) -> String {
        format!("mq{}n{host}", self.id)
    }

    fn subnet(&self) -> (u8, u8) {
        (64 + (self.id / 256) as u8, (self.id % 256) as u8)
    }

    fn gateway(&self) -> Ipv4Addr {
        let (b, c) = self.subnet();
        Ipv4Addr::new(10, b, c, 254)
    }

    /// The address of `host`.
    pub fn host_ip(&self, host: usize) -> Ipv4Addr {
        let (b, c) = self.subnet();
        Ipv4Addr::new(10, b, c, host as u8 + 1)
    }

    /// Cuts every link between hosts of different `groups` (hosts in no group keep all
    /// their links). Replaces any earlier cut.
    pub fn partition(&self, groups: &[Vec<usize>]) -> anyhow::Result<()> {
        let mut cuts = Vec::new();
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                for &x in a {
                    for &y in b {
                        cuts.push((x, y));
                    }
                }
            }
        }
        self.cut(&cuts)
    }

    /// Cuts the links between each pair of hosts (both directions). Replaces any earlier cut.
    pub fn cut(&self, pairs: &[(usize, usize)]) -> anyhow::Result<()> {
        self.heal()?;
        let mut blocked: Vec<Vec<Ipv4Addr>> = vec![Vec::new(); self.hosts];
        for &(a, b) in pairs {
            blocked[a].push(self.host_ip(b));
            blocked[b].push(self.host_ip(a));
        }
        for (host, peers) in blocked.iter().enumerate() {
            if peers.is_empty() {
                continue;
            }
            let set = peers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            // Dropped both ways, so neither side gets a reset: like a pulled cable.
            let rules = format!(
                "table inet chaos {{\n\
                 chain in {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n\
                 chain out {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n\
                 }}\n"
            );
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &self.namespace(host), "nft", "-f", "-"]);
            nft_with_input(command, &rules)?;
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&self) -> anyhow::Result<()> {
        for host in 0..self.hosts {
            // Fails when there is no table: nothing to heal there.
            let _ = run(Command::new("ip").args([
                "netns",
                "exec",
                &self.namespace(host),
                "nft",
                "delete",
                "table",
                "inet",
                "chaos",
            ]));
        }
        Ok(())
    }

    /// Slows `host`'s link both ways to `rate` (e.g. "1mbit"), queueing up to `latency`
    /// (e.g. "200ms") before dropping.
    pub fn slow(&self, host: usize, rate: &str, latency: &str) -> anyhow::Result<()> {
        let tbf = [
            "root", "tbf", "rate", rate, "burst", "16kb", "latency", latency,
        ];
        run(Command::new("tc")
            .args(["qdisc", "replace", "dev", &self.veth(host)])
            .args(tbf))?;
        run(Command::new("ip")
            .args(["netns", "exec", &self.namespace(host), "tc"])
            .args(["qdisc", "replace", "dev", "eth0"])
            .args(tbf))
    }

    /// Gives `host`'s link its full speed back.
    pub fn unslow(&self, host: usize) -> anyhow::Result<()> {
        let _ = run(Command::new("tc").args(["qdisc", "del", "dev", &self.veth(host), "root"]));
        let _ = run(Command::new("ip").args([
            "netns",
            "exec",
            &self.namespace(host),
            "tc",
            "qdisc",
            "del",
            "dev",
            "eth0",
            "root",
        ]));
        Ok(())
    }
}

fn nft_with_input(mut command: Command, input: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("spawn nft")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "nft -f failed: {}\n{input}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

impl Drop for Net {
    fn drop(&mut self) {
        for host in 0..self.hosts {
            // Deleting the namespace deletes its end of the veth pair, and so the pair.
            let _ = ip(&["netns", "del", &self.namespace(host)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}
