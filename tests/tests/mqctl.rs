//! `mqctl` end to end against a real node: topic create / list / describe / delete, produce
//! from stdin, consume with formats and following the tail; errors go to stderr with a
//! non-zero exit code; the server comes from `--server` or `MQ_SERVER`.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mq_tests::{Node, binary};

/// Runs mqctl against `server` with `stdin`, bounded by 30 s.
fn mqctl(server: &str, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
    let mut child = Command::new(binary("mqctl"))
        .env("MQ_SERVER", server)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            anyhow::bail!("mqctl {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child.wait_with_output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqctl_manages_topics_and_moves_messages() -> anyhow::Result<()> {
    let node = Node::start_standalone("mqctl").await?;
    let server = node.address();
    let run = |args: &[&str], stdin: &str| mqctl(&server, args, stdin);

    let created = run(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "max.message.bytes=4096",
        ],
        "",
    )?;
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(stdout(&created).contains("created topic orders with 3 partition(s)"));

    let again = run(&["topic", "create", "orders"], "")?;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    let listed = run(&["topic", "list", "--output", "json"], "")?;
    let topics: serde_json::Value = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(topics[0]["name"], "orders");
    assert_eq!(topics[0]["partitions"], 3);

    let lines: String = (1..=100).map(|i| format!("line-{i}\n")).collect();
    let produced = run(&["produce", "orders", "--key", "customer-7"], &lines)?;
    assert!(produced.status.success(), "{}", stderr(&produced));
    assert!(stdout(&produced).contains("100 message(s) acknowledged, 0 failed"));

    let consumed = run(
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--num",
            "100",
            "--format",
            "%o %k %v",
        ],
        "",
    )?;
    assert!(consumed.status.success(), "{}", stderr(&consumed));
    let expected: Vec<String> = (1..=100)
        .map(|i| format!("{} customer-7 line-{i}", i - 1))
        .collect();
    assert_eq!(stdout(&consumed).lines().collect::<Vec<_>>(), expected);

    let described = run(&["topic", "describe", "orders", "--output", "json"], "")?;
    let topic: serde_json::Value = serde_json::from_slice(&described.stdout)?;
    let total: u64 = topic["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["high_watermark"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 100);
    assert_eq!(topic["configs"]["max.message.bytes"], "4096");
    let text = run(&["topic", "describe", "orders"], "")?;
    assert!(
        stdout(&text).contains("HIGH-WATERMARK"),
        "{}",
        stdout(&text)
    );

    // A failed produce: non-zero exit, the error on stderr.
    let too_big = run(
        &["produce", "orders", "--partition", "0"],
        &format!("{}\n", "x".repeat(5000)),
    )?;
    assert!(!too_big.status.success());
    assert!(
        stderr(&too_big).contains("max.message.bytes"),
        "{}",
        stderr(&too_big)
    );
    assert!(stdout(&too_big).contains("0 message(s) acknowledged, 1 failed"));
    let missing = run(&["produce", "no-such-topic"], "x\n")?;
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("does not exist"),
        "{}",
        stderr(&missing)
    );

    // Following the tail: a consumer waiting at the high watermark gets what is produced after.
    let tail_offset = topic["partitions"][1]["high_watermark"]
        .as_u64()
        .unwrap_or(0)
        .to_string();
    let server_for_tail = server.clone();
    let tail = tokio::task::spawn_blocking(move || {
        mqctl(
            &server_for_tail,
            &[
                "consume",
                "orders",
                "-p",
                "1",
                "-o",
                &tail_offset,
                "-n",
                "3",
            ],
            "",
        )
    });
    let produced = run(&["produce", "orders", "--partition", "1"], "a\nb\nc\n")?;
    assert!(produced.status.success(), "{}", stderr(&produced));
    let tail = tail.await??;
    assert!(tail.status.success(), "{}", stderr(&tail));
    assert_eq!(stdout(&tail), "a\nb\nc\n");

    let deleted = run(&["topic", "delete", "orders"], "")?;
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let gone = run(&["topic", "describe", "orders"], "")?;
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("does not exist"));

    // A topic re-created under the same name is a new, empty topic.
    let recreated = run(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--output",
            "json",
        ],
        "",
    )?;
    assert!(recreated.status.success(), "{}", stderr(&recreated));
    let recreated: serde_json::Value = serde_json::from_slice(&recreated.stdout)?;
    assert_ne!(recreated["topic_id"], topic["topic_id"]);
    let described = run(&["topic", "describe", "orders", "--output", "json"], "")?;
    let fresh: serde_json::Value = serde_json::from_slice(&described.stdout)?;
    for partition in fresh["partitions"].as_array().expect("partitions") {
        assert_eq!(partition["high_watermark"], 0, "{partition}");
    }
    node.assert_no_panic();
    Ok(())
}
