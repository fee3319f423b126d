//! The delivery service through the test host, on both key-value backends (SQLite and Redis).
//!
//! Run: `make test` (or set MARKETPLACE_TEST_PG / MARKETPLACE_TEST_REDIS, build the components,
//! then `cargo test -p marketplace-tests --test delivery`). The order service is not needed:
//! shipments are created with an `order` service token, and the reports to the order service
//! are observed (or failed) with the host's outbound interceptor.

use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use marketplace_shared::tokens::Verifier;
use marketplace_tests::{InterceptAction, Kv, TestApp, TestOptions};
use serde_json::{Value, json};
use uuid::Uuid;

/// Each scenario runs once per backend: `sqlite::<name>` and `redis::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kv::Sqlite).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kv::Redis).await
                }
            )*
        }
    };
}

on_both_backends!(
    health_readiness_and_the_openapi_document_are_served,
    the_order_service_creates_a_pending_shipment_once_per_order,
    shipment_creation_accepts_only_the_order_services_token,
    invalid_shipment_requests_are_refused_and_write_nothing,
    a_carrier_moves_a_shipment_through_its_life_and_every_event_is_kept,
    failed_attempts_and_returns_follow_the_state_machine,
    illegal_transitions_are_conflicts_and_change_nothing,
    bad_events_get_the_contracts_problem_and_write_nothing,
    a_late_event_is_kept_in_occurrence_order_but_never_moves_the_status_back,
    a_repeated_event_id_is_accepted_once,
    one_hundred_concurrent_scans_all_land_exactly_once,
    concurrent_retries_of_one_event_land_once,
    buyers_see_only_their_own_shipments,
    public_tracking_shows_status_and_history_and_nothing_personal,
    pickup_delivery_and_return_are_reported_to_the_order_service,
    a_failed_report_stays_pending_until_the_relay_lands_it,
    a_permanent_refusal_by_the_order_service_is_not_retried,
    the_relay_route_accepts_only_the_relays_own_identity,
    the_relay_identity_is_refused_on_every_other_internal_route,
    wrong_methods_get_405_with_allow,
    query_parameters_a_route_does_not_define_are_400_everywhere_and_paths_match_exactly,
    a_shipment_records_at_most_200_events_and_tracking_shows_them_all,
    the_cancel_endpoint_accepts_only_the_order_services_token,
    the_order_service_cancels_a_pending_shipment_idempotently,
    a_shipment_that_left_pending_cannot_be_cancelled,
    no_carrier_event_lands_on_a_cancelled_shipment_not_even_a_late_one,
    cancels_racing_pickups_let_exactly_one_win_per_shipment,
);

// ------------------------------------------------------------------ helpers

async fn app(kv: Kv) -> TestApp {
    TestApp::start_with(TestOptions {
        kv,
        ..Default::default()
    })
    .await
}

fn order_token(app: &TestApp) -> String {
    app.service_token("order", "delivery")
}

fn shipment_request(order_id: &str, buyer: Uuid) -> Value {
    json!({
        "order_id": order_id,
        "buyer_id": buyer.to_string(),
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 Rue de la Paix", "line2": "3rd floor",
                              "city": "Paris", "postal_code": "75002", "country": "FR"},
        "items": [{"product_id": Uuid::now_v7().to_string(), "title": "Desk lamp", "quantity": 2}]
    })
}

fn new_order_id() -> String {
    format!("o1-{}", Uuid::now_v7())
}

/// Creates a shipment for a fresh order of `buyer`; returns the shipment.
async fn create_shipment(app: &TestApp, buyer: Uuid) -> Value {
    let r = app
        .post(
            "/internal/deliveries",
            Some(&order_token(app)),
            shipment_request(&new_order_id(), buyer),
        )
        .await;
    r.expect(201);
    r.json()
}

fn carrier(app: &TestApp) -> String {
    app.token(Uuid::now_v7(), "carrier")
}

fn ts(t: chrono::DateTime<Utc>) -> String {
    marketplace_shared::time::format(t)
}

async fn post_event(
    app: &TestApp,
    token: &str,
    id: &str,
    body: Value,
) -> marketplace_tests::TestResponse {
    app.post(&format!("/api/deliveries/{id}/events"), Some(token), body)
        .await
}

/// Records `statuses` one minute apart, starting an hour ago; returns the last response body.
async fn walk(app: &TestApp, token: &str, id: &str, statuses: &[&str]) -> Value {
    let start = Utc::now() - Duration::hours(1);
    let mut last = Value::Null;
    for (i, status) in statuses.iter().enumerate() {
        let r = post_event(
            app,
            token,
            id,
            json!({"event_id": format!("walk-{i}-{status}"), "status": status,
                   "occurred_at": ts(start + Duration::minutes(i as i64))}),
        )
        .await;
        r.expect(201);
        last = r.json();
    }
    last
}

async fn shipment(app: &TestApp, id: &str) -> Value {
    let r = app
        .get(&format!("/api/deliveries/{id}"), Some(&carrier(app)))
        .await;
    r.expect(200);
    r.json()
}

