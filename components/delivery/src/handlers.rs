//! One thin handler per route: parse the input, authorize, call the store, build the view.

use marketplace_shared::http::{bytes, header, json, parse_body};
use marketplace_shared::page::{Page, decode_cursor, limit};
use marketplace_shared::query::Query;
use marketplace_shared::tokens::Principal;
use marketplace_shared::wit::ShipmentItem;
use marketplace_shared::{Problem, Role, ShipmentStatus, ShippingAddress, time};
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Request, Response};
use uuid::Uuid;

use crate::config::{Config, ORDER, RELAY};
use crate::domain::status::{is_carrier_status, status_serde};
use crate::domain::{EventInput, NewEvent, NewShipment, OrderId, TrackingNumber};
use crate::error::{Error, Result};
use crate::relay;
use crate::store::wasi::WasiShards;
use crate::store::{self, Public, Recorded, Shipment, Tracking};

pub const OPENAPI: &str = include_str!("../openapi.json");

// ------------------------------------------------------------------ views

/// A shipment as the contract shows it to its buyer, carriers and admins.
#[derive(Serialize)]
struct ShipmentView<'a> {
    id: Uuid,
    order_id: &'a OrderId,
    buyer_id: Uuid,
    tracking_number: &'a TrackingNumber,
    #[serde(with = "status_serde")]
    status: ShipmentStatus,
    shipping_address: &'a ShippingAddress,
    items: &'a [ShipmentItem],
    history: &'a [NewEvent],
    created_at: String,
    updated_at: String,
}

fn shipment_view(s: &Shipment) -> ShipmentView<'_> {
    let r = &s.record;
    ShipmentView {
        id: r.id,
        order_id: &r.order_id,
        buyer_id: r.buyer_id,
        tracking_number: &r.tracking_number,
        status: s.state.progress.status,
        shipping_address: &r.shipping_address,
        items: &r.items,
        history: &s.history,
        created_at: time::format(r.created_at),
        updated_at: time::format(s.state.updated_at),
    }
}

/// Public tracking: status and where the parcel has been; nothing about who or where to.
#[derive(Serialize)]
struct TrackingView<'a> {
    tracking_number: &'a TrackingNumber,
    #[serde(with = "status_serde")]
    status: ShipmentStatus,
    history: Vec<TrackingEntry<'a>>,
}

#[derive(Serialize)]
struct TrackingEntry<'a> {
    #[serde(with = "status_serde")]
    status: ShipmentStatus,
    occurred_at: String,
    location: &'a Option<String>,
}

fn tracking_view(t: &Tracking) -> TrackingView<'_> {
    TrackingView {
        tracking_number: &t.number,
        status: t.status,
        history: t
            .history
            .iter()
            .map(|e: &Public| TrackingEntry {
                status: e.status,
                occurred_at: time::format(e.occurred_at),
                location: &e.location,
            })
            .collect(),
    }
}

// ------------------------------------------------------------------ access

fn authenticate(req: &Request, cfg: &Config) -> Result<Principal> {
    Ok(cfg.verifier.authenticate(header(req, "authorization"))?)
}

