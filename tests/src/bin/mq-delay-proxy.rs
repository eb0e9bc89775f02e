//! A TCP proxy that delays everything passing through it, both ways, by the milliseconds
//! written in a control file (read again every 100 ms; missing or empty: no delay). The chaos
//! harness puts one in front of each broker (in the broker's network namespace, so cut links
//! stay cut) to slow a link where the kernel has no `netem`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Parser)]
struct Args {
    /// Where clients connect.
    #[arg(long)]
    listen: SocketAddr,
    /// Where their connections go.
    #[arg(long)]
    upstream: SocketAddr,
    /// The file holding the delay in milliseconds.
    #[arg(long)]
    delay_file: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let delay_ms = Arc::new(AtomicU64::new(0));
    let watched = delay_ms.clone();
    tokio::spawn(async move {
        loop {
            let ms = std::fs::read_to_string(&args.delay_file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0);
            watched.store(ms, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let listener = TcpListener::bind(args.listen).await?;
    loop {
        let (inbound, _) = listener.accept().await?;
        let delay_ms = delay_ms.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(args.upstream).await else {
                return; // dropping `inbound` refuses the client as the node would
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::join!(
                pump(in_read, out_write, delay_ms.clone()),
                pump(out_read, in_write, delay_ms)
            );
        });
    }
}

/// Copies `from` to `to`, each chunk written `delay_ms` after it was read, in order.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay_ms: Arc<AtomicU64>) {
    let (chunks, mut due) = mpsc::channel::<(Instant, Bytes)>(256);
    let read = async move {
        let mut buffer = vec![0u8; 64 << 10];
        while let Ok(n) = from.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            let at = Instant::now() + Duration::from_millis(delay_ms.load(Ordering::Relaxed));
            if chunks
                .send((at, Bytes::copy_from_slice(&buffer[..n])))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
