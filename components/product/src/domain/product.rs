//! What a valid product and a valid change of one are.

use marketplace_shared::FieldErrors;
use serde::{Deserialize, Deserializer};

use super::{checked, has_control};

// The bounds of a product's fields; lengths count characters, not bytes.
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_CATEGORY_CHARS: usize = 100;
/// In minor units (ten million major units): anything above is a typo.
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000;
pub const MAX_STOCK: i64 = 100_000_000;
pub const MAX_ATTRIBUTES: usize = 50;
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 500;
/// Active ISO 4217 currency codes (funds and precious metals excluded).
pub const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW",
    "ZWG",
];

/// Deserializes a present field (even `null`) as `Some(..)`, so a patch can tell
/// "absent" (`None`) from "null" (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The fields of `POST /api/products` and `PATCH /api/products/{id}` as sent.
///
/// Every field is optional here so that one pass can name every missing and bad field.
#[derive(Debug, Default, Deserialize)]
pub struct ProductInput {
    #[serde(default, deserialize_with = "present")]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub category: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub price_cents: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub currency: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub stock: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub attributes: Option<Option<serde_json::Value>>,
}

/// A validated product to create: a change that sets every field (only
/// [`ProductInput::into_new`] builds one).
#[derive(Debug, Clone, PartialEq)]
pub struct NewProduct(ProductPatch);

impl NewProduct {
    pub fn fields(&self) -> &ProductPatch {
        &self.0
    }
}

/// A validated change: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price_cents: Option<i64>,
    pub currency: Option<String>,
    pub stock: Option<i64>,
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Trimmed text of `min..=max` characters, without control characters (but newlines and
/// tabs when `multiline`).
fn text(value: String, min: usize, max: usize, multiline: bool) -> Result<String, String> {
    let value = value.trim().to_string();
    let len = value.chars().count();
    if has_control(&value, multiline) {
        Err("must not contain control characters".into())
    } else if len < min {
        Err("must not be empty".into())
    } else if len > max {
        Err(format!("must be at most {max} characters"))
    } else {
        Ok(value)
    }
}

fn int(value: i64, max: i64) -> Result<i64, String> {
    if value < 0 {
        Err("must not be negative".into())
    } else if value > max {
        Err(format!("must be at most {max}"))
    } else {
        Ok(value)
    }
}

/// An ISO 4217 code, upper case as the contract writes it.
fn currency(value: String) -> Result<String, String> {
    if CURRENCIES.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err("must be an ISO 4217 currency code such as EUR".into())
    }
}

/// Checks that `attributes` is a flat object of string keys to string, number or boolean.
fn attributes(
    errors: &mut FieldErrors,
    value: serde_json::Value,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let serde_json::Value::Object(map) = value else {
        errors.add("attributes", "must be an object");
        return None;
    };
    let before = errors.clone();
    if map.len() > MAX_ATTRIBUTES {
        errors.add(
            "attributes",
            format!("must have at most {MAX_ATTRIBUTES} entries"),
        );
    }
    for (key, v) in &map {
        let field = format!("attributes.{key}");
        let key_len = key.chars().count();
        if key_len == 0 || key_len > MAX_ATTRIBUTE_KEY_CHARS || has_control(key, false) {
            errors.add(
                "attributes",
                format!("names must be 1 to {MAX_ATTRIBUTE_KEY_CHARS} printable characters"),
            );
            continue;
        }
        match v {
            serde_json::Value::String(s) => {
                if s.chars().count() > MAX_ATTRIBUTE_VALUE_CHARS {
                    errors.add(
                        field,
                        format!("must be at most {MAX_ATTRIBUTE_VALUE_CHARS} characters"),
                    );
                } else if s.contains('\0') {
                    errors.add(field, "must not contain NUL characters");
                }
            }
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {}
            _ => errors.add(field, "must be a string, number or boolean"),
        }
    }
    (*errors == before).then_some(map)
}

/// A field as sent, checked by `check` when present; "must not be null" when `null`.
fn given<T, U>(
    errors: &mut FieldErrors,
    field: &str,
    value: Option<Option<T>>,
    check: impl FnOnce(T) -> Result<U, String>,
) -> Option<U> {
    match value? {
        None => {
            errors.add(field, "must not be null");
            None
        }
        Some(v) => check(v).map_err(|message| errors.add(field, message)).ok(),
    }
}