/// A service token from exactly `caller` (401 without a valid one, 403 for another caller or
/// a user's token).
fn service(req: &Request, cfg: &Config, caller: &str) -> Result<()> {
    cfg.verifier
        .authenticate_service(header(req, "authorization"), &[caller])?;
    Ok(())
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

/// The body of an action endpoint: nothing, or an empty JSON object.
fn optional_empty_body(req: &Request) -> Result<()> {
    #[derive(Deserialize)]
    struct Empty {}
    if !req.body().is_empty() {
        let _: Empty = parse_body(req)?;
    }
    Ok(())
}

// ------------------------------------------------------------------ handlers

pub fn healthz() -> Response {
    json(200, &serde_json::json!({"status": "ok"}))
}

pub fn openapi() -> Response {
    bytes(200, "application/json", OPENAPI.as_bytes().to_vec(), &[])
}

pub fn readyz() -> Result<Response> {
    store::ready(&WasiShards::default())?;
    Ok(json(200, &serde_json::json!({"status": "ready"})))
}

/// `GET /api/deliveries?order_id=`: the order's shipment, as a page of at most one.
pub fn list(req: &Request, cfg: &Config, q: &Query) -> Result<Response> {
    let who = authenticate(req, cfg)?;
    limit(q)?;
    let raw = q
        .get("order_id")
        .ok_or_else(|| Problem::bad_request("query parameter `order_id` is required"))?;
    let order_id = OrderId::parse(raw)
        .ok_or_else(|| Problem::bad_request("`order_id` is not a valid order id"))?;
    // An order has at most one shipment, so a page never continues: any cursor we could have
    // issued points past the end.
    let after_end = q
        .get("cursor")
        .map(decode_cursor::<String>)
        .transpose()?
        .is_some();
    let found = store::load_by_order(&WasiShards::default(), &order_id)?;
    let items: Vec<ShipmentView> = match &found {
        Some(s) if !after_end && may_read(&who, s) => vec![shipment_view(s)],
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

/// `GET /api/deliveries/track/{number}`: public; reads the index and the state only.
pub fn track(raw: &str) -> Result<Response> {
    let number = TrackingNumber::parse(raw).ok_or(Error::NotFound)?;
    let tracking = store::load_tracking(&WasiShards::default(), &number)?.ok_or(Error::NotFound)?;
    Ok(json(200, &tracking_view(&tracking)))
}

pub fn shipment(req: &Request, cfg: &Config, raw_id: &str) -> Result<Response> {
    let who = authenticate(req, cfg)?;
    let id = parse_id(raw_id)?;
    match store::load(&WasiShards::default(), id)? {
        Some(s) if may_read(&who, &s) => Ok(json(200, &shipment_view(&s))),
        _ => Err(Error::NotFound),
    }
}

/// `POST /api/deliveries/{id}/events` (carriers, admins); a report it creates is sent now.
pub async fn record_event(req: &Request, cfg: &Config, raw_id: &str) -> Result<Response> {
    let who = authenticate(req, cfg)?;
    if !matches!(who.role, Role::Carrier | Role::Admin) {
        return Err(Problem::forbidden("only carriers and admins record delivery events").into());
    }
    let id = parse_id(raw_id)?;
    let input: EventInput = parse_body(req)?;
    let event = input.parse(time::now()).map_err(Error::Invalid)?;
    if !is_carrier_status(event.status) {
        return Err(Error::Conflict(
            "`cancelled` is not a carrier event: the order service cancels shipments".into(),
        ));
    }
    let shards = WasiShards::default();
    let recorded = store::record_event(&shards, id, &event)?;
    let shipment = store::load(&shards, id)?.ok_or(Error::NotFound)?;
    if let Recorded::New(Some((report, slot))) = recorded {
        relay::deliver_now(cfg, &shards, &shipment, &report, slot).await;
    }
    Ok(json(201, &shipment_view(&shipment)))
}

/// `POST /internal/deliveries` (service `order`): idempotent per `order_id`, the same answer
/// for a repeat (the order service may retry after a lost response).
pub fn create(req: &Request, cfg: &Config) -> Result<Response> {
    service(req, cfg, ORDER)?;
    let new = NewShipment::parse(&parse_body(req)?).map_err(Error::Invalid)?;
    let shipment = store::create(&WasiShards::default(), &new, time::now())?;
    Ok(json(201, &shipment_view(&shipment)))
}

/// `POST /internal/deliveries/{id}/cancel` (service `order`): `pending → cancelled`, 409 once
/// picked up (`store::events`). Idempotent: a cancelled shipment answers 200 again.
pub fn cancel(req: &Request, cfg: &Config, raw_id: &str) -> Result<Response> {
    service(req, cfg, ORDER)?;
    let id = parse_id(raw_id)?;
    optional_empty_body(req)?;
    let shards = WasiShards::default();
    store::record_event(&shards, id, &NewEvent::cancellation(time::now()))?;
    let shipment = store::load(&shards, id)?.ok_or(Error::NotFound)?;
    Ok(json(200, &shipment_view(&shipment)))
}

/// `POST /internal/deliveries/outbox/relay`: the relay CronJob's identity only (its body,
/// if any, says nothing and is not read).
pub async fn relay(req: &Request, cfg: &Config) -> Result<Response> {
    service(req, cfg, RELAY)?;
    Ok(json(200, &relay::run(cfg, &WasiShards::default()).await?))
}
