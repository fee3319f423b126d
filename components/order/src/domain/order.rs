//! Orders: the create request parsed into valid values, the price snapshot, and the status
//! machine. No I/O.

use std::collections::HashSet;

use marketplace_shared::wit::{ReservedItem, ShippingAddress};
use marketplace_shared::{FieldErrors, OrderStatus, Problem};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Most lines one order may have.
pub const MAX_ITEMS: usize = 100;
/// Most units of one product per order (a larger number is a typo or abuse).
pub const MAX_QUANTITY: i64 = 1000;
/// Longest idempotency key (contract: 1..255 characters).
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// `POST /api/orders` body as it arrives (shape only; see [`NewOrder::parse`]).
#[derive(Debug, Deserialize)]
pub struct CreateOrderBody {
    pub items: Vec<ItemBody>,
    pub shipping_address: AddressBody,
}

#[derive(Debug, Deserialize)]
pub struct ItemBody {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Deserialize)]
pub struct AddressBody {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
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

fn text_field(
    errors: &mut FieldErrors,
    field: &str,
    value: &str,
    max: usize,
    required: bool,
) -> Option<String> {
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
}

impl NewOrder {
    /// Checks everything that can be checked without the product service; on failure the
    /// 422 names every bad field.
    pub fn parse(body: CreateOrderBody) -> Result<Self, Problem> {
        let mut errors = FieldErrors::new();
        let mut items = Vec::new();
        if body.items.is_empty() {
            errors.add("items", "must contain at least one item");
        } else if body.items.len() > MAX_ITEMS {
            errors.add("items", format!("must contain at most {MAX_ITEMS} items"));
        }
        let mut seen = HashSet::new();
        for (i, item) in body.items.iter().enumerate().take(MAX_ITEMS) {
            let product_id = match Uuid::try_parse(item.product_id.trim()) {
                Ok(id) => {
                    if !seen.insert(id) {
                        errors.add(
                            format!("items[{i}].product_id"),
                            "appears more than once; combine the quantities",
                        );
                    }
                    Some(id)
                }
                Err(_) => {
                    errors.add(format!("items[{i}].product_id"), "must be a UUID");
                    None
                }
            };
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                errors.add(
                    format!("items[{i}].quantity"),
                    format!("must be an integer from 1 to {MAX_QUANTITY}"),
                );
            }
            if let (Some(product_id), Ok(quantity)) = (product_id, u32::try_from(item.quantity)) {
                items.push(Line {
                    product_id,
                    quantity,
                });
            }
        }
        let a = &body.shipping_address;
        let name = text_field(&mut errors, "shipping_address.name", &a.name, 200, true);
        let line1 = text_field(&mut errors, "shipping_address.line1", &a.line1, 200, true);
        let line2 = a
            .line2
            .as_deref()
            .and_then(|l| text_field(&mut errors, "shipping_address.line2", l, 200, false));
        let city = text_field(&mut errors, "shipping_address.city", &a.city, 100, true);
        let postal_code = text_field(
            &mut errors,
            "shipping_address.postal_code",
            &a.postal_code,
            16,
            true,
        );
        if let Some(p) = &postal_code
            && !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
        {
            errors.add(
                "shipping_address.postal_code",
                "may contain only letters, digits, spaces and hyphens",
            );
        }
        let country = a.country.trim();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            errors.add(
                "shipping_address.country",
                "must be an ISO 3166-1 alpha-2 country code",
            );
        }
        errors.into_result()?;
        let (Some(name), Some(line1), Some(city), Some(postal_code)) =
            (name, line1, city, postal_code)
        else {
            return Err(Problem::invalid_field("shipping_address", "is invalid"));
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
        hex(&Sha256::digest(&canonical))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A valid `Idempotency-Key` header value: 1..=255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// `None` header → missing; else checked. Both failures are 400s naming the header.
    pub fn parse(header: Option<&str>) -> Result<Self, Problem> {
        let bad = |message: &str| {
            let mut p = Problem::bad_request(format!("Idempotency-Key header {message}"));
            let mut errors = FieldErrors::new();
            errors.add("Idempotency-Key", message);
            p.errors = Some(Box::new(errors));
            p
        };
        let Some(v) = header else {
            return Err(bad("is required"));
        };
        if v.is_empty() {
            return Err(bad("must not be empty"));
        }
        if v.len() > MAX_IDEMPOTENCY_KEY {
            return Err(bad("must be at most 255 characters"));
        }
        if !v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(bad("must contain only visible ASCII characters"));
        }
        Ok(Self(v.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
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
    if requested.len() != reserved.len() {
        return Err(PricingError::Mismatch(format!(
            "asked for {} lines, got {}",
            requested.len(),
            reserved.len()
        )));
    }
    let mut lines = Vec::with_capacity(requested.len());
    for line in requested {
        let r = reserved
            .iter()
            .find(|r| Uuid::try_parse(&r.product_id).ok() == Some(line.product_id))
            .ok_or_else(|| PricingError::Mismatch(format!("{} missing", line.product_id)))?;
        if r.quantity != line.quantity || r.unit_price_cents < 0 {
            return Err(PricingError::Mismatch(format!(
                "{} reserved differently",
                line.product_id
            )));
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
    let mut total: i64 = 0;
    for l in &lines {
        total = l
            .unit_price_cents
            .checked_mul(i64::from(l.quantity))
            .and_then(|x| total.checked_add(x))
            .ok_or(PricingError::TotalTooLarge)?;
    }
    Ok(Priced {
        lines,
        total_cents: total,
        currency: currencies.remove(0),
    })
}

/// A delivery status the delivery service reports (`POST /internal/orders/{id}/delivery-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Shipped,
    Delivered,
    Returned,
}

impl DeliveryStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shipped" => Some(Self::Shipped),
            "delivered" => Some(Self::Delivered),
            "returned" => Some(Self::Returned),
            _ => None,
        }
    }

    pub fn order_status(self) -> OrderStatus {
        match self {
            Self::Shipped => OrderStatus::Shipped,
            Self::Delivered => OrderStatus::Delivered,
            Self::Returned => OrderStatus::Returned,
        }
    }
}

/// What a delivery update does to an order in `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Move the order to this status.
    Move(OrderStatus),
    /// Nothing to do: a repeat, a stale (out-of-order) update, or an order that is over.
    Ignore,
}