impl ProductInput {
    /// Validates a create request: every field but `attributes` is required.
    pub fn into_new(self) -> Result<NewProduct, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut p = self.validate(&mut errors);
        for (field, present) in [
            ("title", p.title.is_some()),
            ("description", p.description.is_some()),
            ("category", p.category.is_some()),
            ("price_cents", p.price_cents.is_some()),
            ("currency", p.currency.is_some()),
            ("stock", p.stock.is_some()),
        ] {
            if !present && !errors.contains(field) {
                errors.add(field, "is required");
            }
        }
        checked(errors)?;
        p.attributes.get_or_insert_default();
        Ok(NewProduct(p))
    }

    /// Validates a patch: any subset of the create fields, at least one.
    pub fn into_patch(self) -> Result<ProductPatch, FieldErrors> {
        let mut errors = FieldErrors::new();
        let patch = self.validate(&mut errors);
        if errors.is_empty() && patch == ProductPatch::default() {
            errors.add(
                "body",
                "must change at least one of title, description, category, price_cents, currency, stock, attributes",
            );
        }
        checked(errors).map(|()| patch)
    }

    fn validate(self, e: &mut FieldErrors) -> ProductPatch {
        let title = |v| text(v, 1, MAX_TITLE_CHARS, false);
        let description = |v| text(v, 0, MAX_DESCRIPTION_CHARS, true);
        let category = |v| text(v, 1, MAX_CATEGORY_CHARS, false);
        let price_cents = |v| int(v, MAX_PRICE_CENTS);
        ProductPatch {
            title: given(e, "title", self.title, title),
            description: given(e, "description", self.description, description),
            category: given(e, "category", self.category, category),
            price_cents: given(e, "price_cents", self.price_cents, price_cents),
            currency: given(e, "currency", self.currency, currency),
            stock: given(e, "stock", self.stock, |v| int(v, MAX_STOCK)),
            attributes: given(e, "attributes", self.attributes, Ok).and_then(|v| attributes(e, v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: serde_json::Value) -> ProductInput {
        marketplace_shared::body::from_value(v).unwrap()
    }

    fn valid() -> serde_json::Value {
        json!({"title": " Red shoes ", "description": "Comfy", "category": "shoes",
               "price_cents": 1999, "currency": "EUR", "stock": 3,
               "attributes": {"size": 42, "colour": "red", "vegan": true}})
    }

    #[test]
    fn a_valid_product_is_trimmed_and_accepted_and_a_patch_needs_no_other_field() {
        let new = input(valid()).into_new().unwrap();
        assert_eq!(new.fields().title.as_deref(), Some("Red shoes"));
        assert_eq!(new.fields().attributes.as_ref().map(|a| a.len()), Some(3));
        let errors = input(json!({"title": "x"})).into_new().unwrap_err();
        assert!(errors.contains("price_cents") && errors.contains("currency"));
        let patch = input(json!({"title": "x"})).into_patch().unwrap();
        assert_eq!(patch.title.as_deref(), Some("x"));
        assert_eq!(patch.price_cents, None);
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let errors = input(json!({"title": "", "description": "x", "category": "c",
            "price_cents": -1, "currency": "EURO", "stock": 1_000_000_000_000i64,
            "attributes": {"nested": {"a": 1}, "list": [1]}}))
        .into_new()
        .unwrap_err();
        for field in [
            "title",
            "price_cents",
            "currency",
            "stock",
            "attributes.nested",
            "attributes.list",
        ] {
            assert!(errors.contains(field), "{field}: {errors:?}");
        }
    }

    #[test]
    fn nulls_empty_patches_and_absurd_values_are_refused() {
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        for (patch, field) in [
            (json!({"title": null}), "title"),
            (json!({}), "body"),
            (json!({"title": long}), "title"),
            (json!({"price_cents": MAX_PRICE_CENTS + 1}), "price_cents"),
            (json!({"currency": "eur"}), "currency"),
            (json!({"title": "a\u{0}b"}), "title"),
            (json!({"attributes": [1]}), "attributes"),
        ] {
            let errors = input(patch.clone()).into_patch().unwrap_err();
            assert!(errors.contains(field), "{patch}: {errors:?}");
        }
    }
}
