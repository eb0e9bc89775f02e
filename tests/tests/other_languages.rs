//! Guarantee: the gRPC API is usable from other languages with nothing but the proto or the
//! server itself. The Python example (client/examples/python) generates its stubs from
//! proto/mq/v1/mq.proto and produces, fetches, subscribes and reads structured errors against a
//! real node; grpcurl, given no proto file at all, discovers and drives the services through
//! server reflection.
//!
//! The interpreters come from a venv that tests/run-all.sh makes and names in `MQ_TEST_PYTHON`
//! and `MQ_TEST_GRPCURL`; without them the tests look in that venv's default place
//! (`$MQ_PYENV`, else `~/.cache/mq-pyenv`) and fail, not skip, when it is not there.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, ensure};
use mq_tests::Node;
use serde_json::{Value, json};

/// The executable named by `variable`, else `bin/<name>` of the default venv; an error
/// saying how to get it when it is not there.
fn tool(variable: &str, name: &str) -> anyhow::Result<PathBuf> {
    let (path, origin) = match std::env::var_os(variable) {
        Some(path) => (PathBuf::from(path), format!("named by {variable}")),
        None => {
            let venv = match std::env::var_os("MQ_PYENV") {
                Some(venv) => PathBuf::from(venv),
                None => PathBuf::from(std::env::var_os("HOME").context("HOME unset")?)
                    .join(".cache/mq-pyenv"),
            };
            let origin = format!("{variable} is unset, so looked in the default venv");
            (venv.join("bin").join(name), origin)
        }
    };
    ensure!(
        path.exists(),
        "{name} not found at {} ({origin}): run tests/run-all.sh, which installs it in a venv \
         and sets {variable}",
        path.display()
    );
    Ok(path)
}

/// Runs `program` with `args`, killed if it has not finished within `timeout`.
async fn run(program: &Path, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(timeout, child)
        .await
        .with_context(|| {
            format!(
                "{} {args:?} did not finish within {timeout:?}",
                program.display()
            )
        })?
        .with_context(|| format!("run {}", program.display()))
}

