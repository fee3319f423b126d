//! Shipment creation input (`POST /internal/deliveries`), parsed into a [`NewShipment`].

use marketplace_shared::wit::{ShipmentItem, ShipmentRequest};
use marketplace_shared::{FieldErrors, ShippingAddress};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::is_id_text;

pub const ORDER_ID_MAX_CHARS: usize = 100;
/// Most lines one shipment may carry.
pub const MAX_ITEMS: usize = 100;
const TEXT_MAX_CHARS: usize = 200;

/// An order id: opaque to this service, 1 to 100 characters of `A-Z a-z 0-9 . _ : -`
/// (safe in keys and in the order service's URL path without escaping).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(String);

impl OrderId {
    pub fn parse(raw: &str) -> Option<Self> {
        is_id_text(raw, ORDER_ID_MAX_CHARS).then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid shipment request (`POST /internal/deliveries`, the contract's `ShipmentRequest`).
#[derive(Debug, Clone)]
pub struct NewShipment {
    pub order_id: OrderId,
    pub buyer_id: Uuid,
    pub shipping_address: ShippingAddress,
    pub items: Vec<ShipmentItem>,
}

fn required_text(errors: &mut FieldErrors, field: &str, raw: &str, max: usize) -> String {
    let s = raw.trim();
    if s.is_empty() {
        errors.add(field, "must not be empty");
    } else if s.chars().count() > max {
        errors.add(field, format!("must be at most {max} characters"));
    } else if s.chars().any(char::is_control) {
        errors.add(field, "must not contain control characters");
    }
    s.to_string()
}

impl NewShipment {
    /// Validates every field of the request at once (422 naming each bad one).
    pub fn parse(input: &ShipmentRequest) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let order_id = OrderId::parse(&input.order_id)
            .ok_or("must be 1 to 100 characters of letters, digits, `.`, `_`, `:` or `-`")
            .map_err(|e| errors.add("order_id", e))
            .ok();
        let buyer_id = Uuid::parse_str(&input.buyer_id)
            .map_err(|_| errors.add("buyer_id", "must be a UUID"))
            .ok();
        let a = &input.shipping_address;
        let mut text = |field: &str, raw: &str, max| {
            required_text(&mut errors, &format!("shipping_address.{field}"), raw, max)
        };
        let line2 = a.line2.as_deref().map(str::trim).filter(|l| !l.is_empty());
        let address = ShippingAddress {
            name: text("name", &a.name, TEXT_MAX_CHARS),
            line1: text("line1", &a.line1, TEXT_MAX_CHARS),
            line2: line2.map(|l| text("line2", l, TEXT_MAX_CHARS)),
            city: text("city", &a.city, TEXT_MAX_CHARS),
            postal_code: text("postal_code", &a.postal_code, 20),
            country: a.country.trim().to_string(),
        };
        if address.country.len() != 2 || !address.country.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.add(
                "shipping_address.country",
                "must be an ISO 3166-1 alpha-2 code such as FR",
            );
        }
        if input.items.is_empty() || input.items.len() > MAX_ITEMS {
            errors.add("items", format!("must hold 1 to {MAX_ITEMS} lines"));
        }
        let mut items = Vec::with_capacity(input.items.len());
        for (i, item) in input.items.iter().enumerate() {
            let product_id = Uuid::parse_str(&item.product_id)
                .map_err(|_| errors.add(format!("items[{i}].product_id"), "must be a UUID"))
                .map(|id| id.to_string())
                .unwrap_or_default();
            let title = required_text(
                &mut errors,
                &format!("items[{i}].title"),
                &item.title,
                TEXT_MAX_CHARS,
            );
            if item.quantity == 0 || item.quantity > 10_000 {
                errors.add(format!("items[{i}].quantity"), "must be from 1 to 10000");
            }
            items.push(ShipmentItem {
                product_id,
                title,
                quantity: item.quantity,
            });
        }
        match (order_id, buyer_id) {
            (Some(order_id), Some(buyer_id)) if errors.is_empty() => Ok(NewShipment {
                order_id,
                buyer_id,
                shipping_address: address,
                items,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<NewShipment, FieldErrors> {
        NewShipment::parse(&serde_json::from_value(v).unwrap())
    }

    fn valid() -> serde_json::Value {
        json!({
            "order_id": "o3-0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b",
            "buyer_id": "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b",
            "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Paris",
                                  "postal_code": "75001", "country": "FR"},
            "items": [{"product_id": "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7c", "title": "Lamp", "quantity": 2}]
        })
    }

    #[test]
    fn a_valid_request_parses_with_trimmed_fields() {
        let mut v = valid();
        v["shipping_address"]["name"] = json!("  Ada Lovelace ");
        let s = parse(v).unwrap();
        assert_eq!(s.shipping_address.name, "Ada Lovelace");
        assert_eq!(s.shipping_address.line2, None);
        assert_eq!(s.items[0].quantity, 2);
    }

    #[test]
    fn every_bad_field_is_named() {
        let v = json!({
            "order_id": "has/slash",
            "buyer_id": "nope",
            "shipping_address": {"name": "", "line1": "x", "city": "y",
                                  "postal_code": "1", "country": "france"},
            "items": [{"product_id": "x", "title": "", "quantity": 0}]
        });
        let errors = parse(v).unwrap_err();
        for f in [
            "order_id",
            "buyer_id",
            "shipping_address.name",
            "shipping_address.country",
            "items[0].product_id",
            "items[0].title",
            "items[0].quantity",
        ] {
            assert!(errors.contains(f), "{f}: {errors:?}");
        }
        // A shipment needs at least one item.
        let mut v = valid();
        v["items"] = json!([]);
        assert!(parse(v).unwrap_err().contains("items"));
    }

    #[test]
    fn order_ids_are_bounded_and_url_safe() {
        assert!(OrderId::parse("o1-abc_DEF.9:x").is_some());
        assert!(OrderId::parse("").is_none());
        assert!(OrderId::parse(&"a".repeat(101)).is_none());
        assert!(OrderId::parse("a?b").is_none());
        assert!(OrderId::parse("a b").is_none());
    }
}
