//! `mqctl topic ...`: create, list, describe and delete topics.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use mq_client::{Client, NewTopic, TopicDescription};

use super::{optional, print_json};
use crate::args::{Output, TopicCommand};

pub async fn run(
    client: &Client,
    command: TopicCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let topic = new_topic(partitions, replication_factor, configs)?;
            create(client, &name, topic, output, out).await
        }
        TopicCommand::List => list(client, output, out).await,
        TopicCommand::Describe { name } => {
            let topic = client.describe_topic(&name).await?;
            match output {
                Output::Json => print_json(out, &topic),
                Output::Text => write_description(out, &topic),
            }
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            if output == Output::Text {
                writeln!(out, "deleted topic {name}")?;
            }
            Ok(())
        }
    }
}

/// The topic the flags of `topic create` ask for (`--config` as KEY=VALUE).
fn new_topic(
    partitions: Option<u32>,
    replication_factor: Option<u32>,
    configs: Vec<String>,
) -> anyhow::Result<NewTopic> {
    let mut topic = NewTopic {
        partitions,
        replication_factor,
        configs: BTreeMap::new(),
    };
    for config in configs {
        let (key, value) = config
            .split_once('=')
            .with_context(|| format!("--config {config}: expected KEY=VALUE"))?;
        topic = topic.config(key, value);
    }
    Ok(topic)
}

async fn create(
    client: &Client,
    name: &str,
    topic: NewTopic,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let created = client.create_topic(name, topic).await?;
    match output {
        Output::Json => print_json(out, &created)?,
        Output::Text => writeln!(
            out,
            "created topic {} with {} partition(s), replication factor {}",
            created.name,
            created.partitions.len(),
            created.replication_factor
        )?,
    }
    Ok(())
}

async fn list(client: &Client, output: Output, out: &mut impl Write) -> anyhow::Result<()> {
    let topics = client.list_topics().await?;
    match output {
        Output::Json => print_json(out, &topics)?,
        Output::Text => {
            writeln!(out, "{:<40} {:>10} {:>8}", "NAME", "PARTITIONS", "REPLICAS")?;
            for t in topics {
                writeln!(
                    out,
                    "{:<40} {:>10} {:>8}",
                    t.name, t.partitions, t.replication_factor
                )?;
            }
        }
    }
    Ok(())
}

fn write_description(out: &mut impl Write, topic: &TopicDescription) -> anyhow::Result<()> {
    writeln!(out, "NAME        {}", topic.name)?;
    writeln!(out, "ID          {}", topic.topic_id)?;
    writeln!(out, "PARTITIONS  {}", topic.partitions.len())?;
    writeln!(out, "REPLICAS    {}", topic.replication_factor)?;
    for (key, value) in &topic.configs {
        writeln!(out, "CONFIG      {key}={value}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:>9} {:>7} {:>14} {:>14}  REPLICAS (broker:in-sync:lag)",
        "PARTITION", "LEADER", "LOG-START", "HIGH-WATERMARK"
    )?;
    for p in &topic.partitions {
        let replicas: Vec<String> = p
            .replicas
            .iter()
            .map(|r| {
                format!(
                    "{}:{}:{}",
                    r.broker_id,
                    if r.in_sync { "yes" } else { "no" },
                    optional(r.lag_entries)
                )
            })
            .collect();
        writeln!(
            out,
            "{:>9} {:>7} {:>14} {:>14}  {}",
            p.partition,
            p.leader_id.map_or("-".to_owned(), |l| l.to_string()),
            optional(p.log_start_offset),
            optional(p.high_watermark),
            replicas.join(" ")
        )?;
    }
    Ok(())
}
