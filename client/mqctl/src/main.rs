//! `mqctl`: the admin and debugging CLI. Noun-verb commands like `rpk` and `kafka-topics`;
//! `--output json` where it prints data; errors on stderr and a non-zero exit code on failure.
//! The clap tree is in `args.rs`, each noun's commands in `commands/`.

use std::process::ExitCode;

use clap::Parser;
use mq_client::{Client, ClientConfig};

use crate::args::{Cli, Command};

mod args;
mod commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    use commands::{broker, cluster, consume, group, produce, queue, topic};

    let client = Client::new(ClientConfig::new([cli.server.clone()]))?;
    let mut out = std::io::stdout().lock();
    let output = cli.output;
    match cli.command {
        Command::Topic(command) => topic::run(&client, command, output, &mut out).await?,
        Command::Produce(args) => return produce::run(&client, args, output, &mut out).await,
        Command::Consume(args) => consume::run(&client, args, output, &mut out).await?,
        Command::Cluster(command) => cluster::run(&client, command, output, &mut out).await?,
        Command::Broker(command) => broker::run(&client, command, output, &mut out).await?,
        Command::Group(command) => group::run(&client, command, output, &mut out).await?,
        Command::Queue(command) => queue::run(&client, command, output, &mut out).await?,
        Command::Dlq(command) => queue::run_dlq(&client, command, &mut out).await?,
    }
    Ok(ExitCode::SUCCESS)
}