/// Both output streams, for assertion messages.
fn printed(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_example_produces_fetches_and_subscribes() -> anyhow::Result<()> {
    let python = tool("MQ_TEST_PYTHON", "python")?;
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/examples/python/example.py");
    let node = Node::start_standalone("python-example").await?;

    let output = run(
        &python,
        &[
            example.to_str().context("utf-8 path")?,
            "--server",
            &node.address(),
        ],
        Duration::from_secs(120),
    )
    .await?;
    let printed = printed(&output);
    assert!(
        output.status.success(),
        "the Python example failed:\n{printed}"
    );
    assert!(
        printed.contains("produced 12 records") && printed.contains("TOPIC_NOT_FOUND"),
        "unexpected summary:\n{printed}"
    );
    node.assert_no_panic();
    Ok(())
}

/// Standard base64 (what protobuf's JSON mapping uses for bytes).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

/// grpcurl against one server, with no proto files: every type comes from reflection.
struct Grpcurl {
    program: PathBuf,
    address: String,
}

impl Grpcurl {
    /// `grpcurl -plaintext [flags] ADDRESS [words]`, bounded.
    async fn run(&self, flags: &[&str], words: &[&str]) -> anyhow::Result<Output> {
        let mut args = vec!["-plaintext", "-max-time", "20"];
        args.extend(flags);
        args.push(&self.address);
        args.extend(words);
        run(&self.program, &args, Duration::from_secs(30)).await
    }

    /// The output of a run that must succeed.
    async fn ok(&self, words: &[&str]) -> anyhow::Result<String> {
        let output = self.run(&[], words).await?;
        ensure!(
            output.status.success(),
            "grpcurl {words:?} failed:\n{}",
            printed(&output)
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Calls `method` with a JSON request; its JSON reply, defaults included.
    async fn call(&self, method: &str, request: Value) -> anyhow::Result<Value> {
        let request = request.to_string();
        let output = self
            .run(&["-emit-defaults", "-d", &request], &[method])
            .await?;
        ensure!(
            output.status.success(),
            "{method} {request} failed:\n{}",
            printed(&output)
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_drives_the_server_through_reflection_alone() -> anyhow::Result<()> {
    let program = tool("MQ_TEST_GRPCURL", "grpcurl")?;
    let node = Node::start_standalone("grpcurl").await?;
    let grpcurl = Grpcurl {
        program,
        address: node.address(),
    };

    // Discovery: the services and their methods, with the proto's comments.
    let services = grpcurl.ok(&["list"]).await?;
    for service in [
        "mq.v1.Broker",
        "mq.v1.Admin",
        "mq.v1.Metadata",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.lines().any(|line| line == service),
            "{service} not listed:\n{services}"
        );
    }
    let broker = grpcurl.ok(&["describe", "mq.v1.Broker"]).await?;
    for rpc in ["Produce", "Fetch", "Subscribe", "ListOffsets"] {
        assert!(
            broker.contains(&format!("rpc {rpc} (")),
            "no {rpc} in:\n{broker}"
        );
    }

    let health = grpcurl
        .call("grpc.health.v1.Health/Check", json!({}))
        .await?;
    assert_eq!(health["status"], "SERVING", "{health}");

    let created = grpcurl
        .call(
            "mq.v1.Admin/CreateTopic",
            json!({"name": "grpcurl-orders", "partitions": 2}),
        )
        .await?;
    assert_eq!(created["topic"]["name"], "grpcurl-orders", "{created}");
    assert_eq!(
        created["topic"]["partitions"].as_array().map(Vec::len),
        Some(2)
    );

    // bytes fields are base64 in protobuf's JSON mapping.
    assert_eq!(
        [base64(b"customer-1"), base64(b"ab"), base64(b"app")],
        ["Y3VzdG9tZXItMQ==", "YWI=", "YXBw"]
    );
    let records = [
        ("customer-1", "order-1", "web"),
        ("customer-2", "order-2", "app"),
    ];
    let json_records: Vec<Value> = records
        .iter()
        .map(|(key, value, source)| {
            json!({
                "key": base64(key.as_bytes()),
                "value": base64(value.as_bytes()),
                "headers": [{"key": "source", "value": base64(source.as_bytes())}],
            })
        })
        .collect();
    let produced = grpcurl
        .call(
            "mq.v1.Broker/Produce",
            json!({"topic": "grpcurl-orders", "batches": [{"partition": 1, "records": json_records}]}),
        )
        .await?;
    let result = &produced["results"][0];
    assert_eq!(result["partition"], 1, "{produced}");
    assert_eq!(result["baseOffset"], "0", "{produced}"); // 64-bit integers are JSON strings
    assert_eq!(result["recordCount"], 2, "{produced}");
    assert!(result["error"].is_null(), "{produced}");

    let fetched = grpcurl
        .call(
            "mq.v1.Broker/Fetch",
            json!({"topic": "grpcurl-orders", "partition": 1, "offset": 0}),
        )
        .await?;
    let got = fetched["records"].as_array().context("no records")?;
    assert_eq!(got.len(), records.len(), "{fetched}");
    for (i, ((key, value, source), record)) in records.iter().zip(got).enumerate() {
        assert_eq!(record["offset"], i.to_string(), "{fetched}");
        assert_eq!(record["key"], base64(key.as_bytes()), "{fetched}");
        assert_eq!(record["value"], base64(value.as_bytes()), "{fetched}");
        assert_eq!(record["headers"][0]["key"], "source", "{fetched}");
        assert_eq!(
            record["headers"][0]["value"],
            base64(source.as_bytes()),
            "{fetched}"
        );
    }
    assert_eq!(fetched["highWatermark"], "2", "{fetched}");

    // Errors: the gRPC code, and the ErrorInfo detail decoded through reflection too.
    let request = json!({"topic": "no-such-topic", "batches": [{"records": json_records}]});
    let missing = grpcurl
        .run(&["-d", &request.to_string()], &["mq.v1.Broker/Produce"])
        .await?;
    let printed = printed(&missing);
    assert!(!missing.status.success(), "{printed}");
    assert!(printed.contains("Code: NotFound"), "{printed}");
    assert!(
        printed.contains(r#""reason":"TOPIC_NOT_FOUND""#),
        "{printed}"
    );

    node.assert_no_panic();
    Ok(())
}