/// Orders only move forward: `confirmed → shipped → delivered | returned`, and
/// `confirmed → delivered | returned` when `shipped` arrives late or never. `delivered` and
/// `returned` are terminal (as they are for shipments); a cancelled order stays cancelled.
pub fn on_delivery_update(current: OrderStatus, update: DeliveryStatus) -> Transition {
    use OrderStatus as S;
    let target = update.order_status();
    match (current, target) {
        (S::Confirmed, _) => Transition::Move(target),
        (S::Shipped, S::Delivered | S::Returned) => Transition::Move(target),
        _ => Transition::Ignore,
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
    match current {
        OrderStatus::Confirmed => CancelOutcome::Cancel,
        OrderStatus::Cancelled => CancelOutcome::AlreadyCancelled,
        OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::Returned => {
            CancelOutcome::TooLate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: serde_json::Value) -> CreateOrderBody {
        serde_json::from_value(v).unwrap()
    }

    fn address() -> serde_json::Value {
        json!({"name": "Ada", "line1": "1 Main St", "city": "Paris", "postal_code": "75001", "country": "fr"})
    }

    fn pid(n: u8) -> String {
        format!("0193c0e4-a1b2-7c3d-8e9f-0011223344{n:02x}")
    }

    #[test]
    fn a_valid_request_is_parsed_and_normalised() {
        let o = NewOrder::parse(body(json!({
            "items": [{"product_id": pid(1), "quantity": 2}],
            "shipping_address": address(),
        })))
        .unwrap();
        assert_eq!(o.items[0].quantity, 2);
        assert_eq!(o.shipping_address.country, "FR");
        assert_eq!(o.shipping_address.line2, None);
    }

    #[test]
    fn every_bad_field_is_named() {
        let p = NewOrder::parse(body(json!({
            "items": [
                {"product_id": pid(1), "quantity": 0},
                {"product_id": "nope", "quantity": -3},
                {"product_id": pid(1), "quantity": 1_000_000},
            ],
            "shipping_address": {"name": " ", "line1": "x", "city": "y", "postal_code": "<script>", "country": "FRA"},
        })))
        .unwrap_err();
        assert_eq!(p.status, 422);
        let e = p.errors.unwrap();
        for field in [
            "items[0].quantity",
            "items[1].product_id",
            "items[1].quantity",
            "items[2].product_id",
            "items[2].quantity",
            "shipping_address.name",
            "shipping_address.postal_code",
            "shipping_address.country",
        ] {
            assert!(e.contains(field), "{field}: {e:?}");
        }
    }

    #[test]
    fn empty_and_oversized_item_lists_are_refused() {
        let p = NewOrder::parse(body(json!({"items": [], "shipping_address": address()})));
        assert!(p.unwrap_err().errors.unwrap().contains("items"));
        let many: Vec<_> = (0..=MAX_ITEMS)
            .map(|i| json!({"product_id": uuid::Uuid::now_v7().to_string(), "quantity": i % 5 + 1}))
            .collect();
        let p = NewOrder::parse(body(json!({"items": many, "shipping_address": address()})));
        assert!(p.unwrap_err().errors.unwrap().contains("items"));
    }

    #[test]
    fn the_fingerprint_ignores_formatting_but_not_content() {
        let a = NewOrder::parse(body(json!({"items": [{"product_id": pid(1), "quantity": 2}], "shipping_address": address()}))).unwrap();
        let b = NewOrder::parse(body(json!({"shipping_address": address(), "items": [{"quantity": 2, "product_id": pid(1)}]}))).unwrap();
        let c = NewOrder::parse(body(json!({"items": [{"product_id": pid(1), "quantity": 3}], "shipping_address": address()}))).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert_eq!(IdempotencyKey::parse(None).unwrap_err().status, 400);
        assert_eq!(IdempotencyKey::parse(Some("")).unwrap_err().status, 400);
        assert!(IdempotencyKey::parse(Some(&"k".repeat(255))).is_ok());
        assert_eq!(
            IdempotencyKey::parse(Some(&"k".repeat(256)))
                .unwrap_err()
                .status,
            400
        );
        assert!(IdempotencyKey::parse(Some("tab\there")).is_err());
    }

    fn reserved(n: u8, q: u32, price: i64, cur: &str) -> ReservedItem {
        ReservedItem {
            product_id: pid(n),
            quantity: q,
            unit_price_cents: price,
            currency: cur.into(),
            title: format!("p{n}"),
            seller_id: Some(Uuid::nil().to_string()),
        }
    }

    fn line(n: u8, q: u32) -> Line {
        Line {
            product_id: Uuid::parse_str(&pid(n)).unwrap(),
            quantity: q,
        }
    }

    #[test]
    fn pricing_totals_one_currency_in_request_order() {
        let p = price(
            &[line(2, 3), line(1, 1)],
            &[reserved(1, 1, 500, "EUR"), reserved(2, 3, 199, "EUR")],
        )
        .unwrap();
        assert_eq!(p.total_cents, 1097);
        assert_eq!(p.currency, "EUR");
        assert_eq!(p.lines[0].title, "p2");
    }

    #[test]
    fn pricing_refuses_mixed_currencies_mismatches_and_overflow() {
        assert!(matches!(
            price(
                &[line(1, 1), line(2, 1)],
                &[reserved(1, 1, 1, "EUR"), reserved(2, 1, 1, "USD")]
            ),
            Err(PricingError::MixedCurrencies(_))
        ));
        assert!(matches!(
            price(&[line(1, 2)], &[reserved(1, 1, 1, "EUR")]),
            Err(PricingError::Mismatch(_))
        ));
        assert_eq!(
            price(&[line(1, 1000)], &[reserved(1, 1000, i64::MAX / 2, "EUR")]),
            Err(PricingError::TotalTooLarge)
        );
    }

    #[test]
    fn delivery_updates_only_move_orders_forward() {
        use DeliveryStatus as D;
        use OrderStatus as S;
        assert_eq!(
            on_delivery_update(S::Confirmed, D::Shipped),
            Transition::Move(S::Shipped)
        );
        assert_eq!(
            on_delivery_update(S::Shipped, D::Delivered),
            Transition::Move(S::Delivered)
        );
        assert_eq!(
            on_delivery_update(S::Confirmed, D::Delivered),
            Transition::Move(S::Delivered)
        );
        assert_eq!(
            on_delivery_update(S::Shipped, D::Shipped),
            Transition::Ignore
        );
        assert_eq!(
            on_delivery_update(S::Delivered, D::Shipped),
            Transition::Ignore
        );
        assert_eq!(
            on_delivery_update(S::Delivered, D::Returned),
            Transition::Ignore
        );
        assert_eq!(
            on_delivery_update(S::Returned, D::Delivered),
            Transition::Ignore
        );
        assert_eq!(
            on_delivery_update(S::Cancelled, D::Shipped),
            Transition::Ignore
        );
    }

    #[test]
    fn cancel_is_refused_once_shipped() {
        assert_eq!(on_cancel(OrderStatus::Confirmed), CancelOutcome::Cancel);
        assert_eq!(
            on_cancel(OrderStatus::Cancelled),
            CancelOutcome::AlreadyCancelled
        );
        for s in [
            OrderStatus::Shipped,
            OrderStatus::Delivered,
            OrderStatus::Returned,
        ] {
            assert_eq!(on_cancel(s), CancelOutcome::TooLate);
        }
    }
}