fn history_ids(s: &Value) -> Vec<String> {
    s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// Records every outbound request's method, path and authorization header, answering `status`
/// (or refusing the connection while `refuse` is set).
/// One outbound call seen: method, path, `Authorization` header.
type Call = (String, String, Option<String>);

#[derive(Clone, Default)]
struct OrderSpy {
    calls: Arc<Mutex<Vec<Call>>>,
    answer: Arc<Mutex<Option<u16>>>,
}

impl OrderSpy {
    fn install(&self, app: &TestApp) {
        let spy = self.clone();
        app.app
            .set_outbound_interceptor(Some(Arc::new(move |parts: &http::request::Parts| {
                spy.calls.lock().unwrap().push((
                    parts.method.to_string(),
                    parts.uri.path().to_string(),
                    parts
                        .headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                ));
                match *spy.answer.lock().unwrap() {
                    Some(status) => Some(InterceptAction::respond(status, r#"{}"#)),
                    None => Some(InterceptAction::ConnectionRefused),
                }
            })));
    }

    fn answer(&self, status: Option<u16>) {
        *self.answer.lock().unwrap() = status;
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

/// The relay CronJob's own identity (`iss` = `sub` = `relay`).
fn relay_token(app: &TestApp) -> String {
    app.service_token("relay", "delivery")
}

async fn relay(app: &TestApp) -> Value {
    let r = app
        .post(
            "/internal/deliveries/outbox/relay",
            Some(&relay_token(app)),
            json!({}),
        )
        .await;
    r.expect(200);
    r.json()
}

// ------------------------------------------------------------------ scenarios

async fn health_readiness_and_the_openapi_document_are_served(kv: Kv) {
    let app = app(kv).await;

    let health = app.get("/api/deliveries/healthz", None).await;
    let ready = app.get("/api/deliveries/readyz", None).await;
    let doc = app.get("/api/deliveries/openapi.json", None).await;

    health.expect(200);
    ready.expect(200);
    doc.expect(200);
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/deliveries/{id}",
        "/api/deliveries",
        "/api/deliveries/track/{tracking_number}",
        "/api/deliveries/{id}/events",
        "/internal/deliveries",
        "/internal/deliveries/outbox/relay",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
}

async fn the_order_service_creates_a_pending_shipment_once_per_order(kv: Kv) {
    let app = app(kv).await;
    let buyer = Uuid::now_v7();
    let order_id = new_order_id();

    let first = app
        .post(
            "/internal/deliveries",
            Some(&order_token(&app)),
            shipment_request(&order_id, buyer),
        )
        .await;
    let again = app
        .post(
            "/internal/deliveries",
            Some(&order_token(&app)),
            shipment_request(&order_id, buyer),
        )
        .await;

    first.expect(201);
    again.expect(201);
    let (first, again) = (first.json(), again.json());
    assert_eq!(first["id"], again["id"], "one shipment per order");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["order_id"], order_id.as_str());
    assert_eq!(first["buyer_id"], buyer.to_string());
    assert_eq!(first["shipping_address"]["city"], "Paris");
    assert_eq!(first["history"], json!([]));
    let number = first["tracking_number"].as_str().unwrap();
    assert!(number.starts_with("MK") && number.len() == 13, "{number}");
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    // Another order gets another shipment and another tracking number.
    let other = create_shipment(&app, buyer).await;
    assert_ne!(other["id"], first["id"]);
    assert_ne!(other["tracking_number"], first["tracking_number"]);
    // The same order for another buyer is a conflict.
    let clash = app
        .post(
            "/internal/deliveries",
            Some(&order_token(&app)),
            shipment_request(&order_id, Uuid::now_v7()),
        )
        .await;
    clash.expect_problem(409);
}

async fn shipment_creation_accepts_only_the_order_services_token(kv: Kv) {
    let app = app(kv).await;
    let order_id = new_order_id();
    let body = shipment_request(&order_id, Uuid::now_v7());

    let anonymous = app.post("/internal/deliveries", None, body.clone()).await;
    let user = app
        .post(
            "/internal/deliveries",
            Some(&app.token(Uuid::now_v7(), "admin")),
            body.clone(),
        )
        .await;
    let delivery = app
        .post(
            "/internal/deliveries",
            Some(&app.service_token("delivery", "delivery")),
            body.clone(),
        )
        .await;
    let wrong_audience = app
        .post(
            "/internal/deliveries",
            Some(&app.service_token("order", "product")),
            body,
        )
        .await;

    anonymous.expect_problem(401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    user.expect_problem(403);
    delivery.expect_problem(403);
    wrong_audience.expect_problem(401);
    let listed = app
        .get(
            &format!("/api/deliveries?order_id={order_id}"),
            Some(&app.token(Uuid::now_v7(), "admin")),
        )
        .await;
    assert_eq!(listed.json()["items"], json!([]), "nothing was created");
}

async fn invalid_shipment_requests_are_refused_and_write_nothing(kv: Kv) {
    let app = app(kv).await;
    let token = order_token(&app);
    let order_id = new_order_id();
    let mut bad = shipment_request(&order_id, Uuid::now_v7());
    bad["buyer_id"] = json!("not-a-uuid");
    bad["shipping_address"]["country"] = json!("France");
    bad["items"][0]["quantity"] = json!(0);
    let mut unknown = shipment_request(&order_id, Uuid::now_v7());
    unknown["priority"] = json!("express");

    let invalid = app.post("/internal/deliveries", Some(&token), bad).await;
    let unknown_field = app
        .post("/internal/deliveries", Some(&token), unknown)
        .await;
    let malformed = app
        .request(
            "POST",
            "/internal/deliveries",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            b"{\"order_id\": ".to_vec(),
        )
        .await;
    let not_json = app
        .request(
            "POST",
            "/internal/deliveries",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "text/plain"),
            ],
            b"hello".to_vec(),
        )
        .await;

    let doc = invalid.expect_problem(422);
    for field in ["buyer_id", "shipping_address.country", "items[0].quantity"] {
        assert!(doc["errors"][field].is_array(), "{field} not named: {doc}");
    }
    assert!(unknown_field.expect_problem(422)["errors"]["priority"].is_array());
    malformed.expect_problem(400);
    not_json.expect_problem(415);
    let listed = app
        .get(
            &format!("/api/deliveries?order_id={order_id}"),
            Some(&app.token(Uuid::now_v7(), "admin")),
        )
        .await;
    assert_eq!(listed.json()["items"], json!([]), "nothing was created");
}

async fn a_carrier_moves_a_shipment_through_its_life_and_every_event_is_kept(kv: Kv) {
    let app = app(kv).await;
    let token = carrier(&app);
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = Utc::now() - Duration::hours(2);

    let steps = [
        ("picked_up", "Paris depot"),
        ("in_transit", "Lyon hub"),
        ("in_transit", "Marseille hub"),
        ("out_for_delivery", "Marseille"),
        ("delivered", "Front door"),
    ];
    for (i, (status, location)) in steps.iter().enumerate() {
        let r = post_event(
            &app,
            &token,
            &id,
            json!({"event_id": format!("e{i}"), "status": status,
                   "occurred_at": ts(t0 + Duration::minutes(10 * i as i64)),
                   "location": location, "note": "scanned"}),
        )
        .await;
        r.expect(201);
        assert_eq!(r.json()["status"], *status);
    }

    let s = shipment(&app, &id).await;
    assert_eq!(s["status"], "delivered");
    let history = s["history"].as_array().unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[1]["location"], "Lyon hub");
    assert_eq!(history[1]["note"], "scanned");
    assert_eq!(history[1]["occurred_at"], ts(t0 + Duration::minutes(10)));
    for e in history {
        assert!(e["recorded_at"].as_str().unwrap() >= e["occurred_at"].as_str().unwrap());
    }
    assert!(s["updated_at"].as_str().unwrap() > s["created_at"].as_str().unwrap());
    // Delivered is terminal.
    let after = post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "e9", "status": "in_transit"}),
    )
    .await;
    after.expect_problem(409);
}

