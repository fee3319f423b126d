//! `marketplace-migrate --service user --database-url postgres://...`
//!
//! Used by `make up`, by the tests (as a library) and by the Kubernetes migration Jobs.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Apply a service's SQL migrations to one database (each once, concurrency-safe)")]
struct Args {
    /// The service whose migrations to apply: user, product or order.
    #[arg(long)]
    service: String,
    /// The database's connection string (also read from DATABASE_URL).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The repository root holding components/<service>/migrations.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let migrations =
        marketplace_migrate::load(&marketplace_migrate::service_dir(&args.root, &args.service))?;
    let applied = marketplace_migrate::apply(&args.database_url, &migrations).await?;
    if applied.is_empty() {
        println!(
            "{}: up to date ({} migrations)",
            args.service,
            migrations.len()
        );
    } else {
        println!("{}: applied {}", args.service, applied.join(", "));
    }
    Ok(())
}
