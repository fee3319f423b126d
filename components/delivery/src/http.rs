//! The route table and thin handlers. Matches `spin.toml` (`/api/deliveries/...`,
//! `/internal/deliveries/...`) and the contract's "Delivery service" section.

use marketplace_shared::page::{Page, decode_cursor, limit};
use marketplace_shared::query::Query;
use marketplace_shared::response::{header, json, parse_body};
use marketplace_shared::tokens::Principal;
use marketplace_shared::{Problem, Role, time};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};
use uuid::Uuid;

use crate::config::{Config, SERVICE};
use crate::domain::shard::label;
use crate::domain::status;
use crate::domain::{EventInput, OrderId, ShipmentInput, TrackingNumber};
use crate::error::{Error, Result};
use crate::store::kv::{Bucket, Shards};
use crate::store::wasi::WasiShards;
use crate::store::{self, Recorded, Report, Shipment};

/// The OpenAPI 3.1 document of this service.
const OPENAPI: &str = include_str!("../openapi.json");

/// Queue slots one relay run reads per label.
const RELAY_BATCH: i64 = 100;

/// Handles one request; every error becomes a problem document.
pub async fn handle(req: Request) -> Response {
    match route(&req).await {
        Ok(resp) => resp,
        Err(e) => e.into_problem().into(),
    }
}

fn allow(req: &Request, methods: &[&str]) -> Result<()> {
    let m = req.method().to_string();
    if methods
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(&m))
    {
        Ok(())
    } else {
        Err(Problem::method_not_allowed(methods).into())
    }
}

async fn route(req: &Request) -> Result<Response> {
    let path = req.path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "deliveries", "healthz"] => {
            allow(req, &["GET"])?;
            Ok(json(200, &json!({"status": "ok"})))
        }
        ["api", "deliveries", "readyz"] => {
            allow(req, &["GET"])?;
            readyz()
        }
        ["api", "deliveries", "openapi.json"] => {
            allow(req, &["GET"])?;
            Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(OPENAPI)
                .build())
        }
        ["api", "deliveries"] => {
            allow(req, &["GET"])?;
            list(req)
        }
        ["api", "deliveries", "track", number] => {
            allow(req, &["GET"])?;
            track(number)
        }
        ["api", "deliveries", id] => {
            allow(req, &["GET"])?;
            get_one(req, id)
        }
        ["api", "deliveries", id, "events"] => {
            allow(req, &["POST"])?;
            record_event(req, id).await
        }
        ["internal", "deliveries"] => {
            allow(req, &["POST"])?;
            create(req)
        }
        ["internal", "deliveries", "outbox", "relay"] => {
            allow(req, &["POST"])?;
            relay(req).await
        }
        ["internal", "deliveries", id, "cancel"] => {
            allow(req, &["POST"])?;
            cancel(req, id)
        }
        _ => Err(Problem::not_found("no such resource").into()),
    }
}

fn authorization(req: &Request) -> Option<&str> {
    header(req, "authorization")
}

fn authenticate(req: &Request, config: &Config) -> Result<Principal> {
    Ok(config.verifier.authenticate(authorization(req))?)
}

/// Carriers and admins see every shipment; a buyer sees their own; nobody else sees any.
fn may_read(who: &Principal, s: &Shipment) -> bool {
    matches!(who.role, Role::Carrier | Role::Admin)
        || (who.role == Role::Buyer && s.record.buyer_id == who.user_id)
}

fn parse_id(raw: &str) -> Result<Uuid> {
    // Canonical lowercase hyphenated form only: one spelling, one key.
    Uuid::parse_str(raw)
        .ok()
        .filter(|id| id.to_string() == raw)
        .ok_or(Error::NotFound)
}

// ------------------------------------------------------------------ views

fn shipment_view(s: &Shipment) -> Value {
    let r = &s.record;
    json!({
        "id": r.id,
        "order_id": r.order_id,
        "buyer_id": r.buyer_id,
        "tracking_number": r.tracking_number,
        "status": s.state.progress.status.as_str(),
        "shipping_address": r.shipping_address,
        "items": r.items,
        "history": s.history.iter().map(|e| json!({
            "event_id": e.event_id,
            "status": e.status.as_str(),
            "occurred_at": time::format(e.occurred_at),
            "recorded_at": time::format(e.recorded_at),
            "location": e.location,
            "note": e.note,
        })).collect::<Vec<_>>(),
        "created_at": time::format(r.created_at),
        "updated_at": time::format(s.state.updated_at),
    })
}

/// Public tracking: status and where the parcel has been; nothing about who or where to.
fn tracking_view(s: &Shipment) -> Value {
    json!({
        "tracking_number": s.record.tracking_number,
        "status": s.state.progress.status.as_str(),
        "history": s.history.iter().map(|e| json!({
            "status": e.status.as_str(),
            "occurred_at": time::format(e.occurred_at),
            "location": e.location,
        })).collect::<Vec<_>>(),
    })
}

