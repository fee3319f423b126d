//! A seller's sales (`GET /api/orders/sales`): the one total order of sale lines, the cursor
//! that names a position in it, and the merge of the pages every shard answers. No I/O.
//!
//! Orders are sharded by buyer, so one seller's lines are on every database. Each page asks
//! every database for at most `limit + 1` lines after the cursor in the same total order —
//! `placed_at` desc, `order_id` desc, `line_no` asc, a strict order because
//! (`order_id`, `line_no`) is a line's primary key — merges them and keeps the first `limit`.
//! The first `limit` lines of the union are among the first `limit` of each shard, so the page
//! is exact; the cursor is the position of its last line, so the next page starts strictly
//! after it: no line is skipped or repeated, whatever is inserted meanwhile (a new line sorts
//! before the cursor unless it was placed earlier than the cursor's line).

use marketplace_shared::OrderStatus;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::order::status_name;
use crate::domain::shard::OrderId;

/// Where a line sits in the total order; also what the cursor encodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// RFC 3339 UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ` (fixed width, so the text
    /// order is the time order).
    pub placed_at: String,
    pub order_id: OrderId,
    pub line_no: i32,
}

impl Position {
    /// `Less` = earlier in the list (newer, then larger order id, then smaller line number).
    pub fn list_cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .placed_at
            .cmp(&self.placed_at)
            .then_with(|| other.order_id.cmp(&self.order_id))
            .then_with(|| self.line_no.cmp(&other.line_no))
    }

    /// The opaque cursor of this position.
    pub fn cursor(&self) -> String {
        marketplace_shared::page::encode_cursor(&(&self.placed_at, &self.order_id, self.line_no))
    }

    /// Parses a cursor made by [`Position::cursor`]; `None` for one this list did not make.
    pub fn from_cursor(cursor: &str) -> Option<Self> {
        let (placed_at, order_id, line_no): (String, OrderId, i32) =
            marketplace_shared::page::decode_cursor(cursor).ok()?;
        let at = marketplace_shared::time::parse(&placed_at)?;
        if line_no < 0 {
            return None;
        }
        Some(Self {
            placed_at: marketplace_shared::time::format(at),
            order_id,
            line_no,
        })
    }
}

/// Where a sale ships to: the city, postal code and country only (no name, no street).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShipTo {
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

/// One line of the list, as the contract shows it. Nothing else of the buyer is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sale {
    pub order_id: OrderId,
    pub line_no: i32,
    pub placed_at: String,
    pub product_id: Uuid,
    pub title: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
    pub currency: String,
    #[serde(serialize_with = "status_name")]
    pub order_status: OrderStatus,
    pub shipment_id: Option<Uuid>,
    pub tracking_number: Option<String>,
    pub ship_to: ShipTo,
}

impl Sale {
    pub fn position(&self) -> Position {
        Position {
            placed_at: self.placed_at.clone(),
            order_id: self.order_id,
            line_no: self.line_no,
        }
    }
}

/// Whose sales, filtered how, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesQuery {
    pub seller: Uuid,
    pub status: Option<OrderStatus>,
    pub after: Option<Position>,
    pub limit: u32,
}

/// Merges the shards' pages (each in list order, each at most `limit + 1` long) into the
/// page to answer and the cursor of the next one (`None` on the last page).
pub fn merge(shards: Vec<Vec<Sale>>, limit: u32) -> (Vec<Sale>, Option<String>) {
    let mut all: Vec<Sale> = shards.into_iter().flatten().collect();
    all.sort_by(|a, b| a.position().list_cmp(&b.position()));
    let limit = limit as usize;
    if all.len() > limit {
        // Some shard has a line after the page's last one (a shard that returned `limit + 1`
        // lines, or several whose lines together exceed the page).
        all.truncate(limit);
        let next = all.last().map(|s| s.position().cursor());
        (all, next)
    } else {
        (all, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> OrderId {
        // A valid order id (vshard 00 + a UUID v7 whose last byte is n).
        OrderId::parse(&format!("o000193000000007000800000000000{n:04x}")).unwrap()
    }

    fn sale(at: &str, order: u8, line: i32) -> Sale {
        Sale {
            order_id: oid(order),
            line_no: line,
            placed_at: format!("2026-12-01T10:00:{at}Z"),
            product_id: Uuid::nil(),
            title: "t".into(),
            quantity: 1,
            unit_price_cents: 1,
            currency: "EUR".into(),
            order_status: OrderStatus::Confirmed,
            shipment_id: None,
            tracking_number: None,
            ship_to: ShipTo::default(),
        }
    }

    /// Sales at these (seconds, order, line) positions.
    fn sales(at: &[(&str, u8, i32)]) -> Vec<Sale> {
        at.iter().map(|&(s, o, l)| sale(s, o, l)).collect()
    }

    fn positions(s: &[Sale]) -> Vec<Position> {
        s.iter().map(Sale::position).collect()
    }

    #[test]
    fn the_total_order_is_newest_first_then_order_id_desc_then_line_asc() {
        let shards = vec![
            sales(&[("03.000", 1, 0), ("01.000", 1, 1)]),
            sales(&[("03.000", 2, 0), ("03.000", 2, 1), ("02.000", 3, 0)]),
        ];
        let (page, next) = merge(shards, 10);
        let expected = [
            ("03.000", 2, 0),
            ("03.000", 2, 1),
            ("03.000", 1, 0),
            ("02.000", 3, 0),
            ("01.000", 1, 1),
        ];
        assert_eq!(positions(&page), positions(&sales(&expected)));
        assert_eq!(next, None);
    }

    #[test]
    fn a_page_keeps_the_first_limit_lines_of_all_shards_and_names_the_last() {
        let shards = vec![
            sales(&[("05.000", 1, 0), ("01.000", 1, 0)]),
            sales(&[("04.000", 2, 0), ("03.000", 3, 0)]),
        ];
        let (page, next) = merge(shards, 2);
        let expected = sales(&[("05.000", 1, 0), ("04.000", 2, 0)]);
        assert_eq!(positions(&page), positions(&expected));
        let next = Position::from_cursor(&next.expect("more")).unwrap();
        assert_eq!(next, sale("04.000", 2, 0).position());
    }

    #[test]
    fn exactly_limit_lines_is_the_last_page() {
        let (page, next) = merge(vec![vec![sale("05.000", 1, 0)], vec![]], 1);
        assert_eq!(page.len(), 1);
        assert_eq!(next, None);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_a_400() {
        let p = sale("05.123", 7, 3).position();
        assert_eq!(Position::from_cursor(&p.cursor()).unwrap(), p);
        use marketplace_shared::page::encode_cursor as encode;
        let at = "2026-12-01T10:00:00Z";
        for bad in [
            "!!".to_string(),
            encode(&("yesterday", oid(1).to_string(), 0)),
            encode(&(at, "o1", 0)),
            encode(&(at, oid(1).to_string(), -1)),
        ] {
            assert_eq!(Position::from_cursor(&bad), None, "{bad}");
        }
    }
}
