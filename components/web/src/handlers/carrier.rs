//! A carrier's pages: find a shipment, record a scan (once per form shown: its `event_id`).

use serde_json::json;
use uuid::Uuid;

use super::{Ctx, Reply, page, uuid_or_404};
use crate::clients::Call;
use crate::domain::form::Form;
use crate::error::Error;

/// The scans a carrier may record, as the delivery service names them (it decides which
/// move is legal from where the parcel is).
const SCAN_STATUSES: &[(&str, &str)] = &[
    ("picked_up", "Picked up"),
    ("in_transit", "In transit (hub scan)"),
    ("out_for_delivery", "Out for delivery"),
    ("failed_attempt", "Delivery attempt failed"),
    ("delivered", "Delivered"),
    ("returned", "Returned to sender"),
];

const AN_ID: &str = "A shipment id looks like 01a2b3c4-0000-7000-8000-000000000000.";

impl Ctx<'_> {
    pub fn carrier_lookup(&mut self) -> Result<Reply, Error> {
        self.token()?;
        let typed = self.query.get("shipment_id").map(str::trim).unwrap_or("");
        let form = page("carrier.html", json!({"title": "Scan"}));
        if typed.is_empty() {
            Ok(form)
        } else if Uuid::try_parse(typed).is_ok() {
            Ok(Reply::Redirect(format!("/carrier/shipments/{typed}")))
        } else {
            Ok(form.refused(422, AN_ID))
        }
    }

    pub async fn carrier_shipment(&mut self, id: &str) -> Result<Reply, Error> {
        let token = self.token()?;
        let id = uuid_or_404(id, "shipment")?;
        let shipment = self.api.call_as(&token, Call::Shipment(id)).await?;
        // One event id per form shown: a repeated submit of this form is recorded once.
        let event_id = Uuid::new_v4().to_string();
        let ctx = json!({"shipment": shipment, "event_id": event_id, "statuses": SCAN_STATUSES, "title": "Scan"});
        Ok(page("carrier.html", ctx))
    }

    pub async fn scan(&mut self, id: &str, form: &Form) -> Result<Reply, Error> {
        let token = self.token()?;
        let shipment = uuid_or_404(id, "shipment")?;
        let mut event = json!({
            "event_id": form.get("event_id").unwrap_or(""),
            "status": form.get("status").unwrap_or(""),
        });
        for k in ["location", "note"] {
            if let Some(v) = form.get(k) {
                event[k] = json!(v);
            }
        }
        match self.api.call_as(&token, Call::Scan(shipment, event)).await {
            Ok(_) => Ok(Reply::Redirect(format!("/carrier/shipments/{shipment}"))),
            Err(e) if matches!(e.status, 409 | 422) => {
                let page = self.carrier_shipment(id).await?;
                Ok(page.refused(e.status, e.detail_or_default()))
            }
            Err(e) => Err(e.into()),
        }
    }
}
