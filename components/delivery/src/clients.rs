//! The one call this service makes: a shipment status report to the order service
//! (`POST /internal/orders/{id}/delivery-status`), with this service's own token.

use marketplace_shared::outbound::ServiceClient;
use marketplace_shared::time;
use marketplace_shared::wit::DeliveryStatusUpdate;
use spin_sdk::http::Method;
use uuid::Uuid;

use crate::config::{Config, ORDER, SERVICE};
use crate::domain::OrderId;
use crate::store::Report;

/// What became of one report.
pub enum Delivery {
    /// The order service has it (2xx), or refused it for good (a permanent 4xx).
    Done,
    /// Network failure, 5xx, or a 4xx that may pass later (401/403 during key rotation, 429…).
    Retry,
}

/// Sends `report` of `shipment` (idempotency key `{shipment}:{event_id}`: a resend after a
/// lost answer changes nothing there).
pub async fn send_report(
    cfg: &Config,
    order_id: &OrderId,
    shipment: Uuid,
    report: &Report,
) -> Delivery {
    let client = ServiceClient {
        service: SERVICE,
        signer: &cfg.signer,
    };
    let url = format!(
        "{}/internal/orders/{}/delivery-status",
        cfg.order_service_url,
        order_id.as_str()
    );
    let body = DeliveryStatusUpdate {
        status: report.status.as_str().to_string(),
        occurred_at: time::format(report.occurred_at),
    };
    let key = format!("{shipment}:{}", report.event_id.as_str());
    let sent = client
        .send(
            ORDER,
            Method::Post,
            &url,
            serde_json::to_vec(&body).ok(),
            &[("idempotency-key", &key)],
        )
        .await;
    let status = match sent {
        Ok(resp) => *resp.status(),
        Err(e) => {
            eprintln!("report {key} not delivered (will retry): {e}");
            return Delivery::Retry;
        }
    };
    let (outcome, what) = match status {
        200..=299 => return Delivery::Done,
        401 | 403 | 408 | 425 | 429 => (Delivery::Retry, "will retry"),
        400..=499 => (Delivery::Done, "refused for good"),
        _ => (Delivery::Retry, "will retry"),
    };
    eprintln!("order service answered {status} to report {key}: {what}");
    outcome
}
