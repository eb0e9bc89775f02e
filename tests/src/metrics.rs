//! A node's Prometheus metrics, fetched over HTTP (`GET /metrics`) and parsed, for tests that
//! check the names exist and counts move, and for benches that print the stage histograms.

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use prometheus_parse::Value;

/// One scrape of a node's metrics.
#[derive(Debug)]
pub struct Scrape(prometheus_parse::Scrape);

/// Fetches and parses `http://{address}/metrics`.
pub async fn scrape(address: &str) -> anyhow::Result<Scrape> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("metrics endpoint {address}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get("/metrics")
        .header(hyper::header::HOST, address)
        .body(Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        bail!("GET http://{address}/metrics: {}", response.status());
    }
    let body = response.into_body().collect().await?.to_bytes();
    drop(sender);
    connection.await??;
    let text = String::from_utf8(body.to_vec())?;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))?;
    Ok(Scrape(scrape))
}

impl Scrape {
    /// Whether any sample is named `name` (a summary's quantiles, `_sum` and `_count` count
    /// under their own names).
    pub fn has(&self, name: &str) -> bool {
        self.0.samples.iter().any(|sample| sample.metric == name)
    }

    /// The sum of every sample named `name` whose labels include `labels` (counters, gauges;
    /// a summary's `_count` and `_sum`).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels)
            .filter_map(|value| match value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
                _ => None,
            })
            .sum()
    }

    /// Quantile `q` of summary `name` with `labels` (the exporter's rolling window), the
    /// highest over the label sets that match; `None` when there is none.
    pub fn quantile(&self, name: &str, labels: &[(&str, &str)], q: f64) -> Option<f64> {
        self.samples(name, labels)
            .filter_map(|value| match value {
                Value::Summary(counts) => counts
                    .iter()
                    .find(|count| (count.quantile - q).abs() < 1e-9)
                    .map(|count| count.count),
                _ => None,
            })
            .reduce(f64::max)
    }

    fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.0
            .samples
            .iter()
            .filter(move |sample| sample.metric == name)
            .filter(move |sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .map(|sample| &sample.value)
    }
}