async fn failed_attempts_and_returns_follow_the_state_machine(kv: Kv) {
    let app = app(kv).await;
    let token = carrier(&app);
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let s = walk(
        &app,
        &token,
        &id,
        &[
            "picked_up",
            "in_transit",
            "out_for_delivery",
            "failed_attempt",
            "in_transit",
            "out_for_delivery",
            "failed_attempt",
            "out_for_delivery",
            "failed_attempt",
            "returned",
        ],
    )
    .await;

    assert_eq!(s["status"], "returned");
    let r = post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "late-delivery", "status": "delivered"}),
    )
    .await;
    r.expect_problem(409);
    // Returned straight from pending is legal too, by an admin.
    let other = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = app.token(Uuid::now_v7(), "admin");
    let r = post_event(
        &app,
        &admin,
        &other,
        json!({"event_id": "r", "status": "returned"}),
    )
    .await;
    r.expect(201);
    assert_eq!(r.json()["status"], "returned");
}

async fn illegal_transitions_are_conflicts_and_change_nothing(kv: Kv) {
    let app = app(kv).await;
    let token = carrier(&app);
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    walk(&app, &token, &id, &["picked_up"]).await;
    let before = shipment(&app, &id).await;

    let skip = post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "x1", "status": "delivered"}),
    )
    .await;
    let back = post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "x2", "status": "pending"}),
    )
    .await;
    let again = post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "x3", "status": "picked_up"}),
    )
    .await;
    let failed = post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "x4", "status": "failed_attempt"}),
    )
    .await;

    for r in [&skip, &back, &again, &failed] {
        r.expect_problem(409);
    }
    assert_eq!(shipment(&app, &id).await, before);
    // The refused event ids are free: nothing of them was kept.
    let r = post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "x1", "status": "in_transit"}),
    )
    .await;
    r.expect(201);
}

async fn bad_events_get_the_contracts_problem_and_write_nothing(kv: Kv) {
    let app = app(kv).await;
    let token = carrier(&app);
    let buyer = Uuid::now_v7();
    let id = create_shipment(&app, buyer).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = shipment(&app, &id).await;
    let path = format!("/api/deliveries/{id}/events");
    let auth = format!("Bearer {token}");
    let future = ts(Utc::now() + Duration::days(2));

    let cases: Vec<(Value, &str)> = vec![
        (json!({"event_id": "b1", "status": "teleported"}), "status"),
        (
            json!({"event_id": "b2", "status": "picked_up", "occurred_at": future}),
            "occurred_at",
        ),
        (
            json!({"event_id": "b3", "status": "picked_up", "occurred_at": "yesterday"}),
            "occurred_at",
        ),
        (
            json!({"event_id": "b4", "status": "picked_up", "note": "n".repeat(1001)}),
            "note",
        ),
        (
            json!({"event_id": "b5", "status": "picked_up", "location": "l".repeat(201)}),
            "location",
        ),
        (
            json!({"event_id": "has spaces", "status": "picked_up"}),
            "event_id",
        ),
        (
            json!({"event_id": "b7", "status": "picked_up", "carrier": "ACME"}),
            "carrier",
        ),
        (json!({"status": "picked_up"}), "event_id"),
        (json!({"event_id": "b9", "status": 3}), "status"),
    ];
    for (body, field) in cases {
        let r = app.post(&path, Some(&token), body.clone()).await;
        let doc = r.expect_problem(422);
        assert!(
            doc["errors"][field].is_array(),
            "{field} not named for {body}: {doc}"
        );
    }
    let malformed = app
        .request(
            "POST",
            &path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            b"{".to_vec(),
        )
        .await;
    malformed.expect_problem(400);
    let text = app
        .request(
            "POST",
            &path,
            &[("authorization", &auth), ("content-type", "text/plain")],
            b"picked_up".to_vec(),
        )
        .await;
    text.expect_problem(415);
    let huge = app
        .request(
            "POST",
            &path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            format!("{{\"note\": \"{}\"}}", "x".repeat(1024 * 1024 + 1)).into_bytes(),
        )
        .await;
    huge.expect_problem(413);
    let unknown = post_event(
        &app,
        &token,
        &Uuid::now_v7().to_string(),
        json!({"event_id": "u", "status": "picked_up"}),
    )
    .await;
    unknown.expect_problem(404);
    let malformed_id = post_event(
        &app,
        &token,
        "not-a-uuid",
        json!({"event_id": "u", "status": "picked_up"}),
    )
    .await;
    malformed_id.expect_problem(404);
    let as_buyer = post_event(
        &app,
        &app.token(buyer, "buyer"),
        &id,
        json!({"event_id": "u", "status": "picked_up"}),
    )
    .await;
    as_buyer.expect_problem(403);
    let as_seller = post_event(
        &app,
        &app.token(Uuid::now_v7(), "seller"),
        &id,
        json!({"event_id": "u", "status": "picked_up"}),
    )
    .await;
    as_seller.expect_problem(403);
    let anonymous = app
        .post(&path, None, json!({"event_id": "u", "status": "picked_up"}))
        .await;
    anonymous.expect_problem(401);
    let service = app
        .post(
            &path,
            Some(&order_token(&app)),
            json!({"event_id": "u", "status": "picked_up"}),
        )
        .await;
    service.expect_problem(401);

    assert_eq!(shipment(&app, &id).await, before, "nothing was written");
}

