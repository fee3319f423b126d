//! Calls to the product and delivery services' internal endpoints, with service tokens.

use marketplace_shared::wit::{Reservation, ReservationItem, ReservationRequest, ShipmentRequest};
use marketplace_shared::{FieldErrors, ShipmentStatus, ShortItem};
use spin_sdk::http::{Method, Request, Response};
use uuid::Uuid;

use crate::config::{Config, SERVICE};
use crate::domain::order::Line;

/// Why a reservation was not made (or may have been made).
#[derive(Debug)]
pub enum ReserveError {
    /// 409: not enough stock; nothing was reserved. The product service's detail and the
    /// products it names short.
    Conflict(String, Vec<ShortItem>),
    /// 422: unknown or archived products; nothing was reserved. Field errors when given.
    Invalid(String, Option<FieldErrors>),
    /// No usable answer: the reservation may or may not exist and must be released.
    Unavailable(String),
}

async fn call(
    cfg: &Config,
    audience: &str,
    method: Method,
    url: String,
    body: Option<Vec<u8>>,
) -> Result<Response, String> {
    let token = cfg
        .signer
        .service_token(SERVICE, audience, chrono::Utc::now().timestamp());
    let mut builder = Request::builder();
    builder
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json");
    if let Some(body) = body {
        builder
            .header("content-type", "application/json")
            .body(body);
    }
    spin_sdk::http::send::<Request, Response>(builder.build())
        .await
        .map_err(|e| format!("{audience} unreachable: {e}"))
}

fn problem_detail(body: &[u8]) -> (String, Option<FieldErrors>) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let detail = v
        .get("detail")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .chars()
        .take(1000)
        .collect();
    let errors = v.get("errors").and_then(|e| e.as_object()).map(|m| {
        let mut errors = FieldErrors::new();
        for (field, messages) in m.iter().take(200) {
            for msg in messages.as_array().into_iter().flatten().take(10) {
                if let Some(msg) = msg.as_str() {
                    errors.add(field.chars().take(200).collect::<String>(), msg);
                }
            }
        }
        errors
    });
    (detail, errors.filter(|e| !e.is_empty()))
}

/// The `short_items` of a 409 (at most 100, like the lines of an order).
fn short_items(body: &[u8]) -> Vec<ShortItem> {
    #[derive(serde::Deserialize)]
    struct Short {
        #[serde(default)]
        short_items: Vec<ShortItem>,
    }
    let mut items = serde_json::from_slice::<Short>(body)
        .map(|s| s.short_items)
        .unwrap_or_default();
    items.truncate(100);
    items
}

/// `POST {product}/internal/products/reservations`; the reservation id makes it idempotent.
pub async fn reserve(
    cfg: &Config,
    reservation_id: &str,
    lines: &[Line],
) -> Result<Reservation, ReserveError> {
    let request = ReservationRequest {
        reservation_id: reservation_id.to_string(),
        items: lines
            .iter()
            .map(|l| ReservationItem {
                product_id: l.product_id.to_string(),
                quantity: l.quantity,
            })
            .collect(),
    };
    let body =
        serde_json::to_vec(&request).map_err(|e| ReserveError::Unavailable(e.to_string()))?;
    let url = format!("{}/internal/products/reservations", cfg.product_url);
    let resp = call(cfg, "product", Method::Post, url, Some(body))
        .await
        .map_err(ReserveError::Unavailable)?;
    let status = *resp.status();
    match status {
        200 | 201 => serde_json::from_slice::<Reservation>(resp.body()).map_err(|e| {
            ReserveError::Unavailable(format!("product answered an unreadable reservation: {e}"))
        }),
        409 => Err(ReserveError::Conflict(
            problem_detail(resp.body()).0,
            short_items(resp.body()),
        )),
        422 => {
            let (detail, errors) = problem_detail(resp.body());
            Err(ReserveError::Invalid(detail, errors))
        }
        s => Err(ReserveError::Unavailable(format!(
            "product answered {s} to a reservation"
        ))),
    }
}

/// `DELETE {product}/internal/products/reservations/{id}`: the stock comes back. Idempotent;
/// an unknown reservation (404) counts as released.
pub async fn release(cfg: &Config, reservation_id: &str) -> Result<(), String> {
    let url = format!(
        "{}/internal/products/reservations/{}",
        cfg.product_url, reservation_id
    );
    let resp = call(cfg, "product", Method::Delete, url, None).await?;
    match *resp.status() {
        200..=299 | 404 => Ok(()),
        s => Err(format!("product answered {s} to a release")),
    }
}

/// `POST {delivery}/internal/deliveries` (idempotent per order id there); the shipment (its
/// id and tracking number are what the order records).
pub async fn create_shipment(
    cfg: &Config,
    request: &ShipmentRequest,
) -> Result<ShipmentState, String> {
    ensure_shipment(cfg, request).await
}

/// A shipment as the delivery service answered it: its id, status and tracking number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentState {
    pub id: Uuid,
    pub status: Option<ShipmentStatus>,
    /// Shown to the seller in `GET /api/orders/sales`; `None` if the answer lacked it.
    pub tracking_number: Option<String>,
}

fn shipment_state(body: &[u8]) -> Result<ShipmentState, String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("delivery answered unreadable JSON: {e}"))?;
    let id = v
        .get("id")
        .and_then(|id| id.as_str())
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| "delivery answered a shipment without an id".to_string())?;
    let status = v
        .get("status")
        .and_then(|s| s.as_str())
        .and_then(ShipmentStatus::parse);
    let tracking_number = v
        .get("tracking_number")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty() && t.len() <= 100)
        .map(str::to_string);
    Ok(ShipmentState {
        id,
        status,
        tracking_number,
    })
}

/// `POST {delivery}/internal/deliveries`: the order's shipment, created if it has none yet
/// (idempotent per order id: a repeat answers the existing shipment as it is now).
pub async fn ensure_shipment(
    cfg: &Config,
    request: &ShipmentRequest,
) -> Result<ShipmentState, String> {
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let url = format!("{}/internal/deliveries", cfg.delivery_url);
    let resp = call(cfg, "delivery", Method::Post, url, Some(body)).await?;
    match *resp.status() {
        200..=299 => shipment_state(resp.body()),
        s => Err(format!("delivery answered {s} to a shipment request")),
    }
}

/// The delivery service's definite answers to a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipmentCancel {
    /// 200: the shipment is `cancelled` (now or before: idempotent there).
    Cancelled,
    /// 409: the shipment has left `pending`; the delivery service's detail.
    TooLate(String),
}

/// `POST {delivery}/internal/deliveries/{id}/cancel`. `Err`: no definite answer (unreachable,
/// timeout, 5xx, anything unexpected): the shipment may or may not be cancelled.
pub async fn cancel_shipment(cfg: &Config, shipment: Uuid) -> Result<ShipmentCancel, String> {
    let url = format!("{}/internal/deliveries/{shipment}/cancel", cfg.delivery_url);
    let resp = call(cfg, "delivery", Method::Post, url, None).await?;
    match *resp.status() {
        200 => match shipment_state(resp.body())?.status {
            Some(ShipmentStatus::Cancelled) => Ok(ShipmentCancel::Cancelled),
            other => Err(format!(
                "delivery answered 200 to a cancel with shipment status {other:?}"
            )),
        },
        409 => Ok(ShipmentCancel::TooLate(problem_detail(resp.body()).0)),
        s => Err(format!("delivery answered {s} to a cancel of {shipment}")),
    }
}