// ------------------------------------------------------------------ handlers

fn readyz() -> Result<Response> {
    let shards = WasiShards::new();
    for i in store::all_shards() {
        let ok = shards
            .shard(i)
            .and_then(|b| b.get("dlv:readyz").map(|_| ()));
        if let Err(e) = ok {
            eprintln!("readyz: {} failed: {}", label(i), e.cause);
            return Err(
                Problem::service_unavailable(&format!("key-value store {}", label(i))).into(),
            );
        }
    }
    Ok(json(200, &json!({"status": "ready"})))
}

fn get_one(req: &Request, raw_id: &str) -> Result<Response> {
    let config = Config::load()?;
    let who = authenticate(req, &config)?;
    let id = parse_id(raw_id)?;
    let shards = WasiShards::new();
    match store::load(&shards, id)? {
        Some(s) if may_read(&who, &s) => Ok(json(200, &shipment_view(&s))),
        _ => Err(Error::NotFound),
    }
}

fn list(req: &Request) -> Result<Response> {
    let config = Config::load()?;
    let who = authenticate(req, &config)?;
    let q = Query::parse(req.query(), &["order_id", "limit", "cursor"])?;
    let _limit = limit(&q)?;
    let raw = q
        .get("order_id")
        .ok_or_else(|| Problem::bad_request("query parameter `order_id` is required"))?;
    let order_id = OrderId::parse(raw)
        .ok_or_else(|| Problem::bad_request("`order_id` is not a valid order id"))?;
    // An order has at most one shipment, so a page never continues: any cursor we could have
    // issued points past the end.
    let after_end = match q.get("cursor") {
        Some(c) => decode_cursor::<String>(c).map(|_| true)?,
        None => false,
    };
    let shards = WasiShards::new();
    let items = match store::load_by_order(&shards, &order_id)? {
        Some(s) if !after_end && may_read(&who, &s) => vec![shipment_view(&s)],
        _ => Vec::new(),
    };
    Ok(json(
        200,
        &Page {
            items,
            next_cursor: None,
        },
    ))
}

fn track(raw: &str) -> Result<Response> {
    let number = TrackingNumber::parse(raw).ok_or(Error::NotFound)?;
    let shards = WasiShards::new();
    match store::load_by_tracking(&shards, &number)? {
        Some(s) => Ok(json(200, &tracking_view(&s))),
        None => Err(Error::NotFound),
    }
}

async fn record_event(req: &Request, raw_id: &str) -> Result<Response> {
    let config = Config::load()?;
    let who = authenticate(req, &config)?;
    if !matches!(who.role, Role::Carrier | Role::Admin) {
        return Err(Problem::forbidden("only carriers and admins record delivery events").into());
    }
    let id = parse_id(raw_id)?;
    let input: EventInput = parse_body(req)?;
    let event = input.parse(time::now()).map_err(Error::Invalid)?;
    if !status::is_carrier_status(event.status) {
        return Err(Error::Conflict(
            "`cancelled` is not a carrier event: the order service cancels shipments".into(),
        ));
    }
    let shards = WasiShards::new();
    let recorded = store::record_event(&shards, id, &event)?;
    let shipment = store::load(&shards, id)?.ok_or(Error::NotFound)?;
    if let Recorded::New {
        report: Some(report),
        slot,
    } = recorded
    {
        deliver_now(&config, &shards, &shipment, &report, slot).await;
    }
    Ok(json(201, &shipment_view(&shipment)))
}

/// The first attempt at an outbox report, right after the event is recorded. Failure is fine:
/// the report stays pending and the relay retries it.
async fn deliver_now(
    config: &Config,
    shards: &WasiShards,
    s: &Shipment,
    report: &Report,
    slot: Option<i64>,
) {
    let id = s.record.id;
    match send_report(config, &s.record.order_id, id, report).await {
        Delivery::Done => {
            if let Err(e) = store::acknowledge(shards, id, &report.event_id, slot) {
                eprintln!(
                    "report of {id} delivered but not acknowledged (the relay will resend): {e:?}"
                );
            }
        }
        Delivery::Retry => {
            // The queue slot written before the commit may already have been consumed by a
            // relay run that saw no report yet: queue the shipment again.
            if let Err(e) = store::requeue(shards, id) {
                eprintln!("could not requeue the report of {id}: {e:?}");
            }
        }
    }
}

enum Delivery {
    /// The order service has it (2xx), or refused it for good (a permanent 4xx).
    Done,
    /// Network failure, 5xx, or a 4xx that may pass later (401/403 during key rotation, 429…).
    Retry,
}

