//! `spin-test-host up`: a `spin up` look-alike for local development.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use spin_test_host::{App, HostOptions};

#[derive(Parser)]
#[command(
    name = "spin-test-host",
    version,
    about = "Spin-compatible dev/test host (wasmtime)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the application like `spin up`.
    Up(UpArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// The application manifest (spin.toml).
    #[arg(
        short = 'f',
        long = "from",
        alias = "file",
        default_value = "spin.toml"
    )]
    from: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Spin runtime-config file.
    #[arg(long = "runtime-config-file")]
    runtime_config_file: Option<PathBuf>,
    /// Set a variable (`name=value`); may be repeated.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// Append component stdout/stderr to this file instead of stderr.
    #[arg(long = "component-log-file")]
    component_log_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up(args).await,
    };
    if let Err(e) = result {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

async fn up(args: UpArgs) -> Result<()> {
    let mut variables = HashMap::new();
    for v in &args.variables {
        let (k, val) = v
            .split_once('=')
            .with_context(|| format!("--variable {v:?} is not NAME=VALUE"))?;
        variables.insert(k.to_string(), val.to_string());
    }
    let opts = HostOptions {
        runtime_config: args.runtime_config_file.clone(),
        variables,
        read_env: true,
        outbound_interceptor: None,
        log_file: args.component_log_file.clone(),
    };
    let app = App::load(&args.from, opts).await?;
    for (label, summary) in app.key_value_stores() {
        println!("Storing {label} key-value data to {summary}.");
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("Unable to listen on {}", args.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("\nServing {base}");
    println!("Available Routes:");
    for (route, component) in app.routes() {
        println!("  {component}: {base}{route}");
    }
    tokio::select! {
        r = app.serve(listener) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
