//! Applies `components/<service>/migrations/NNNN_name.sql` to one database, each file once.
//!
//! Safety when several runners start at once (two Kubernetes Job pods, parallel tests): the
//! whole run holds a PostgreSQL session advisory lock, so runners queue; each file runs in its
//! own transaction together with its row in `schema_migrations`, so a file is either applied
//! and recorded or neither. A file changed after it was applied is refused (checksum), because
//! the database would silently differ from what the repository says.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

/// Key of the advisory lock every runner takes (any constant shared by all runners works).
const LOCK_KEY: i64 = 0x6d61_726b_6574; // "market"

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The file name, e.g. `0001_init.sql`; its order is the order of application.
    pub name: String,
    pub sql: String,
}

impl Migration {
    fn checksum(&self) -> String {
        format!("{:x}", Sha256::digest(self.sql.as_bytes()))
    }
}

/// The migrations directory of a service under the repository root.
pub fn service_dir(root: &Path, service: &str) -> PathBuf {
    root.join("components").join(service).join("migrations")
}

/// Reads `dir/*.sql`, sorted by name. Names must start with a number (`0001_...`).
pub fn load(dir: &Path) -> Result<Vec<Migration>> {
    let mut migrations = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            bail!("migration {name} must start with its number, e.g. 0001_init.sql");
        }
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        migrations.push(Migration { name, sql });
    }
    migrations.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(migrations)
}

/// Applies what is not applied yet; returns the names applied by this run.
///
/// TLS as the services get it (production: `sslmode=require`): unless the connection string
/// says `sslmode=disable`, the server's certificate chain and host name are verified against
/// `PGSSLROOTCERT` (a PEM file: the database CA) or, without it, the public web roots.
pub async fn apply(database_url: &str, migrations: &[Migration]) -> Result<Vec<String>> {
    let config: tokio_postgres::Config = database_url
        .parse()
        .context("parsing the connection string")?;
    let (mut client, conn) = if config.get_ssl_mode() == SslMode::Disable {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .context("connecting to the database")?;
        (
            client,
            tokio::spawn(async move { connection.await.map(|_| ()) }),
        )
    } else {
        let (client, connection) = config
            .connect(tls()?)
            .await
            .context("connecting to the database (TLS)")?;
        (
            client,
            tokio::spawn(async move { connection.await.map(|_| ()) }),
        )
    };
    let result = apply_locked(&mut client, migrations).await;
    drop(client);
    let _ = conn.await;
    result
}

fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os("PGSSLROOTCERT") {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(&path).context("reading PGSSLROOTCERT")? {
                roots
                    .add(cert.context("a certificate of PGSSLROOTCERT")?)
                    .context("adding a certificate of PGSSLROOTCERT")?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

async fn apply_locked(client: &mut Client, migrations: &[Migration]) -> Result<Vec<String>> {
    client
        .execute("select pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply_all(client, migrations).await;
    // Unlock even on failure; closing the session would release it too.
    let _ = client
        .execute("select pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply_all(client: &mut Client, migrations: &[Migration]) -> Result<Vec<String>> {
    client
        .batch_execute(
            "create table if not exists schema_migrations (
                name text primary key,
                checksum text not null,
                applied_at timestamptz not null default now()
            )",
        )
        .await?;
    let mut applied = Vec::new();
    for m in migrations {
        let row = client
            .query_opt(
                "select checksum from schema_migrations where name = $1",
                &[&m.name],
            )
            .await?;
        if let Some(row) = row {
            let recorded: String = row.get(0);
            if recorded != m.checksum() {
                bail!(
                    "migration {} changed after it was applied; add a new migration instead",
                    m.name
                );
            }
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(&m.sql)
            .await
            .with_context(|| format!("applying {}", m.name))?;
        tx.execute(
            "insert into schema_migrations (name, checksum) values ($1, $2)",
            &[&m.name, &m.checksum()],
        )
        .await?;
        tx.commit().await?;
        applied.push(m.name.clone());
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_sql_files_in_numeric_order() {
        let dir = std::env::temp_dir().join(format!("migrate-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0002_b.sql"), "select 2;").unwrap();
        std::fs::write(dir.join("0001_a.sql"), "select 1;").unwrap();
        std::fs::write(dir.join("README.md"), "not sql").unwrap();
        let names: Vec<_> = load(&dir).unwrap().into_iter().map(|m| m.name).collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["0001_a.sql", "0002_b.sql"]);
    }

    #[test]
    fn refuses_unnumbered_files() {
        let dir = std::env::temp_dir().join(format!("migrate-test-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("init.sql"), "select 1;").unwrap();
        let err = load(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.to_string().contains("number"));
    }
}