async fn send_report(
    config: &Config,
    order_id: &OrderId,
    shipment: Uuid,
    report: &Report,
) -> Delivery {
    let url = format!(
        "{}/internal/orders/{}/delivery-status",
        config.order_service_url,
        order_id.as_str()
    );
    let token = config
        .signer
        .service_token(SERVICE, "order", time::now().timestamp());
    let body = json!({
        "status": report.status,
        "occurred_at": time::format(report.occurred_at),
    });
    let request = Request::builder()
        .method(Method::Post)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", format!("{shipment}:{}", report.event_id))
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .build();
    match spin_sdk::http::send::<_, Response>(request).await {
        Ok(resp) => {
            let status = *resp.status();
            match status {
                200..=299 => Delivery::Done,
                401 | 403 | 408 | 425 | 429 => {
                    eprintln!(
                        "order service answered {status} to report {shipment}/{}; will retry",
                        report.event_id
                    );
                    Delivery::Retry
                }
                400..=499 => {
                    eprintln!(
                        "order service refused report {shipment}/{} for good ({status})",
                        report.event_id
                    );
                    Delivery::Done
                }
                _ => {
                    eprintln!(
                        "order service answered {status} to report {shipment}/{}; will retry",
                        report.event_id
                    );
                    Delivery::Retry
                }
            }
        }
        Err(e) => {
            eprintln!(
                "order service unreachable for report {shipment}/{}: {e}",
                report.event_id
            );
            Delivery::Retry
        }
    }
}

fn create(req: &Request) -> Result<Response> {
    let config = Config::load()?;
    config
        .verifier
        .authenticate_service(authorization(req), &["order"])?;
    let input: ShipmentInput = parse_body(req)?;
    let new = input.parse().map_err(Error::Invalid)?;
    let shards = WasiShards::new();
    let (shipment, _created) = store::create(&shards, &new, time::now(), || {
        Uuid::new_v4().as_u128() as u64
    })?;
    // The same answer for a repeat: the order service may retry after a lost response.
    Ok(json(201, &shipment_view(&shipment)))
}

/// `POST /internal/deliveries/{id}/cancel` (service `order`): `pending → cancelled`, recorded
/// by the same compare-and-swap append as carrier events (a racing `picked_up` either lands
/// first and this is 409, or finds the shipment cancelled and is 409 itself). Idempotent: a
/// cancelled shipment answers 200 again.
fn cancel(req: &Request, raw_id: &str) -> Result<Response> {
    let config = Config::load()?;
    config
        .verifier
        .authenticate_service(authorization(req), &["order"])?;
    let id = parse_id(raw_id)?;
    optional_empty_body(req)?;
    let shards = WasiShards::new();
    store::cancel(&shards, id, time::now())?;
    let shipment = store::load(&shards, id)?.ok_or(Error::NotFound)?;
    Ok(json(200, &shipment_view(&shipment)))
}

/// The body of an action endpoint: nothing, or an empty JSON object.
fn optional_empty_body(req: &Request) -> Result<()> {
    if req.body().is_empty() {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct Empty {}
    let _: Empty = parse_body(req)?;
    Ok(())
}

async fn relay(req: &Request) -> Result<Response> {
    let config = Config::load()?;
    config
        .verifier
        .authenticate_service(authorization(req), &[SERVICE])?;
    let shards = WasiShards::new();
    let (mut attempted, mut delivered, mut pending) = (0u32, 0u32, 0u32);
    let mut failed_labels = Vec::new();
    for shard in store::all_shards() {
        let outcome: Result<()> = async {
            let window = store::outbox_window(&shards, shard, RELAY_BATCH)?;
            let mut still_pending = Vec::new();
            for id in &window.shipments {
                let Some(s) = store::load(&shards, *id)? else {
                    continue;
                };
                let mut left = false;
                for report in &s.state.reports {
                    attempted += 1;
                    match send_report(&config, &s.record.order_id, *id, report).await {
                        Delivery::Done => {
                            store::acknowledge(&shards, *id, &report.event_id, None)?;
                            delivered += 1;
                        }
                        Delivery::Retry => left = true,
                    }
                }
                if left {
                    pending += 1;
                    still_pending.push(*id);
                }
            }
            store::outbox_advance(&shards, &window, &still_pending)
        }
        .await;
        if let Err(e) = outcome {
            let problem = e.into_problem();
            eprintln!("relay: {} skipped: {}", label(shard), problem.detail);
            failed_labels.push(label(shard));
        }
    }
    if let Some(first) = failed_labels.first() {
        return Err(Problem::service_unavailable(&format!("key-value store {first}")).into());
    }
    Ok(json(
        200,
        &json!({"attempted": attempted, "delivered": delivered, "pending_shipments": pending}),
    ))
}
