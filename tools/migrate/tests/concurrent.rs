//! Against a real PostgreSQL (`MARKETPLACE_TEST_PG`, started by `make test`).

use marketplace_migrate::{Migration, apply};
use tokio_postgres::NoTls;

async fn fresh_database(name: &str) -> (tokio_postgres::Client, String) {
    let admin_url = std::env::var("MARKETPLACE_TEST_PG")
        .expect("MARKETPLACE_TEST_PG is not set: run `make test`");
    let (admin, conn) = tokio_postgres::connect(&admin_url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let db = format!("{name}_{}", std::process::id());
    admin
        .batch_execute(&format!("drop database if exists {db}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("create database {db}"))
        .await
        .unwrap();
    let (base, _) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
    let url = format!("{}/{db}?sslmode=disable", base.rsplit_once('/').unwrap().0);
    (admin, url)
}

fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            name: "0001_init.sql".into(),
            sql: "create table t (id int primary key);".into(),
        },
        Migration {
            name: "0002_more.sql".into(),
            sql: "alter table t add column note text;".into(),
        },
    ]
}

#[tokio::test]
async fn two_runners_started_together_apply_each_migration_exactly_once() {
    let (admin, url) = fresh_database("migrate_concurrent").await;
    let m = migrations();
    let (a, b) = tokio::join!(apply(&url, &m), apply(&url, &m));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all = [a, b].concat();
    all.sort();
    assert_eq!(
        all,
        ["0001_init.sql", "0002_more.sql"],
        "each file applied by exactly one runner"
    );
    assert!(
        apply(&url, &m).await.unwrap().is_empty(),
        "a third run has nothing to do"
    );
    let db = url
        .rsplit_once('/')
        .unwrap()
        .1
        .split('?')
        .next()
        .unwrap()
        .to_string();
    admin
        .batch_execute(&format!("drop database {db} with (force)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_migration_edited_after_it_was_applied_is_refused_and_a_failing_one_leaves_no_trace() {
    let (admin, url) = fresh_database("migrate_checksum").await;
    let mut m = migrations();
    apply(&url, &m[..1]).await.unwrap();
    m[0].sql.push_str(" -- edited");
    let err = apply(&url, &m).await.unwrap_err();
    assert!(
        err.to_string().contains("changed after it was applied"),
        "{err:#}"
    );

    let broken = vec![
        migrations()[0].clone(),
        Migration {
            name: "0002_broken.sql".into(),
            sql: "create table u (id int); select no_such_function();".into(),
        },
    ];
    assert!(apply(&url, &broken).await.is_err());
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let u_exists = client
        .query_opt("select 1 from pg_tables where tablename = 'u'", &[])
        .await
        .unwrap();
    assert!(
        u_exists.is_none(),
        "the failed file's statements were rolled back"
    );
    let recorded = client
        .query_opt(
            "select 1 from schema_migrations where name = '0002_broken.sql'",
            &[],
        )
        .await
        .unwrap();
    assert!(recorded.is_none(), "the failed file was not recorded");
    drop(client);
    let db = url
        .rsplit_once('/')
        .unwrap()
        .1
        .split('?')
        .next()
        .unwrap()
        .to_string();
    admin
        .batch_execute(&format!("drop database {db} with (force)"))
        .await
        .unwrap();
}