async fn a_late_event_is_kept_in_occurrence_order_but_never_moves_the_status_back(kv: Kv) {
    let app = app(kv).await;
    let token = carrier(&app);
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = Utc::now() - Duration::hours(5);
    for (event_id, status, minutes) in [
        ("a", "picked_up", 0),
        ("b", "in_transit", 60),
        ("d", "out_for_delivery", 180),
    ] {
        post_event(&app, &token, &id,
            json!({"event_id": event_id, "status": status, "occurred_at": ts(t0 + Duration::minutes(minutes))}))
            .await
            .expect(201);
    }

    let late = post_event(&app, &token, &id,
        json!({"event_id": "c", "status": "in_transit", "occurred_at": ts(t0 + Duration::minutes(120)), "location": "Lyon hub"}))
        .await;

    late.expect(201);
    let s = late.json();
    assert_eq!(
        s["status"], "out_for_delivery",
        "a late scan never moves the status back"
    );
    assert_eq!(history_ids(&s), ["a", "b", "c", "d"]);
    // A late terminal event cannot be true (nothing happens after delivery): refused.
    let late_delivery = post_event(&app, &token, &id,
        json!({"event_id": "e", "status": "delivered", "occurred_at": ts(t0 + Duration::minutes(150))}))
        .await;
    late_delivery.expect_problem(409);
    // A late scan after delivery is still kept.
    post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "f", "status": "delivered"}),
    )
    .await
    .expect(201);
    let after = post_event(&app, &token, &id,
        json!({"event_id": "g", "status": "in_transit", "occurred_at": ts(t0 + Duration::minutes(90))}))
        .await;
    after.expect(201);
    let s = after.json();
    assert_eq!(s["status"], "delivered");
    assert_eq!(history_ids(&s), ["a", "b", "g", "c", "d", "f"]);
}

async fn a_repeated_event_id_is_accepted_once(kv: Kv) {
    let app = app(kv).await;
    let token = carrier(&app);
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"event_id": "pickup-1", "status": "picked_up", "location": "Depot"});

    let first = post_event(&app, &token, &id, body.clone()).await;
    let retry = post_event(&app, &token, &id, body).await;
    let other_body = post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "pickup-1", "status": "returned"}),
    )
    .await;

    first.expect(201);
    retry.expect(201);
    assert_eq!(history_ids(&retry.json()), ["pickup-1"]);
    other_body.expect_problem(409);
    let s = shipment(&app, &id).await;
    assert_eq!(history_ids(&s), ["pickup-1"]);
    assert_eq!(s["status"], "picked_up");
}

async fn one_hundred_concurrent_scans_all_land_exactly_once(kv: Kv) {
    let app = app(kv).await;
    let token = carrier(&app);
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    walk(&app, &token, &id, &["picked_up"]).await;
    let path = format!("/api/deliveries/{id}/events");

    let requests: Vec<_> = (0..100)
        .map(|i| {
            (
                path.clone(),
                Some(token.clone()),
                json!({"event_id": format!("scan-{i:03}"), "status": "in_transit",
                                                              "location": format!("Hub {i}")}),
            )
        })
        .collect();
    let responses = app.post_many(requests).await;

    for r in &responses {
        r.expect(201);
    }
    let s = shipment(&app, &id).await;
    assert_eq!(s["status"], "in_transit");
    let mut ids = history_ids(&s);
    assert_eq!(ids.len(), 101, "every scan landed, none twice");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 101);
    for i in 0..100 {
        assert!(ids.contains(&format!("scan-{i:03}")), "scan-{i:03} lost");
    }
}

async fn concurrent_retries_of_one_event_land_once(kv: Kv) {
    let app = app(kv).await;
    let token = carrier(&app);
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    walk(&app, &token, &id, &["picked_up"]).await;
    let path = format!("/api/deliveries/{id}/events");
    let body =
        json!({"event_id": "hub-scan-7", "status": "in_transit", "occurred_at": ts(Utc::now())});

    let responses = app
        .post_many(
            (0..30)
                .map(|_| (path.clone(), Some(token.clone()), body.clone()))
                .collect(),
        )
        .await;

    for r in &responses {
        r.expect(201);
    }
    let s = shipment(&app, &id).await;
    let ids = history_ids(&s);
    assert_eq!(
        ids.iter().filter(|i| *i == "hub-scan-7").count(),
        1,
        "{ids:?}"
    );
    assert_eq!(ids.len(), 2);
}

async fn buyers_see_only_their_own_shipments(kv: Kv) {
    let app = app(kv).await;
    let buyer = Uuid::now_v7();
    let s = create_shipment(&app, buyer).await;
    let (id, order_id) = (s["id"].as_str().unwrap(), s["order_id"].as_str().unwrap());
    let own = app.token(buyer, "buyer");
    let stranger = app.token(Uuid::now_v7(), "buyer");
    let seller = app.token(Uuid::now_v7(), "seller");

    let mine = app.get(&format!("/api/deliveries/{id}"), Some(&own)).await;
    let theirs = app
        .get(&format!("/api/deliveries/{id}"), Some(&stranger))
        .await;
    let sellers = app
        .get(&format!("/api/deliveries/{id}"), Some(&seller))
        .await;
    let carriers = app
        .get(&format!("/api/deliveries/{id}"), Some(&carrier(&app)))
        .await;
    let anonymous = app.get(&format!("/api/deliveries/{id}"), None).await;
    let unknown = app
        .get(&format!("/api/deliveries/{}", Uuid::now_v7()), Some(&own))
        .await;
    let malformed = app.get("/api/deliveries/12345", Some(&own)).await;

    mine.expect(200);
    assert_eq!(mine.json()["id"], id);
    theirs.expect_problem(404);
    sellers.expect_problem(404);
    carriers.expect(200);
    anonymous.expect_problem(401);
    unknown.expect_problem(404);
    malformed.expect_problem(404);

    let list = |token: String| {
        let app = &app;
        let path = format!("/api/deliveries?order_id={order_id}");
        async move { app.get(&path, Some(&token)).await }
    };
    let listed = list(own.clone()).await;
    listed.expect(200);
    assert_eq!(listed.json()["items"][0]["id"], id);
    assert_eq!(listed.json()["next_cursor"], Value::Null);
    assert_eq!(list(stranger).await.json()["items"], json!([]));
    assert_eq!(
        list(app.token(Uuid::now_v7(), "admin")).await.json()["items"][0]["id"],
        id
    );
    app.get("/api/deliveries?order_id=x&colour=red", Some(&own))
        .await
        .expect_problem(400);
    app.get("/api/deliveries", Some(&own))
        .await
        .expect_problem(400);
    app.get("/api/deliveries?order_id=a%20b", Some(&own))
        .await
        .expect_problem(400);
    app.get(
        &format!("/api/deliveries?order_id={order_id}&limit=0"),
        Some(&own),
    )
    .await
    .expect_problem(400);
    app.get(
        &format!("/api/deliveries?order_id={order_id}&cursor=!!"),
        Some(&own),
    )
    .await
    .expect_problem(400);
}

