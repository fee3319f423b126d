//! Stock reservations of the order service: what a valid request is, and whether the locked
//! products can cover it (all lines or none).

use std::collections::BTreeMap;

use marketplace_shared::wit::{self, Reservation, ReservedItem};
use marketplace_shared::{FieldErrors, ShortItem};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Product, Status, checked, has_control};

// The bounds of a reservation request: its lines, the quantity of one, its id's characters.
pub const MAX_RESERVATION_ITEMS: usize = 100;
pub const MAX_QUANTITY: u32 = 1_000_000;
pub const MAX_RESERVATION_ID_CHARS: usize = 255;

/// The caller's id of a reservation: 1 to 255 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationId(String);

impl ReservationId {
    pub fn parse(id: &str) -> Option<Self> {
        let len = id.chars().count();
        (len > 0 && len <= MAX_RESERVATION_ID_CHARS && !has_control(id, false))
            .then(|| Self(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One reservation line after validation, or one product's total of a reservation (as
/// `reservations.quantities` holds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationLine {
    pub product_id: Uuid,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub reservation_id: ReservationId,
    pub lines: Vec<ReservationLine>,
}

/// Why the locked products cannot cover a reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Lines naming unknown or archived products (422, one error per line).
    Unknown(FieldErrors),
    /// Products with less stock than asked for (409, each listed).
    Short(Vec<ShortItem>),
}

impl ReservationRequest {
    /// Validates `POST /internal/products/reservations`, naming every bad field.
    pub fn parse(body: wit::ReservationRequest) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let reservation_id = ReservationId::parse(&body.reservation_id);
        if reservation_id.is_none() {
            errors.add(
                "reservation_id",
                format!("must be 1 to {MAX_RESERVATION_ID_CHARS} printable characters"),
            );
        }
        if body.items.is_empty() {
            errors.add("items", "must not be empty");
        } else if body.items.len() > MAX_RESERVATION_ITEMS {
            errors.add(
                "items",
                format!("must have at most {MAX_RESERVATION_ITEMS} lines"),
            );
        }
        let mut lines = Vec::new();
        for (i, item) in body.items.iter().enumerate() {
            if item.quantity == 0 || item.quantity > MAX_QUANTITY {
                errors.add(
                    format!("items[{i}].quantity"),
                    format!("must be from 1 to {MAX_QUANTITY}"),
                );
            }
            match Uuid::parse_str(&item.product_id) {
                Ok(product_id) => lines.push(ReservationLine {
                    product_id,
                    quantity: i64::from(item.quantity),
                }),
                Err(_) => errors.add(format!("items[{i}].product_id"), "must be a UUID"),
            }
        }
        checked(errors)?;
        let reservation_id = reservation_id.ok_or_else(FieldErrors::new)?;
        Ok(Self {
            reservation_id,
            lines,
        })
    }

    /// Quantities summed per product, in product id order: the order rows are locked in,
    /// so that concurrent reservations cannot deadlock.
    pub fn totals(&self) -> Vec<ReservationLine> {
        let mut totals: BTreeMap<Uuid, ReservationLine> = BTreeMap::new();
        for line in &self.lines {
            totals
                .entry(line.product_id)
                .and_modify(|total| total.quantity += line.quantity)
                .or_insert(*line);
        }
        totals.into_values().collect()
    }

    /// Checks the request against the `locked` products: every line must name an active
    /// product, and every product must have the units all its lines ask for ([`Self::totals`]
    /// are then taken). The answer has one item per line, with the price and title now.
    pub fn cover(&self, locked: &[Product]) -> Result<Reservation, Refusal> {
        let find = |id: &Uuid| locked.iter().find(|p| p.id == *id);
        let mut errors = FieldErrors::new();
        let mut items = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            match find(&line.product_id).filter(|p| p.status == Status::Active) {
                Some(p) => items.push(ReservedItem {
                    product_id: line.product_id.to_string(),
                    quantity: u32::try_from(line.quantity).unwrap_or(u32::MAX),
                    unit_price_cents: p.price_cents,
                    currency: p.currency.clone(),
                    title: p.title.clone(),
                    seller_id: Some(p.seller_id.to_string()),
                }),
                None => errors.add(
                    format!("items[{i}].product_id"),
                    "unknown or archived product",
                ),
            }
        }
        checked(errors).map_err(Refusal::Unknown)?;
        let short: Vec<ShortItem> = self
            .totals()
            .iter()
            .filter_map(|total| {
                let available = find(&total.product_id).map_or(0, |p| p.stock);
                (available < total.quantity).then(|| ShortItem {
                    product_id: total.product_id.to_string(),
                    requested: total.quantity,
                    available,
                })
            })
            .collect();
        if !short.is_empty() {
            return Err(Refusal::Short(short));
        }
        Ok(Reservation {
            reservation_id: self.reservation_id.as_str().to_string(),
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixture;
    use serde_json::json;

    fn request(v: serde_json::Value) -> Result<ReservationRequest, FieldErrors> {
        ReservationRequest::parse(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn bad_reservations_name_their_fields() {
        let errors = request(json!({"reservation_id": "", "items": [
            {"product_id": "nope", "quantity": 0}]}))
        .unwrap_err();
        for field in ["reservation_id", "items[0].product_id", "items[0].quantity"] {
            assert!(errors.contains(field), "{field}");
        }
    }

    #[test]
    fn a_reservation_is_covered_whole_or_refused_naming_lines_and_short_products() {
        let (a, b, gone) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let locked = [
            fixture(a, 10, Status::Active),
            fixture(b, 1, Status::Active),
            fixture(gone, 9, Status::Archived),
        ];
        let lines = |items: serde_json::Value| {
            request(json!({"reservation_id": "r", "items": items})).unwrap()
        };
        let r = lines(
            json!([{"product_id": b, "quantity": 1}, {"product_id": a, "quantity": 2},
            {"product_id": a, "quantity": 1}]),
        );
        let covered = r.cover(&locked).unwrap();
        let totals: Vec<_> = r
            .totals()
            .iter()
            .map(|t| (t.product_id, t.quantity))
            .collect();
        assert_eq!(totals, [(a, 3), (b, 1)], "summed per product, in id order");
        let quantities: Vec<u32> = covered.items.iter().map(|i| i.quantity).collect();
        assert_eq!(quantities, [1, 2, 1], "one item per line, in order");

        let r = lines(json!([{"product_id": a, "quantity": 11}, {"product_id": b, "quantity": 1}]));
        let short = ShortItem {
            product_id: a.to_string(),
            requested: 11,
            available: 10,
        };
        assert_eq!(r.cover(&locked).err(), Some(Refusal::Short(vec![short])));

        let unknown = Uuid::from_u128(9);
        let r = lines(
            json!([{"product_id": a, "quantity": 1}, {"product_id": gone, "quantity": 1},
            {"product_id": unknown, "quantity": 1}]),
        );
        let mut errors = FieldErrors::new();
        errors.add("items[1].product_id", "unknown or archived product");
        errors.add("items[2].product_id", "unknown or archived product");
        assert_eq!(r.cover(&locked).err(), Some(Refusal::Unknown(errors)));
    }
}
