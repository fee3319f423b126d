//! Calls to the product and delivery services' internal endpoints, with service tokens
//! (`marketplace_shared::outbound::ServiceClient`).

use marketplace_shared::outbound::ServiceClient;
use marketplace_shared::wit::{
    Reservation, ReservationItem, ReservationRequest, ShipmentItem, ShipmentRequest,
};
use marketplace_shared::{FieldErrors, Problem, ShipmentStatus, ShortItem};
use serde::Deserialize;
use spin_sdk::http::{Method, Response};
use uuid::Uuid;

use crate::config::{Config, SERVICE};
use crate::domain::order::{Line, Order};
use crate::domain::shard::OrderId;

/// Why a reservation was not made (or may have been made).
#[derive(Debug)]
pub enum ReserveError {
    /// A definite refusal (409 not enough stock, 422 unknown or archived products): nothing
    /// was reserved. The problem to answer with.
    Refused(Problem),
    /// No usable answer: the reservation may or may not exist and must be released.
    Unknown(String),
}

/// Sends `method url` to the `audience` service with a fresh service token.
async fn send(
    cfg: &Config,
    audience: &str,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
) -> Result<Response, String> {
    let (service, signer) = (SERVICE, &cfg.signer);
    let client = ServiceClient { service, signer };
    client.send(audience, method, url, body, &[]).await
}

/// The parts of a problem document the order service passes on.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Refusal {
    detail: String,
    errors: std::collections::BTreeMap<String, Vec<String>>,
    short_items: Vec<ShortItem>,
}

fn refusal(resp: &Response) -> Refusal {
    let mut r: Refusal = serde_json::from_slice(resp.body()).unwrap_or_default();
    r.detail = r.detail.chars().take(1000).collect();
    r.short_items.truncate(100);
    r
}

/// `POST {product}/internal/products/reservations`; the reservation id makes it idempotent.
pub async fn reserve(
    cfg: &Config,
    reservation: &OrderId,
    lines: &[Line],
) -> Result<Reservation, ReserveError> {
    let request = ReservationRequest {
        reservation_id: reservation.to_string(),
        items: lines
            .iter()
            .map(|l| ReservationItem {
                product_id: l.product_id.to_string(),
                quantity: l.quantity,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&request).map_err(|e| ReserveError::Unknown(e.to_string()))?;
    let url = format!("{}/internal/products/reservations", cfg.product_url);
    let resp = send(cfg, "product", Method::Post, &url, Some(body)).await;
    let resp = resp.map_err(ReserveError::Unknown)?;
    match *resp.status() {
        200 | 201 => serde_json::from_slice::<Reservation>(resp.body()).map_err(|e| {
            ReserveError::Unknown(format!("product answered an unreadable reservation: {e}"))
        }),
        409 => {
            let r = refusal(&resp);
            Err(ReserveError::Refused(if !r.short_items.is_empty() {
                Problem::insufficient_stock(r.short_items)
            } else if r.detail.is_empty() {
                Problem::conflict("not enough stock")
            } else {
                Problem::conflict(r.detail)
            }))
        }
        422 => {
            let r = refusal(&resp);
            let mut errors = FieldErrors::new();
            for (field, messages) in r.errors.iter().take(200) {
                for msg in messages.iter().take(10) {
                    errors.add(field.chars().take(200).collect::<String>(), msg.as_str());
                }
            }
            if errors.is_empty() {
                let detail = Some(r.detail).filter(|d| !d.is_empty());
                let fallback = "unknown or archived product";
                errors.add("items", detail.as_deref().unwrap_or(fallback));
            }
            Err(ReserveError::Refused(Problem::validation(errors)))
        }
        s => Err(ReserveError::Unknown(format!(
            "product answered {s} to a reservation"
        ))),
    }
}

/// `DELETE {product}/internal/products/reservations/{id}`: the stock comes back. Idempotent;
/// an unknown reservation (404) counts as released.
pub async fn release(cfg: &Config, reservation: &OrderId) -> Result<(), String> {
    let base = &cfg.product_url;
    let url = format!("{base}/internal/products/reservations/{reservation}");
    let resp = send(cfg, "product", Method::Delete, &url, None).await?;
    match *resp.status() {
        200..=299 | 404 => Ok(()),
        s => Err(format!("product answered {s} to a release")),
    }
}

/// A shipment as the delivery service answered it: its id, status and tracking number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShipmentState {
    pub id: Uuid,
    #[serde(default, deserialize_with = "status")]
    pub status: Option<ShipmentStatus>,
    /// Shown to the seller in `GET /api/orders/sales`; `None` if the answer lacked it.
    #[serde(default)]
    pub tracking_number: Option<String>,
}

fn status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ShipmentStatus>, D::Error> {
    let status = Option::<String>::deserialize(d)?;
    Ok(status.as_deref().and_then(ShipmentStatus::parse))
}

fn shipment_state(resp: &Response) -> Result<ShipmentState, String> {
    let mut s: ShipmentState = serde_json::from_slice(resp.body())
        .map_err(|e| format!("delivery answered an unreadable shipment: {e}"))?;
    s.tracking_number.take_if(|t| t.is_empty() || t.len() > 100);
    Ok(s)
}

/// `POST {delivery}/internal/deliveries`: the order's shipment, created if it has none yet
/// (idempotent per order id: a repeat answers the existing shipment as it is now).
pub async fn ensure_shipment(cfg: &Config, order: &Order) -> Result<ShipmentState, String> {
    let request = ShipmentRequest {
        order_id: order.id.to_string(),
        buyer_id: order.buyer_id.to_string(),
        shipping_address: order.shipping_address.clone(),
        items: order
            .items
            .iter()
            .map(|l| ShipmentItem {
                product_id: l.product_id.to_string(),
                title: l.title.clone(),
                quantity: l.quantity,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    let url = format!("{}/internal/deliveries", cfg.delivery_url);
    let resp = send(cfg, "delivery", Method::Post, &url, Some(body)).await?;
    match *resp.status() {
        200..=299 => shipment_state(&resp),
        s => Err(format!("delivery answered {s} to a shipment request")),
    }
}

/// The delivery service's definite answers to a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipmentCancel {
    /// 200: the shipment is `cancelled` (now or before: idempotent there).
    Cancelled,
    /// 409: the shipment has left `pending`.
    TooLate,
}

/// `POST {delivery}/internal/deliveries/{id}/cancel`. `Err`: no definite answer (unreachable,
/// timeout, 5xx, anything unexpected): the shipment may or may not be cancelled.
pub async fn cancel_shipment(cfg: &Config, shipment: Uuid) -> Result<ShipmentCancel, String> {
    let url = format!("{}/internal/deliveries/{shipment}/cancel", cfg.delivery_url);
    let resp = send(cfg, "delivery", Method::Post, &url, None).await?;
    match *resp.status() {
        200 => match shipment_state(&resp)?.status {
            Some(ShipmentStatus::Cancelled) => Ok(ShipmentCancel::Cancelled),
            other => Err(format!(
                "delivery answered 200 to a cancel with shipment status {other:?}"
            )),
        },
        409 => Ok(ShipmentCancel::TooLate),
        s => Err(format!("delivery answered {s} to a cancel of {shipment}")),
    }
}
