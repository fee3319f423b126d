//! Every service answers `healthz` (no dependency checked) and `readyz` (its stores), and
//! serves its OpenAPI document (contract, "Conventions").

use marketplace_tests::{TestApp, TestOptions};

const PREFIXES: [&str; 4] = ["users", "products", "orders", "deliveries"];

#[tokio::test]
async fn every_service_is_healthy_and_ready_with_its_stores_up() {
    let app = TestApp::start().await;
    for prefix in PREFIXES {
        app.get(&format!("/api/{prefix}/healthz"), None)
            .await
            .expect(200);
        app.get(&format!("/api/{prefix}/readyz"), None)
            .await
            .expect(200);
    }
}

#[tokio::test]
async fn readiness_fails_with_a_problem_naming_postgres_when_the_database_is_down() {
    // Port 1 on loopback: nothing listens there, connections are refused at once.
    let down = "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable".to_string();
    let app = TestApp::start_with(TestOptions {
        variables: vec![
            ("user_db_url".into(), down.clone()),
            ("product_db_url".into(), down.clone()),
            ("order_db_urls".into(), format!("{down},{down}")),
        ],
        ..Default::default()
    })
    .await;
    for prefix in ["users", "products", "orders"] {
        // Liveness does not depend on the database: the pod must not be restarted for it.
        app.get(&format!("/api/{prefix}/healthz"), None)
            .await
            .expect(200);
        let doc = app
            .get(&format!("/api/{prefix}/readyz"), None)
            .await
            .expect_problem(503);
        let detail = doc["detail"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            detail.contains("postgres"),
            "{prefix}: readyz should name PostgreSQL: {doc}"
        );
    }
}

#[tokio::test]
async fn every_service_serves_an_openapi_3_1_document_of_its_own_paths() {
    let app = TestApp::start().await;
    for prefix in PREFIXES {
        let r = app.get(&format!("/api/{prefix}/openapi.json"), None).await;
        r.expect(200);
        let doc = r.json();
        assert!(
            doc["openapi"]
                .as_str()
                .unwrap_or_default()
                .starts_with("3.1"),
            "{prefix}: {doc}"
        );
        let paths = doc["paths"]
            .as_object()
            .unwrap_or_else(|| panic!("{prefix}: no paths"));
        assert!(
            paths
                .keys()
                .any(|p| p.starts_with(&format!("/api/{prefix}")) || p.starts_with("/api/auth")),
            "{prefix}: the document describes other paths: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn unknown_api_paths_are_404_and_every_other_path_belongs_to_the_storefront() {
    let app = TestApp::start().await;
    app.get("/api/nothing-here", None).await.expect(404);
    app.get("/internal/nothing-here", None).await.expect(404);
    // API v1.1: every path outside /api/ and /internal/ is the storefront's (HTML for people).
    let home = app.get("/", None).await;
    home.expect(200);
    assert!(
        home.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html"),
        "{:?}",
        home.header("content-type")
    );
    app.get("/no-such-page", None).await.expect(404);
}
