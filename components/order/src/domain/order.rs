//! Orders: the create request parsed into valid values, the price snapshot, the order as the
//! contract shows it, and the status machine. No I/O.

use std::collections::HashSet;

use marketplace_shared::tokens::Principal;
use marketplace_shared::wit::{DeliveryStatusUpdate, ReservedItem, ShippingAddress};
use marketplace_shared::{FieldErrors, OrderStatus, time};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::shard::OrderId;

/// Most lines one order may have.
pub const MAX_ITEMS: usize = 100;
/// Most units of one product per order (a larger number is a typo or abuse).
pub const MAX_QUANTITY: i64 = 1000;

/// `POST /api/orders` body as it arrives (shape only; see [`NewOrder::parse`]).
#[derive(Debug, Deserialize)]
pub struct CreateOrderBody {
    pub items: Vec<ItemBody>,
    /// Checked by [`NewOrder::parse`] (trimmed, lengths, postal code, country).
    pub shipping_address: ShippingAddress,
}

#[derive(Debug, Deserialize)]
pub struct ItemBody {
    pub product_id: String,
    pub quantity: i64,
}

/// One valid order line: a product and a quantity in `1..=MAX_QUANTITY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub product_id: Uuid,
    pub quantity: u32,
}

/// A create request that passed every check.
#[derive(Debug, Clone, Serialize)]
pub struct NewOrder {
    pub items: Vec<Line>,
    pub shipping_address: ShippingAddress,
}

impl NewOrder {
    /// Checks everything that can be checked without the product service; on failure every
    /// bad field is named (a 422).
    pub fn parse(body: CreateOrderBody) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut items = Vec::new();
        if body.items.is_empty() {
            errors.add("items", "must contain at least one item");
        } else if body.items.len() > MAX_ITEMS {
            errors.add("items", format!("must contain at most {MAX_ITEMS} items"));
        }
        let mut seen = HashSet::new();
        for (i, item) in body.items.iter().enumerate().take(MAX_ITEMS) {
            let field = |name| format!("items[{i}].{name}");
            let product_id = Uuid::try_parse(item.product_id.trim()).ok();
            match product_id {
                None => errors.add(field("product_id"), "must be a UUID"),
                Some(id) if !seen.insert(id) => errors.add(
                    field("product_id"),
                    "appears more than once; combine the quantities",
                ),
                Some(_) => {}
            }
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                let message = format!("must be an integer from 1 to {MAX_QUANTITY}");
                errors.add(field("quantity"), message);
            }
            if let (Some(product_id), Ok(quantity)) = (product_id, u32::try_from(item.quantity)) {
                items.push(Line {
                    product_id,
                    quantity,
                });
            }
        }
        let a = &body.shipping_address;
        // The trimmed value, or `None` (with its error unless an optional field is empty).
        let mut field = |name: &str, value: &str, max: usize, required: bool| {
            let field = format!("shipping_address.{name}");
            let v = value.trim();
            if v.is_empty() {
                if required {
                    errors.add(field, "must not be empty");
                }
                return None;
            }
            if v.chars().count() > max {
                errors.add(field, format!("must be at most {max} characters"));
                return None;
            }
            if v.chars().any(char::is_control) {
                errors.add(field, "must not contain control characters");
                return None;
            }
            Some(v.to_string())
        };
        let name = field("name", &a.name, 200, true);
        let line1 = field("line1", &a.line1, 200, true);
        let line2 = field("line2", a.line2.as_deref().unwrap_or(""), 200, false);
        let city = field("city", &a.city, 100, true);
        let postal_code = field("postal_code", &a.postal_code, 16, true);
        let postal = |c: char| c.is_ascii_alphanumeric() || c == ' ' || c == '-';
        if postal_code.as_ref().is_some_and(|p| !p.chars().all(postal)) {
            let message = "may contain only letters, digits, spaces and hyphens";
            errors.add("shipping_address.postal_code", message);
        }
        let country = a.country.trim();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            let message = "must be an ISO 3166-1 alpha-2 country code";
            errors.add("shipping_address.country", message);
        }
        // A missing required field has its error already.
        let (Some(name), Some(line1), Some(city), Some(postal_code), true) =
            (name, line1, city, postal_code, errors.is_empty())
        else {
            return Err(errors);
        };
        Ok(Self {
            items,
            shipping_address: ShippingAddress {
                name,
                line1,
                line2,
                city,
                postal_code,
                country: country.to_ascii_uppercase(),
            },
        })
    }

    /// Fingerprint of the request's meaning (not its bytes: whitespace and key order do not
    /// matter), stored with the idempotency key to detect a key reused with another body.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        format!("{:x}", Sha256::digest(&canonical))
    }
}

/// One order line with its price snapshot from the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub product_id: Uuid,
    pub title: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
    pub currency: String,
    /// The product's seller (stored per line for `GET /api/orders/sales`); not part of the
    /// buyer's view of the order. `None` when the product service did not name it.
    #[serde(default, skip_serializing)]
    pub seller_id: Option<Uuid>,
}

/// The priced order: lines in the request's order, one currency, the total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub lines: Vec<PricedLine>,
    pub total_cents: i64,
    pub currency: String,
}

/// Why a reservation's answer cannot become an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    /// Items in more than one currency (contract: 422).
    MixedCurrencies(Vec<String>),
    /// The reservation does not match what was asked (a product service defect).
    Mismatch(String),
    /// The total does not fit in 64 bits.
    TotalTooLarge,
}

