//! The seller's product form → the product service's create/update body. Only the form's
//! format is checked here (an amount, a whole number); what is allowed is the service's call.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::form::Form;
use super::money;

/// The fields as typed (to refill the form) and the JSON body, or the fields that could not
/// be read, by form field name.
pub struct Listing {
    pub refill: Value,
    pub body: Result<Value, BTreeMap<String, Vec<String>>>,
}

pub fn parse(form: &Form) -> Listing {
    let text = |n: &str| form.get(n).unwrap_or("").to_string();
    let refill = json!({
        "title": text("title"), "description": text("description"), "category": text("category"),
        "price": text("price"), "currency": text("currency"), "stock": text("stock"),
    });
    let price = money::parse_major(&text("price"));
    let stock = text("stock").parse::<i64>().ok();
    let body = match (price, stock) {
        (Some(p), Some(s)) => Ok(json!({
            "title": text("title"), "description": text("description"), "category": text("category"),
            "price_cents": p, "currency": text("currency").to_ascii_uppercase(), "stock": s,
        })),
        _ => Err([
            (price.is_none(), "price", "Enter an amount such as 12.50."),
            (stock.is_none(), "stock", "Enter a whole number."),
        ]
        .into_iter()
        .filter(|(unread, ..)| *unread)
        .map(|(_, field, message)| (field.to_string(), vec![message.to_string()]))
        .collect()),
    };
    Listing { refill, body }
}

/// A product as the form shows it (price in major units).
pub fn refill_from(product: &Value) -> Value {
    let cents = product["price_cents"].as_i64().unwrap_or(0);
    json!({
        "title": product["title"], "description": product["description"], "category": product["category"],
        "price": format!("{}.{:02}", cents / 100, (cents % 100).abs()),
        "currency": product["currency"], "stock": product["stock"].as_i64().unwrap_or(0).to_string(),
    })
}

/// A service's field errors under the form's names (`price_cents` is typed as `price`).
pub fn form_errors(api: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    let mut errors = api.clone();
    if let Some(price) = errors.remove("price_cents") {
        errors.insert("price".into(), price);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_form_becomes_the_product_body() {
        let f = Form::parse(
            b"title=Lamp&description=Bright&category=lighting&price=12.5&currency=eur&stock=3",
        );
        let body = json!({"title": "Lamp", "description": "Bright", "category": "lighting",
            "price_cents": 1250, "currency": "EUR", "stock": 3});
        assert_eq!(parse(&f).body.unwrap(), body);
    }

    #[test]
    fn unreadable_amounts_are_named_and_nothing_is_sent() {
        let f = Form::parse(b"title=Lamp&price=cheap&stock=many");
        let errors = parse(&f).body.unwrap_err();
        assert!(errors.contains_key("price") && errors.contains_key("stock"));
    }

    #[test]
    fn a_product_refills_the_form_in_major_units() {
        let r =
            refill_from(&json!({"title": "T", "price_cents": 1205, "currency": "EUR", "stock": 4}));
        assert_eq!(r["price"], "12.05");
        assert_eq!(r["stock"], "4");
    }

    #[test]
    fn service_errors_land_on_the_form_fields() {
        let api = BTreeMap::from([("price_cents".into(), vec!["must be positive".into()])]);
        assert_eq!(form_errors(&api)["price"], ["must be positive"]);
    }
}