async fn public_tracking_shows_status_and_history_and_nothing_personal(kv: Kv) {
    let app = app(kv).await;
    let s = create_shipment(&app, Uuid::now_v7()).await;
    let (id, number) = (
        s["id"].as_str().unwrap(),
        s["tracking_number"].as_str().unwrap().to_string(),
    );
    walk(&app, &carrier(&app), id, &["picked_up", "in_transit"]).await;

    let r = app
        .get(&format!("/api/deliveries/track/{number}"), None)
        .await;
    let typed = app
        .get(
            &format!(
                "/api/deliveries/track/{}-{}",
                number[..6].to_lowercase(),
                &number[6..]
            ),
            None,
        )
        .await;
    let mut typo = number.clone().into_bytes();
    typo[5] = if typo[5] == b'7' { b'8' } else { b'7' };
    let typo = app
        .get(
            &format!("/api/deliveries/track/{}", String::from_utf8(typo).unwrap()),
            None,
        )
        .await;

    r.expect(200);
    let body = r.json();
    assert_eq!(body["tracking_number"], number.as_str());
    assert_eq!(body["status"], "in_transit");
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys.len(),
        3,
        "only tracking_number, status and history: {keys:?}"
    );
    let history = body["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    for e in history {
        let mut fields: Vec<_> = e.as_object().unwrap().keys().cloned().collect();
        fields.sort();
        assert_eq!(fields, ["location", "occurred_at", "status"]);
    }
    let text = String::from_utf8_lossy(&r.body);
    for personal in ["Ada", "Paix", "buyer", "order", id] {
        assert!(!text.contains(personal), "{personal} leaked: {text}");
    }
    typed.expect(200);
    typo.expect_problem(404);
    app.get("/api/deliveries/track/MK0000000000", None)
        .await
        .expect_problem(404);
}

async fn pickup_delivery_and_return_are_reported_to_the_order_service(kv: Kv) {
    let app = app(kv).await;
    let spy = OrderSpy::default();
    spy.answer(Some(200));
    spy.install(&app);
    let token = carrier(&app);
    let s = create_shipment(&app, Uuid::now_v7()).await;
    let (id, order_id) = (s["id"].as_str().unwrap(), s["order_id"].as_str().unwrap());

    walk(
        &app,
        &token,
        id,
        &["picked_up", "in_transit", "out_for_delivery", "delivered"],
    )
    .await;
    let other = create_shipment(&app, Uuid::now_v7()).await;
    walk(&app, &token, other["id"].as_str().unwrap(), &["returned"]).await;

    let calls = spy.calls();
    let paths: Vec<_> = calls.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    assert_eq!(
        paths,
        [
            format!("POST /internal/orders/{order_id}/delivery-status"),
            format!("POST /internal/orders/{order_id}/delivery-status"),
            format!(
                "POST /internal/orders/{}/delivery-status",
                other["order_id"].as_str().unwrap()
            ),
        ],
        "picked_up, delivered and returned are reported, scans are not"
    );
    // The calls carry a service token from `delivery` to `order`, verifiable with delivery's key.
    let verifier = Verifier::new(&app.variables()["jwt_public_keys"], "x", "y", "order")
        .unwrap()
        .with_service_keys(&app.variables()["service_public_keys"])
        .unwrap();
    for (_, _, auth) in &calls {
        let token = auth
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .expect("bearer token");
        let claims = verifier
            .verify_service_token(token)
            .expect("valid service token");
        assert_eq!(
            (claims.sub.as_str(), claims.aud.as_str()),
            ("delivery", "order")
        );
    }
    // Acknowledged reports are not sent again.
    let r = relay(&app).await;
    assert_eq!(r["attempted"], 0);
    assert_eq!(spy.calls().len(), 3);
}