/// Joins the requested lines with the reservation's price snapshot.
pub fn price(requested: &[Line], reserved: &[ReservedItem]) -> Result<Priced, PricingError> {
    let (asked, got) = (requested.len(), reserved.len());
    if asked != got {
        let lines = format!("asked for {asked} lines, got {got}");
        return Err(PricingError::Mismatch(lines));
    }
    let mut lines = Vec::with_capacity(requested.len());
    for line in requested {
        let r = reserved
            .iter()
            .find(|r| Uuid::try_parse(&r.product_id).ok() == Some(line.product_id))
            .ok_or_else(|| PricingError::Mismatch(format!("{} missing", line.product_id)))?;
        if r.quantity != line.quantity || r.unit_price_cents < 0 {
            let id = line.product_id;
            return Err(PricingError::Mismatch(format!("{id} reserved differently")));
        }
        lines.push(PricedLine {
            product_id: line.product_id,
            title: r.title.clone(),
            quantity: line.quantity,
            unit_price_cents: r.unit_price_cents,
            currency: r.currency.clone(),
            seller_id: r.seller_id.as_deref().and_then(|s| Uuid::try_parse(s).ok()),
        });
    }
    let mut currencies: Vec<String> = lines.iter().map(|l| l.currency.clone()).collect();
    currencies.sort();
    currencies.dedup();
    if currencies.len() != 1 {
        return Err(PricingError::MixedCurrencies(currencies));
    }
    let total_cents = lines
        .iter()
        .try_fold(0i64, |total, l| {
            let cost = l.unit_price_cents.checked_mul(i64::from(l.quantity))?;
            total.checked_add(cost)
        })
        .ok_or(PricingError::TotalTooLarge)?;
    Ok(Priced {
        lines,
        total_cents,
        currency: currencies.remove(0),
    })
}

/// An order as the contract shows it (and as its idempotency key replays it).
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: OrderId,
    pub buyer_id: Uuid,
    #[serde(serialize_with = "status_name")]
    pub status: OrderStatus,
    pub items: Vec<PricedLine>,
    pub total_cents: i64,
    pub currency: String,
    pub shipping_address: ShippingAddress,
    pub shipment_id: Option<Uuid>,
    /// RFC 3339 UTC with milliseconds (`time::format`).
    pub created_at: String,
    pub updated_at: String,
}

/// The contract's spelling of a status (the WIT type's own serde form is its Rust name).
pub fn status_name<S: Serializer>(status: &OrderStatus, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(status.as_str())
}

impl Order {
    /// Whether `who` may see and act on the order (others get 404: they may not know it
    /// exists): its buyer and admins.
    pub fn visible_to(&self, who: &Principal) -> bool {
        who.user_id == self.buyer_id || who.is_admin()
    }

    /// The order just placed, built from what was written (no read back): `confirmed`, no
    /// shipment yet, created when its id was generated.
    pub fn placed(id: OrderId, buyer_id: Uuid, priced: Priced, address: ShippingAddress) -> Self {
        let at = time::format(id.created_at());
        Self {
            id,
            buyer_id,
            status: OrderStatus::Confirmed,
            items: priced.lines,
            total_cents: priced.total_cents,
            currency: priced.currency,
            shipping_address: address,
            shipment_id: None,
            created_at: at.clone(),
            updated_at: at,
        }
    }
}

/// Parses the body of `POST /internal/orders/{id}/delivery-status`: a status the delivery
/// service reports (shipped, delivered, returned) and when it happened.
pub fn parse_update(
    u: &DeliveryStatusUpdate,
) -> Result<(OrderStatus, chrono::DateTime<chrono::Utc>), FieldErrors> {
    use OrderStatus as S;
    let mut errors = FieldErrors::new();
    let status =
        S::parse(&u.status).filter(|s| matches!(s, S::Shipped | S::Delivered | S::Returned));
    if status.is_none() {
        errors.add("status", "must be shipped, delivered or returned");
    }
    let at = time::parse(&u.occurred_at);
    if at.is_none() {
        errors.add("occurred_at", "must be an RFC 3339 timestamp");
    }
    match (status, at) {
        (Some(s), Some(t)) => Ok((s, t)),
        _ => Err(errors),
    }
}

/// The status a delivery update moves an order in `current` to; `None`: nothing to do (a
/// repeat, a stale update, an order that is over). Orders only move forward: `confirmed →
/// shipped → delivered | returned`, and `confirmed → delivered | returned` when `shipped`
/// arrives late or never. `delivered` and `returned` are terminal (as they are for
/// shipments); a cancelled order stays cancelled.
pub fn on_delivery_update(current: OrderStatus, target: OrderStatus) -> Option<OrderStatus> {
    use OrderStatus as S;
    match (current, target) {
        (S::Confirmed, S::Shipped | S::Delivered | S::Returned)
        | (S::Shipped, S::Delivered | S::Returned) => Some(target),
        _ => None,
    }
}

/// What a cancel request does to an order in `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Cancel now and release the stock.
    Cancel,
    /// Already cancelled: answer as if it just happened (idempotent).
    AlreadyCancelled,
    /// Shipped, delivered or returned: 409.
    TooLate,
}

pub fn on_cancel(current: OrderStatus) -> CancelOutcome {
    use OrderStatus as S;
    match current {
        S::Confirmed => CancelOutcome::Cancel,
        S::Cancelled => CancelOutcome::AlreadyCancelled,
        S::Shipped | S::Delivered | S::Returned => CancelOutcome::TooLate,
    }
}

#[cfg(test)]
mod tests;
