//! What every server process does the same way: its `[server]` settings, binding the listener,
//! the standard services (`grpc.health.v1`, reflection v1 and v1alpha), the Prometheus
//! endpoint, and serving until shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the gRPC server binds (clients and peers).
    pub listen: SocketAddr,
    /// Address other nodes and clients use to reach this one; defaults to `listen`.
    pub advertised_address: Option<String>,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where to serve Prometheus metrics over HTTP (`GET /metrics`); off when unset.
    pub metrics_listen: Option<SocketAddr>,
}

/// The broker's client port; other binaries set their own default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new(DEFAULT_LISTEN.parse().expect("valid default address"))
    }
}

impl ServerConfig {
    /// Settings listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            advertised_address: None,
            shutdown_grace: Duration::from_secs(10),
            metrics_listen: None,
        }
    }

    /// The address to advertise, given the address actually bound (port 0 resolved).
    pub fn advertised(&self, bound: SocketAddr) -> String {
        self.advertised_address
            .clone()
            .unwrap_or_else(|| bound.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics endpoint {address}: {reason}")]
    Metrics { address: SocketAddr, reason: String },
    #[error("gRPC server: {0}")]
    Serve(String),
}

/// A bound listener and the address it advertises.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
    pub advertised_address: String,
}

/// Installs the Prometheus endpoint when configured, then binds the gRPC listener.
pub async fn bind(config: &ServerConfig) -> Result<Bound, ServerError> {
    if let Some(address) = config.metrics_listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(address)
            .install()
            .map_err(|err| ServerError::Metrics {
                address,
                reason: err.to_string(),
            })?;
        tracing::info!(%address, "serving Prometheus metrics at /metrics");
    }
    let bind_error = |source| ServerError::Bind {
        address: config.listen,
        source,
    };
    let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    Ok(Bound {
        listener,
        local_addr,
        advertised_address: config.advertised(local_addr),
    })
}

/// A router with health (reported NOT_SERVING until the caller says otherwise) and server
/// reflection over `descriptor_sets` plus the health and `google.rpc` error-detail types, in
/// both reflection versions (grpcurl 1.8 speaks v1alpha, newer tools v1).
pub async fn standard_router(
    descriptor_sets: &[&'static [u8]],
) -> Result<(HealthReporter, Router), ServerError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let reflection = || {
        descriptor_sets
            .iter()
            .fold(
                tonic_reflection::server::Builder::configure(),
                |builder, set| builder.register_encoded_file_descriptor_set(set),
            )
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = reflection()
        .build_v1()
        .map_err(|err| ServerError::Serve(err.to_string()))?;
    let v1alpha = reflection()
        .build_v1alpha()
        .map_err(|err| ServerError::Serve(err.to_string()))?;
    let router = Server::builder()
        // Each open stream can hold up to about 1 MiB in HTTP/2 send buffers while its client
        // does not read: bound the streams one connection may open.
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .add_service(health_service)
        .add_service(v1)
        .add_service(v1alpha);
    Ok((health, router))
}

/// Concurrent streams (calls) one client connection may have open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// Serves `router` on `listener` (with TCP_NODELAY: small replies must not wait for Nagle)
/// until `shutdown`, then lets in-flight requests finish.
pub fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> JoinHandle<Result<(), ServerError>> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream {
            let _ = stream.set_nodelay(true);
        }
        stream
    });
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await })
            .await
            .map_err(|err| ServerError::Serve(err.to_string()))
    })
}

/// Waits for a served router to stop, at most `grace` after shutdown began.
pub async fn drain(
    server: JoinHandle<Result<(), ServerError>>,
    grace: Duration,
) -> Result<(), ServerError> {
    match tokio::time::timeout(grace, server).await {
        Ok(Ok(result)) => result,
        Ok(Err(err)) => Err(ServerError::Serve(err.to_string())),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "requests still in flight after the grace period; stopping anyway"
            );
            Ok(())
        }
    }
}
