//! Unit tests of `domain::order`.

use super::*;
use serde_json::json;

fn body(v: serde_json::Value) -> CreateOrderBody {
    serde_json::from_value(v).unwrap()
}

fn address() -> serde_json::Value {
    json!({"name": "Ada", "line1": "1 Main St", "city": "Paris", "postal_code": "75001", "country": "fr"})
}

/// A request with these items and a valid address.
fn parse(items: serde_json::Value) -> Result<NewOrder, FieldErrors> {
    NewOrder::parse(body(json!({"items": items, "shipping_address": address()})))
}

fn pid(n: u8) -> String {
    format!("0193c0e4-a1b2-7c3d-8e9f-0011223344{n:02x}")
}

#[test]
fn a_valid_request_is_parsed_and_normalised() {
    let o = parse(json!([{"product_id": pid(1), "quantity": 2}])).unwrap();
    assert_eq!(o.items[0].quantity, 2);
    assert_eq!(o.shipping_address.country, "FR");
    assert_eq!(o.shipping_address.line2, None);
}

#[test]
fn every_bad_field_is_named() {
    let e = NewOrder::parse(body(json!({
        "items": [
            {"product_id": pid(1), "quantity": 0},
            {"product_id": "nope", "quantity": -3},
            {"product_id": pid(1), "quantity": 1_000_000},
        ],
        "shipping_address": {"name": " ", "line1": "x", "city": "y", "postal_code": "<script>", "country": "FRA"},
    })))
    .unwrap_err();
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
    assert!(parse(json!([])).unwrap_err().contains("items"));
    let many: Vec<_> = (0..=MAX_ITEMS)
        .map(|i| json!({"product_id": uuid::Uuid::now_v7().to_string(), "quantity": i % 5 + 1}))
        .collect();
    assert!(parse(json!(many)).unwrap_err().contains("items"));
}

#[test]
fn the_fingerprint_ignores_formatting_but_not_content() {
    let a = parse(json!([{"product_id": pid(1), "quantity": 2}])).unwrap();
    let b = NewOrder::parse(body(
        json!({"shipping_address": address(), "items": [{"quantity": 2, "product_id": pid(1)}]}),
    ))
    .unwrap();
    let c = parse(json!([{"product_id": pid(1), "quantity": 3}])).unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_ne!(a.fingerprint(), c.fingerprint());
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
    let mixed = [reserved(1, 1, 1, "EUR"), reserved(2, 1, 1, "USD")];
    let found = vec!["EUR".to_string(), "USD".to_string()];
    assert_eq!(
        price(&[line(1, 1), line(2, 1)], &mixed),
        Err(PricingError::MixedCurrencies(found))
    );
    let mismatch = price(&[line(1, 2)], &[reserved(1, 1, 1, "EUR")]);
    assert!(matches!(mismatch, Err(PricingError::Mismatch(_))));
    assert_eq!(
        price(&[line(1, 1000)], &[reserved(1, 1000, i64::MAX / 2, "EUR")]),
        Err(PricingError::TotalTooLarge)
    );
}

#[test]
fn delivery_updates_only_move_orders_forward() {
    use OrderStatus as S;
    let moves = [
        (S::Confirmed, S::Shipped, Some(S::Shipped)),
        (S::Shipped, S::Delivered, Some(S::Delivered)),
        (S::Confirmed, S::Delivered, Some(S::Delivered)),
        (S::Shipped, S::Shipped, None),
        (S::Delivered, S::Shipped, None),
        (S::Delivered, S::Returned, None),
        (S::Returned, S::Delivered, None),
        (S::Cancelled, S::Shipped, None),
    ];
    for (from, update, expected) in moves {
        assert_eq!(
            on_delivery_update(from, update),
            expected,
            "{from} {update}"
        );
    }
}

#[test]
fn cancel_is_refused_once_shipped() {
    use OrderStatus as S;
    assert_eq!(on_cancel(S::Confirmed), CancelOutcome::Cancel);
    assert_eq!(on_cancel(S::Cancelled), CancelOutcome::AlreadyCancelled);
    for s in [S::Shipped, S::Delivered, S::Returned] {
        assert_eq!(on_cancel(s), CancelOutcome::TooLate);
    }
}