async fn a_failed_report_stays_pending_until_the_relay_lands_it(kv: Kv) {
    let app = app(kv).await;
    let spy = OrderSpy::default();
    spy.install(&app); // the order service is down
    let token = carrier(&app);
    let s = create_shipment(&app, Uuid::now_v7()).await;
    let (id, order_id) = (s["id"].as_str().unwrap(), s["order_id"].as_str().unwrap());

    let event = post_event(
        &app,
        &token,
        id,
        json!({"event_id": "p", "status": "picked_up"}),
    )
    .await;
    event.expect(201); // the event is recorded even though the report failed
    let down = relay(&app).await;
    spy.answer(Some(503));
    let still_down = relay(&app).await;
    spy.answer(Some(200));
    let up = relay(&app).await;
    let done = relay(&app).await;

    assert_eq!(
        (down["attempted"].as_u64(), down["delivered"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        (
            still_down["attempted"].as_u64(),
            still_down["delivered"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(
        (up["attempted"].as_u64(), up["delivered"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(done["attempted"], 0, "a landed report is not sent again");
    let calls = spy.calls();
    assert_eq!(calls.len(), 4, "first attempt + three relay attempts");
    assert!(
        calls
            .iter()
            .all(|(_, p, _)| *p == format!("/internal/orders/{order_id}/delivery-status"))
    );
}

async fn a_permanent_refusal_by_the_order_service_is_not_retried(kv: Kv) {
    let app = app(kv).await;
    let spy = OrderSpy::default();
    spy.answer(Some(422));
    spy.install(&app);
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    post_event(
        &app,
        &carrier(&app),
        &id,
        json!({"event_id": "p", "status": "picked_up"}),
    )
    .await
    .expect(201);
    let r = relay(&app).await;

    assert_eq!(r["attempted"], 0);
    assert_eq!(spy.calls().len(), 1);
}

async fn the_relay_route_accepts_only_the_relays_own_identity(kv: Kv) {
    let app = app(kv).await;
    let path = "/internal/deliveries/outbox/relay";
    let post = |token: Option<String>| {
        let app = &app;
        async move { app.post(path, token.as_deref(), json!({})).await }
    };

    let anonymous = post(None).await;
    let admin = post(Some(app.token(Uuid::now_v7(), "admin"))).await;
    let order = post(Some(order_token(&app))).await;
    // The delivery service's own key no longer runs the relay: the CronJob holds `relay`'s.
    let delivery = post(Some(app.service_token("delivery", "delivery"))).await;
    let to_order = post(Some(app.service_token("relay", "order"))).await;
    let relay = post(Some(relay_token(&app))).await;

    anonymous.expect_problem(401);
    admin.expect_problem(403);
    order.expect_problem(403);
    delivery.expect_problem(403);
    to_order.expect_problem(401);
    relay.expect(200);
}

/// The relay's identity only triggers relay runs: it creates and cancels no shipment (and, on
/// the order service, posts no delivery status — that is the order service's test).
async fn the_relay_identity_is_refused_on_every_other_internal_route(kv: Kv) {
    let app = app(kv).await;
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let order_id = new_order_id();

    let created = app
        .post(
            "/internal/deliveries",
            Some(&relay_token(&app)),
            shipment_request(&order_id, Uuid::now_v7()),
        )
        .await;
    let cancelled = cancel(&app, Some(&relay_token(&app)), &id).await;

    created.expect_problem(403);
    cancelled.expect_problem(403);
    assert_eq!(shipment(&app, &id).await["status"], "pending");
    let listed = app
        .get(
            &format!("/api/deliveries?order_id={order_id}"),
            Some(&carrier(&app)),
        )
        .await;
    listed.expect(200);
    assert_eq!(listed.json()["items"], json!([]), "no shipment was created");
}

async fn wrong_methods_get_405_with_allow(kv: Kv) {
    let app = app(kv).await;
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = carrier(&app);

    for (method, path, allow) in [
        ("DELETE", format!("/api/deliveries/{id}"), "GET"),
        ("GET", format!("/api/deliveries/{id}/events"), "POST"),
        ("POST", "/api/deliveries".to_string(), "GET"),
        ("GET", "/internal/deliveries".to_string(), "POST"),
        ("PUT", "/api/deliveries/healthz".to_string(), "GET"),
        ("GET", format!("/internal/deliveries/{id}/cancel"), "POST"),
    ] {
        let r = app
            .request(
                method,
                &path,
                &[("authorization", &format!("Bearer {token}"))],
                Vec::new(),
            )
            .await;
        r.expect_problem(405);
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    app.get("/api/deliveries/x/y/z", Some(&token))
        .await
        .expect_problem(404);
}

/// Routing policy (every service): a parameter the route does not define, or a repeated one,
/// is 400 (no longer ignored); a trailing slash is another path (404).
async fn query_parameters_a_route_does_not_define_are_400_everywhere_and_paths_match_exactly(
    kv: Kv,
) {
    let app = app(kv).await;
    let s = create_shipment(&app, Uuid::now_v7()).await;
    let (id, number) = (
        s["id"].as_str().unwrap(),
        s["tracking_number"].as_str().unwrap(),
    );
    let order_id = s["order_id"].as_str().unwrap();
    let carrier = carrier(&app);
    let bearer = |t: &str| format!("Bearer {t}");
    let (as_carrier, as_order, as_relay) = (
        bearer(&carrier),
        bearer(&order_token(&app)),
        bearer(&relay_token(&app)),
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("GET", "/api/deliveries/healthz?verbose=1".into(), ""),
        ("GET", "/api/deliveries/readyz?x=".into(), ""),
        ("GET", "/api/deliveries/openapi.json?format=yaml".into(), ""),
        (
            "GET",
            format!("/api/deliveries?order_id={order_id}&sort=desc"),
            &as_carrier,
        ),
        (
            "GET",
            format!("/api/deliveries?order_id={order_id}&order_id={order_id}"),
            &as_carrier,
        ),
        ("GET", format!("/api/deliveries/track/{number}?lang=fr"), ""),
        (
            "GET",
            format!("/api/deliveries/{id}?expand=all"),
            &as_carrier,
        ),
        (
            "POST",
            format!("/api/deliveries/{id}/events?dry_run=1"),
            &as_carrier,
        ),
        ("POST", "/internal/deliveries?force=1".into(), &as_order),
        (
            "POST",
            format!("/internal/deliveries/{id}/cancel?reason=x"),
            &as_order,
        ),
        (
            "POST",
            "/internal/deliveries/outbox/relay?label=0".into(),
            &as_relay,
        ),
    ];
    for (method, path, auth) in &cases {
        let mut headers = vec![("content-type", "application/json")];
        if !auth.is_empty() {
            headers.push(("authorization", auth));
        }
        let r = app.request(method, path, &headers, b"{}".to_vec()).await;
        let doc = r.expect_problem(400);
        assert!(
            doc["detail"].as_str().unwrap().contains("query parameter"),
            "{method} {path}: {doc}"
        );
    }
    // Nothing happened: the shipment is still pending with no event.
    let s = shipment(&app, id).await;
    assert_eq!(
        (s["status"].as_str(), s["history"].as_array().map(Vec::len)),
        (Some("pending"), Some(0))
    );
    for path in [
        format!("/api/deliveries/{id}/"),
        format!("/api/deliveries/track/{number}/"),
        "/api/deliveries/healthz/".to_string(),
    ] {
        app.get(&path, Some(&carrier)).await.expect_problem(404);
    }
}

/// Hardening (events per shipment): a history holds at most 200 events; the next distinct
/// one is 409 and changes nothing, a repeated `event_id` stays idempotent, and the public
/// tracking page still shows every recorded event.
async fn a_shipment_records_at_most_200_events_and_tracking_shows_them_all(kv: Kv) {
    const CAP: usize = 200;
    let app = app(kv).await;
    let token = carrier(&app);
    let s = create_shipment(&app, Uuid::now_v7()).await;
    let (id, number) = (
        s["id"].as_str().unwrap(),
        s["tracking_number"].as_str().unwrap(),
    );
    let start = Utc::now() - Duration::hours(5);
    for i in 0..CAP {
        let status = if i == 0 { "picked_up" } else { "in_transit" };
        post_event(
            &app,
            &token,
            id,
            json!({"event_id": format!("scan-{i}"), "status": status,
                   "occurred_at": ts(start + Duration::seconds(i as i64)), "location": format!("Hub {i}")}),
        )
        .await
        .expect(201);
    }

    let over = post_event(
        &app,
        &token,
        id,
        json!({"event_id": "scan-over", "status": "in_transit"}),
    )
    .await;
    let late = post_event(
        &app,
        &token,
        id,
        json!({"event_id": "scan-late", "status": "in_transit", "occurred_at": ts(start - Duration::hours(1))}),
    )
    .await;
    let repeat = post_event(
        &app,
        &token,
        id,
        json!({"event_id": "scan-7", "status": "in_transit",
        "occurred_at": ts(start + Duration::seconds(7)), "location": "Hub 7"}),
    )
    .await;

    for r in [&over, &late] {
        let doc = r.expect_problem(409);
        assert!(
            doc["detail"].as_str().unwrap().contains("200 events"),
            "{doc}"
        );
    }
    repeat.expect(201);
    let s = shipment(&app, id).await;
    assert_eq!(s["history"].as_array().unwrap().len(), CAP);
    assert!(
        !history_ids(&s)
            .iter()
            .any(|e| e == "scan-over" || e == "scan-late")
    );
    let t = app
        .get(&format!("/api/deliveries/track/{number}"), None)
        .await;
    t.expect(200);
    let t = t.json();
    let history = t["history"].as_array().unwrap();
    assert_eq!(history.len(), CAP);
    assert_eq!(
        (
            history[0]["status"].as_str(),
            history[CAP - 1]["location"].as_str()
        ),
        (Some("picked_up"), Some("Hub 199"))
    );
}

// ------------------------------------------------------------------ cancellation (API v1.1)

async fn cancel(app: &TestApp, token: Option<&str>, id: &str) -> marketplace_tests::TestResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    app.request(
        "POST",
        &format!("/internal/deliveries/{id}/cancel"),
        &headers,
        Vec::new(),
    )
    .await
}

/// A `POST` on a task of its own, so that racing requests run in parallel on the runtime's
/// workers rather than merely interleaved on one.
fn spawn_post(
    app: &TestApp,
    path: String,
    token: &str,
    body: Option<Value>,
) -> tokio::task::JoinHandle<marketplace_tests::TestResponse> {
    let host = app.app.clone();
    let auth = format!("Bearer {token}");
    tokio::spawn(async move {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1:3000{path}"))
            .header("host", "127.0.0.1:3000")
            .header("authorization", auth);
        let bytes = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                serde_json::to_vec(&v).unwrap()
            }
            None => Vec::new(),
        };
        let resp = host
            .handle(req.body(bytes::Bytes::from(bytes)).unwrap())
            .await
            .unwrap_or_else(|e| panic!("POST {path}: host error: {e:#}"));
        let (parts, body) = resp.into_parts();
        marketplace_tests::TestResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    })
}

async fn the_cancel_endpoint_accepts_only_the_order_services_token(kv: Kv) {
    let app = app(kv).await;
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let anonymous = cancel(&app, None, &id).await;
    let admin = cancel(&app, Some(&app.token(Uuid::now_v7(), "admin")), &id).await;
    let carrier = cancel(&app, Some(&carrier(&app)), &id).await;
    let delivery = cancel(&app, Some(&app.service_token("delivery", "delivery")), &id).await;
    let wrong_audience = cancel(&app, Some(&app.service_token("order", "product")), &id).await;

    anonymous.expect_problem(401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    admin.expect_problem(403);
    carrier.expect_problem(403);
    delivery.expect_problem(403);
    wrong_audience.expect_problem(401);
    assert_eq!(
        shipment(&app, &id).await["status"],
        "pending",
        "nothing changed"
    );
    assert!(history_ids(&shipment(&app, &id).await).is_empty());
    // The order service's own token: unknown and malformed ids are 404.
    let order = order_token(&app);
    cancel(&app, Some(&order), &Uuid::now_v7().to_string())
        .await
        .expect_problem(404);
    cancel(&app, Some(&order), "not-a-uuid")
        .await
        .expect_problem(404);
    // A body, if any, is an empty JSON object.
    app.post(
        &format!("/internal/deliveries/{id}/cancel"),
        Some(&order),
        json!({"reason": "x"}),
    )
    .await
    .expect_problem(422);
    app.post(
        &format!("/internal/deliveries/{id}/cancel"),
        Some(&order),
        json!({}),
    )
    .await
    .expect(200);
}

async fn the_order_service_cancels_a_pending_shipment_idempotently(kv: Kv) {
    let app = app(kv).await;
    let spy = OrderSpy::default();
    spy.answer(Some(200));
    spy.install(&app);
    let s = create_shipment(&app, Uuid::now_v7()).await;
    let (id, number) = (
        s["id"].as_str().unwrap().to_string(),
        s["tracking_number"].as_str().unwrap().to_string(),
    );
    let order = order_token(&app);

    let first = cancel(&app, Some(&order), &id).await;
    let again = cancel(&app, Some(&order), &id).await;

    first.expect(200);
    let body = first.json();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(history_ids(&body), ["order/cancel"]);
    assert_eq!(body["history"][0]["status"], "cancelled");
    again.expect(200);
    assert_eq!(again.json()["status"], "cancelled");
    assert_eq!(
        again.json()["history"],
        body["history"],
        "a repeat changes nothing"
    );
    let stored = shipment(&app, &id).await;
    assert_eq!(stored["status"], "cancelled");
    assert_eq!(stored["history"].as_array().unwrap().len(), 1);
    // The public tracking view shows it like any status.
    let t = app
        .get(&format!("/api/deliveries/track/{number}"), None)
        .await;
    t.expect(200);
    assert_eq!(t.json()["status"], "cancelled");
    assert_eq!(t.json()["history"][0]["status"], "cancelled");
    // The order service asked: nothing is reported back to it, now or by the relay.
    relay(&app).await;
    assert!(spy.calls().is_empty(), "{:?}", spy.calls());
}

async fn a_shipment_that_left_pending_cannot_be_cancelled(kv: Kv) {
    let app = app(kv).await;
    let spy = OrderSpy::default();
    spy.answer(Some(200));
    spy.install(&app);
    let token = carrier(&app);
    let order = order_token(&app);
    for path in [
        &["picked_up"][..],
        &["picked_up", "in_transit"],
        &["returned"],
        &["picked_up", "in_transit", "out_for_delivery", "delivered"],
    ] {
        let id = create_shipment(&app, Uuid::now_v7()).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        walk(&app, &token, &id, path).await;
        let before = shipment(&app, &id).await;

        let doc = cancel(&app, Some(&order), &id).await.expect_problem(409);

        assert!(doc["detail"].as_str().unwrap().contains("pending"), "{doc}");
        assert_eq!(
            shipment(&app, &id).await,
            before,
            "{path:?}: nothing changed"
        );
    }
}

async fn no_carrier_event_lands_on_a_cancelled_shipment_not_even_a_late_one(kv: Kv) {
    let app = app(kv).await;
    let token = carrier(&app);
    let admin = app.token(Uuid::now_v7(), "admin");
    let id = create_shipment(&app, Uuid::now_v7()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A carrier cannot cancel: `cancelled` is not a carrier event (409 like `pending`).
    post_event(
        &app,
        &token,
        &id,
        json!({"event_id": "c-1", "status": "cancelled"}),
    )
    .await
    .expect_problem(409);
    assert_eq!(shipment(&app, &id).await["status"], "pending");
    cancel(&app, Some(&order_token(&app)), &id)
        .await
        .expect(200);
    let before = shipment(&app, &id).await;

    let hour_ago = ts(Utc::now() - Duration::hours(1));
    for (who, body) in [
        (&token, json!({"event_id": "p-1", "status": "picked_up"})),
        (&admin, json!({"event_id": "p-2", "status": "picked_up"})),
        (
            &token,
            json!({"event_id": "late-1", "status": "in_transit", "occurred_at": hour_ago}),
        ),
        (
            &token,
            json!({"event_id": "late-2", "status": "picked_up", "occurred_at": hour_ago}),
        ),
        (&token, json!({"event_id": "r-1", "status": "returned"})),
        (&token, json!({"event_id": "d-1", "status": "delivered"})),
        (&token, json!({"event_id": "c-2", "status": "cancelled"})),
        (
            &token,
            json!({"event_id": "order-cancel", "status": "in_transit"}),
        ),
    ] {
        post_event(&app, who, &id, body.clone())
            .await
            .expect_problem(409);
    }

    assert_eq!(shipment(&app, &id).await, before, "nothing was recorded");
}

async fn cancels_racing_pickups_let_exactly_one_win_per_shipment(kv: Kv) {
    let app = app(kv).await;
    let spy = OrderSpy::default();
    spy.answer(Some(200));
    spy.install(&app);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            create_shipment(&app, Uuid::now_v7()).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let order = order_token(&app);
    let token = carrier(&app);

    // Every pair is started at once, each request on a task of its own.
    let pairs: Vec<_> = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                spawn_post(
                    &app,
                    format!("/internal/deliveries/{id}/cancel"),
                    &order,
                    None,
                ),
                spawn_post(
                    &app,
                    format!("/api/deliveries/{id}/events"),
                    &token,
                    Some(json!({"event_id": "race-pickup", "status": "picked_up"})),
                ),
            )
        })
        .collect();
    let mut results = Vec::new();
    for (id, c, p) in pairs {
        results.push((id, c.await.unwrap(), p.await.unwrap()));
    }

    let (mut cancelled, mut picked) = (0, 0);
    for (id, c, p) in results {
        let s = shipment(&app, &id).await;
        match (c.status, p.status) {
            (200, 409) => {
                cancelled += 1;
                assert_eq!(s["status"], "cancelled", "{id}");
                assert_eq!(history_ids(&s), ["order/cancel"]);
            }
            (409, 201) => {
                picked += 1;
                assert_eq!(s["status"], "picked_up", "{id}");
                assert_eq!(history_ids(&s), ["race-pickup"]);
            }
            other => panic!(
                "{id}: cancel {} / pickup {} ({other:?}): {} / {}",
                c.status,
                p.status,
                String::from_utf8_lossy(&c.body),
                String::from_utf8_lossy(&p.body)
            ),
        }
    }
    assert_eq!(cancelled + picked, 20);
    // Only the pickups are reported (`shipped`), each once.
    relay(&app).await;
    let reports = spy
        .calls()
        .into_iter()
        .filter(|(_, path, _)| path.ends_with("/delivery-status"))
        .count();
    assert!(reports >= picked, "{reports} reports for {picked} pickups");
    eprintln!("race: {cancelled} cancels won, {picked} pickups won");
}
