//! The product service's rules: what a valid product, patch, search and reservation is.
//!
//! Plain Rust with no I/O (no spin-sdk): every value past a handler was built by a parser
//! here, so an invalid title, price or cursor cannot reach the database.

use std::collections::BTreeMap;

use marketplace_shared::page;
use marketplace_shared::query::Query;
use marketplace_shared::{FieldErrors, Problem};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::sql;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Longest category, in characters.
pub const MAX_CATEGORY_CHARS: usize = 100;
/// Highest price in minor units (ten million major units): anything above is a typo.
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000;
/// Highest stock of one product.
pub const MAX_STOCK: i64 = 100_000_000;
/// At most this many attributes per product.
pub const MAX_ATTRIBUTES: usize = 50;
/// Longest attribute name, in characters.
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;
/// Longest attribute string value, in characters.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 500;
/// Longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most lines in one reservation.
pub const MAX_RESERVATION_ITEMS: usize = 100;
/// Largest quantity of one reservation line.
pub const MAX_QUANTITY: u32 = 1_000_000;
/// Longest reservation id, in characters.
pub const MAX_RESERVATION_ID_CHARS: usize = 255;

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

/// Who may see or change what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Anonymous,
    /// A signed-in user; `admin` is true for the admin role.
    User {
        id: Uuid,
        admin: bool,
        seller: bool,
    },
}

impl Actor {
    /// True when this actor may see an archived product and change the product.
    pub fn owns_or_admin(&self, seller_id: Uuid) -> bool {
        match *self {
            Actor::Anonymous => false,
            Actor::User { id, admin, .. } => admin || id == seller_id,
        }
    }
}

/// `active` or `archived`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Archived,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Status::Active),
            "archived" => Some(Status::Archived),
            _ => None,
        }
    }
}

/// A product as the contract shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: Uuid,
    pub seller_id: Uuid,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i64,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub status: Status,
    pub created_at: String,
    pub updated_at: String,
}

/// Whether `actor` may read `product` (archived ones only by their seller and admins).
pub fn visible_to(product: &Product, actor: &Actor) -> bool {
    product.status == Status::Active || actor.owns_or_admin(product.seller_id)
}

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

/// A validated product to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProduct {
    pub title: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i64,
    pub attributes: serde_json::Map<String, serde_json::Value>,
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

impl ProductPatch {
    pub fn is_empty(&self) -> bool {
        *self == ProductPatch::default()
    }
}

fn has_control(s: &str, allow_newlines: bool) -> bool {
    s.chars()
        .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
}

fn text(
    errors: &mut FieldErrors,
    field: &str,
    value: String,
    min: usize,
    max: usize,
    multiline: bool,
) -> Option<String> {
    let value = value.trim().to_string();
    let len = value.chars().count();
    if has_control(&value, multiline) {
        errors.add(field, "must not contain control characters");
        None
    } else if len < min {
        errors.add(field, "must not be empty");
        None
    } else if len > max {
        errors.add(field, format!("must be at most {max} characters"));
        None
    } else {
        Some(value)
    }
}

fn int(errors: &mut FieldErrors, field: &str, value: i64, max: i64) -> Option<i64> {
    if value < 0 {
        errors.add(field, "must not be negative");
        None
    } else if value > max {
        errors.add(field, format!("must be at most {max}"));
        None
    } else {
        Some(value)
    }
}

/// Parses an ISO 4217 code (upper case, as the contract writes it).
pub fn parse_currency(value: &str) -> Option<String> {
    CURRENCIES.contains(&value).then(|| value.to_string())
}

fn currency(errors: &mut FieldErrors, value: String) -> Option<String> {
    let parsed = parse_currency(&value);
    if parsed.is_none() {
        errors.add("currency", "must be an ISO 4217 currency code such as EUR");
    }
    parsed
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

fn null(errors: &mut FieldErrors, field: &str) {
    errors.add(field, "must not be null");
}

impl ProductInput {
    /// Validates a create request: every field but `attributes` is required.
    pub fn into_new(self) -> Result<NewProduct, Problem> {
        let mut errors = FieldErrors::new();
        let patch = self.validate(&mut errors);
        let mut required = |field: &str, present: bool| {
            if !present && !errors.contains(field) {
                errors.add(field, "is required");
            }
        };
        required("title", patch.title.is_some());
        required("description", patch.description.is_some());
        required("category", patch.category.is_some());
        required("price_cents", patch.price_cents.is_some());
        required("currency", patch.currency.is_some());
        required("stock", patch.stock.is_some());
        errors.into_result()?;
        match patch {
            ProductPatch {
                title: Some(title),
                description: Some(description),
                category: Some(category),
                price_cents: Some(price_cents),
                currency: Some(currency),
                stock: Some(stock),
                attributes,
            } => Ok(NewProduct {
                title,
                description,
                category,
                price_cents,
                currency,
                stock,
                attributes: attributes.unwrap_or_default(),
            }),
            _ => Err(Problem::unprocessable("incomplete product")),
        }
    }

    /// Validates a patch: any subset of the create fields, at least one.
    pub fn into_patch(self) -> Result<ProductPatch, Problem> {
        let mut errors = FieldErrors::new();
        let patch = self.validate(&mut errors);
        errors.into_result()?;
        if patch.is_empty() {
            return Err(Problem::invalid_field(
                "body",
                "must change at least one of title, description, category, price_cents, currency, stock, attributes",
            ));
        }
        Ok(patch)
    }

    fn validate(self, errors: &mut FieldErrors) -> ProductPatch {
        let mut patch = ProductPatch::default();
        match self.title {
            Some(Some(v)) => patch.title = text(errors, "title", v, 1, MAX_TITLE_CHARS, false),
            Some(None) => null(errors, "title"),
            None => {}
        }
        match self.description {
            Some(Some(v)) => {
                patch.description = text(errors, "description", v, 0, MAX_DESCRIPTION_CHARS, true)
            }
            Some(None) => null(errors, "description"),
            None => {}
        }
        match self.category {
            Some(Some(v)) => {
                patch.category = text(errors, "category", v, 1, MAX_CATEGORY_CHARS, false)
            }
            Some(None) => null(errors, "category"),
            None => {}
        }
        match self.price_cents {
            Some(Some(v)) => patch.price_cents = int(errors, "price_cents", v, MAX_PRICE_CENTS),
            Some(None) => null(errors, "price_cents"),
            None => {}
        }
        match self.currency {
            Some(Some(v)) => patch.currency = currency(errors, v),
            Some(None) => null(errors, "currency"),
            None => {}
        }
        match self.stock {
            Some(Some(v)) => patch.stock = int(errors, "stock", v, MAX_STOCK),
            Some(None) => null(errors, "stock"),
            None => {}
        }
        match self.attributes {
            Some(Some(v)) => patch.attributes = attributes(errors, v),
            Some(None) => null(errors, "attributes"),
            None => {}
        }
        patch
    }
}

/// Sort orders of `GET /api/products`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    Relevance,
    Newest,
    PriceAsc,
    PriceDesc,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "relevance" => Some(Sort::Relevance),
            "newest" => Some(Sort::Newest),
            "price_asc" => Some(Sort::PriceAsc),
            "price_desc" => Some(Sort::PriceDesc),
            _ => None,
        }
    }
}

/// Where the previous page ended, in the sort's own key (opaque to clients).
///
/// The sort is part of the cursor, so a cursor cannot be replayed against another order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "s", rename_all = "snake_case", deny_unknown_fields)]
pub enum Cursor {
    /// Last `(created_at in µs since the epoch, id)` seen, newest first.
    Newest { t: i64, id: Uuid },
    /// Last `(price_cents, id)` seen, cheapest first.
    PriceAsc { p: i64, id: Uuid },
    /// Last `(price_cents, id)` seen, dearest first.
    PriceDesc { p: i64, id: Uuid },
    /// Last `(score, id)` seen, best first.
    Relevance { r: f32, id: Uuid },
}

impl Cursor {
    fn sort(&self) -> Sort {
        match self {
            Cursor::Newest { .. } => Sort::Newest,
            Cursor::PriceAsc { .. } => Sort::PriceAsc,
            Cursor::PriceDesc { .. } => Sort::PriceDesc,
            Cursor::Relevance { .. } => Sort::Relevance,
        }
    }
}

/// The query parameters `GET /api/products` accepts.
pub const SEARCH_PARAMS: &[&str] = &[
    "q",
    "category",
    "seller_id",
    "min_price",
    "max_price",
    "in_stock",
    "sort",
    "limit",
    "cursor",
];

/// A validated search or browse request.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub q: Option<String>,
    pub category: Option<String>,
    pub seller_id: Option<Uuid>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub sort: Sort,
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl Search {
    /// What the SQL builder needs for this page: the page size plus one row, to know
    /// whether a next page exists.
    pub fn spec(&self) -> sql::SearchSpec {
        let order = match self.sort {
            Sort::Relevance => sql::Order::Relevance,
            Sort::Newest => sql::Order::Newest,
            Sort::PriceAsc => sql::Order::PriceAsc,
            Sort::PriceDesc => sql::Order::PriceDesc,
        };
        let after = self.after.map(|c| match c {
            Cursor::Newest { t, id } => sql::After::Newest {
                created_us: t,
                id: id.to_string(),
            },
            Cursor::PriceAsc { p, id } | Cursor::PriceDesc { p, id } => sql::After::Price {
                price_cents: p,
                id: id.to_string(),
            },
            Cursor::Relevance { r, id } => sql::After::Relevance {
                score: r,
                id: id.to_string(),
            },
        });
        sql::SearchSpec {
            q: self.q.clone(),
            category: self.category.clone(),
            seller_id: self.seller_id.map(|s| s.to_string()),
            min_price: self.min_price,
            max_price: self.max_price,
            in_stock: self.in_stock,
            order,
            fetch: i64::from(self.limit) + 1,
            after,
        }
    }

    /// Parses the query string of `GET /api/products` (400 for anything it does not accept).
    pub fn parse(query: &str) -> Result<Self, Problem> {
        let query = Query::parse(query, SEARCH_PARAMS)?;
        let q = match query.get("q").map(str::trim) {
            None => None,
            Some("") => return Err(Problem::bad_request("`q` must not be empty")),
            Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
                return Err(Problem::bad_request(format!(
                    "`q` must be at most {MAX_QUERY_CHARS} characters"
                )));
            }
            Some(q) if has_control(q, false) => {
                return Err(Problem::bad_request(
                    "`q` must not contain control characters",
                ));
            }
            Some(q) => Some(q.to_string()),
        };
        let category = match query.get("category") {
            None => None,
            Some(c)
                if c.trim().is_empty()
                    || c.chars().count() > MAX_CATEGORY_CHARS
                    || has_control(c, false) =>
            {
                return Err(Problem::bad_request(format!(
                    "`category` must be 1 to {MAX_CATEGORY_CHARS} printable characters"
                )));
            }
            Some(c) => Some(c.trim().to_string()),
        };
        let seller_id = match query.get("seller_id") {
            None => None,
            Some(s) => Some(
                Uuid::parse_str(s)
                    .map_err(|_| Problem::bad_request("`seller_id` must be a UUID"))?,
            ),
        };
        let min_price = query.int_in("min_price", 0..=MAX_PRICE_CENTS)?;
        let max_price = query.int_in("max_price", 0..=MAX_PRICE_CENTS)?;
        if let (Some(min), Some(max)) = (min_price, max_price)
            && min > max
        {
            return Err(Problem::bad_request(
                "`min_price` must not be above `max_price`",
            ));
        }
        let in_stock = query.bool("in_stock")?.unwrap_or(false);
        let sort = match query.get("sort") {
            None if q.is_some() => Sort::Relevance,
            None => Sort::Newest,
            Some(s) => Sort::parse(s).ok_or_else(|| {
                Problem::bad_request(
                    "`sort` must be one of relevance, newest, price_asc, price_desc",
                )
            })?,
        };
        if sort == Sort::Relevance && q.is_none() {
            return Err(Problem::bad_request("`sort=relevance` needs `q`"));
        }
        let limit = page::limit(&query)?;
        let after = match query.get("cursor") {
            None => None,
            Some(c) => {
                let cursor: Cursor = page::decode_cursor(c)?;
                if cursor.sort() != sort {
                    return Err(Problem::bad_request("invalid cursor"));
                }
                Some(cursor)
            }
        };
        Ok(Search {
            q,
            category,
            seller_id,
            min_price,
            max_price,
            in_stock,
            sort,
            limit,
            after,
        })
    }
}

/// One reservation line after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationLine {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// A validated reservation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub reservation_id: String,
    pub lines: Vec<ReservationLine>,
}

impl ReservationRequest {
    /// Quantities summed per product, in product id order: the order rows are locked in,
    /// so that concurrent reservations cannot deadlock.
    pub fn totals(&self) -> Vec<(Uuid, i64)> {
        let mut totals: BTreeMap<Uuid, i64> = BTreeMap::new();
        for line in &self.lines {
            *totals.entry(line.product_id).or_default() += line.quantity;
        }
        totals.into_iter().collect()
    }
}

/// Validates a reservation id (also used for the id in the release path).
pub fn parse_reservation_id(id: &str) -> Option<String> {
    let len = id.chars().count();
    (len > 0 && len <= MAX_RESERVATION_ID_CHARS && !has_control(id, false)).then(|| id.to_string())
}

/// Validates `POST /internal/products/reservations`.
pub fn parse_reservation(
    body: marketplace_shared::wit::ReservationRequest,
) -> Result<ReservationRequest, Problem> {
    let mut errors = FieldErrors::new();
    let reservation_id = parse_reservation_id(&body.reservation_id);
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
        let product_id = Uuid::parse_str(&item.product_id);
        if product_id.is_err() {
            errors.add(format!("items[{i}].product_id"), "must be a UUID");
        }
        if item.quantity == 0 || item.quantity > MAX_QUANTITY {
            errors.add(
                format!("items[{i}].quantity"),
                format!("must be from 1 to {MAX_QUANTITY}"),
            );
        }
        if let Ok(product_id) = product_id {
            lines.push(ReservationLine {
                product_id,
                quantity: i64::from(item.quantity),
            });
        }
    }
    errors.into_result()?;
    Ok(ReservationRequest {
        reservation_id: reservation_id.unwrap_or_default(),
        lines,
    })
}

/// Number of key-value labels the read model is spread over (`products0` … `products3`).
pub const KV_PARTITIONS: u64 = 4;

/// The key-value label holding the read-model document of `id`.
///
/// FNV-1a (64-bit) over the id's 16 bytes, modulo [`KV_PARTITIONS`]: stable across builds
/// and platforms (unlike `std`'s hasher), so every instance agrees where a product lives.
/// Labels are virtual partitions: runtime config maps them to SQLite files or Redis
/// servers, so adding a Redis server means pointing some labels at it, with no code change.
pub fn kv_label(id: &Uuid) -> String {
    format!("products{}", fnv1a(id.as_bytes()) % KV_PARTITIONS)
}

/// The key of the read-model document of `id` within its label.
pub fn kv_key(id: &Uuid) -> String {
    format!("product:v1:{id}")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Where a read-model document was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Written by a write on the primary (or read from it): current as of that write.
    Primary,
    /// Refilled from a read replica, which may lag: trusted only for [`REPLICA_DOC_TTL_MS`].
    Replica,
}

/// How long a document refilled from a replica is served before it is read again.
///
/// Writes always store their own (primary) document, so this only matters when the store
/// lost that document (a Redis server added or flushed) and a lagging replica refilled it:
/// such a copy is at most replica lag + this old.
pub const REPLICA_DOC_TTL_MS: i64 = 5_000;

/// The read-model document: the product plus the row version it was taken from.
///
/// Versions only grow (every write bumps them), so a document is replaced only by a newer
/// one: a refill from a lagging replica can never overwrite what a write just stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub version: i64,
    pub source: Source,
    /// When the document was stored, in ms since the epoch.
    pub stored_at_ms: i64,
    pub product: Product,
}

impl Document {
    /// Whether `self` should replace `stored` in the key-value store.
    pub fn supersedes(&self, stored: Option<&Document>) -> bool {
        match stored {
            None => true,
            Some(s) => {
                self.version > s.version
                    || (self.version == s.version
                        && s.source == Source::Replica
                        && self.stored_at_ms > s.stored_at_ms)
            }
        }
    }

    /// Whether the document may be served at `now_ms` without asking the database.
    pub fn is_fresh(&self, now_ms: i64) -> bool {
        self.source == Source::Primary || now_ms - self.stored_at_ms < REPLICA_DOC_TTL_MS
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
    fn a_valid_product_is_trimmed_and_accepted() {
        let p = input(valid()).into_new().unwrap();
        assert_eq!(p.title, "Red shoes");
        assert_eq!(p.attributes.len(), 3);
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let p = input(json!({"title": "", "description": "x", "category": "c",
            "price_cents": -1, "currency": "EURO", "stock": 1_000_000_000_000i64,
            "attributes": {"nested": {"a": 1}, "list": [1]}}))
        .into_new()
        .unwrap_err();
        let errors = p.errors.unwrap();
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
    fn missing_fields_are_required_on_create_but_not_on_patch() {
        let errors = input(json!({"title": "x"}))
            .into_new()
            .unwrap_err()
            .errors
            .unwrap();
        assert!(errors.contains("price_cents") && errors.contains("currency"));
        let patch = input(json!({"title": "x"})).into_patch().unwrap();
        assert_eq!(patch.title.as_deref(), Some("x"));
        assert!(patch.price_cents.is_none());
    }

    #[test]
    fn nulls_empty_patches_and_absurd_values_are_refused() {
        assert_eq!(
            input(json!({"title": null}))
                .into_patch()
                .unwrap_err()
                .status,
            422
        );
        assert_eq!(input(json!({})).into_patch().unwrap_err().status, 422);
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(
            input(json!({"title": long}))
                .into_patch()
                .unwrap_err()
                .status,
            422
        );
        assert_eq!(
            input(json!({"price_cents": MAX_PRICE_CENTS + 1}))
                .into_patch()
                .unwrap_err()
                .status,
            422
        );
        assert_eq!(
            input(json!({"currency": "eur"}))
                .into_patch()
                .unwrap_err()
                .status,
            422
        );
        assert_eq!(
            input(json!({"title": "a\u{0}b"}))
                .into_patch()
                .unwrap_err()
                .status,
            422
        );
        assert_eq!(
            input(json!({"attributes": [1]}))
                .into_patch()
                .unwrap_err()
                .status,
            422
        );
    }

    #[test]
    fn search_defaults_follow_the_contract() {
        let s = Search::parse("").unwrap();
        assert_eq!((s.sort, s.limit, s.in_stock), (Sort::Newest, 20, false));
        let s = Search::parse("q=red%20shoes").unwrap();
        assert_eq!(s.sort, Sort::Relevance);
        let s = Search::parse("q=x&sort=price_desc&in_stock=true&min_price=5&max_price=9").unwrap();
        assert_eq!(
            (s.sort, s.in_stock, s.min_price, s.max_price),
            (Sort::PriceDesc, true, Some(5), Some(9))
        );
    }

    #[test]
    fn bad_search_parameters_are_400() {
        for q in [
            "colour=red",
            "sort=cheapest",
            "sort=relevance",
            "limit=0",
            "limit=101",
            "min_price=-1",
            "min_price=9&max_price=1",
            "in_stock=yes",
            "seller_id=nope",
            "q=",
            "cursor=garbage",
            "q=a&q=b",
        ] {
            assert_eq!(Search::parse(q).unwrap_err().status, 400, "{q}");
        }
    }

    #[test]
    fn a_cursor_only_continues_its_own_sort() {
        let c = page::encode_cursor(&Cursor::PriceAsc {
            p: 5,
            id: Uuid::nil(),
        });
        assert!(Search::parse(&format!("sort=price_asc&cursor={c}")).is_ok());
        assert_eq!(
            Search::parse(&format!("sort=price_desc&cursor={c}"))
                .unwrap_err()
                .status,
            400
        );
        let forged = page::encode_cursor(&json!({"s": "newest", "t": "x", "id": "y"}));
        assert_eq!(
            Search::parse(&format!("cursor={forged}"))
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn relevance_cursors_keep_the_exact_score() {
        let score = 0.123_456_79_f32;
        let c = page::encode_cursor(&Cursor::Relevance {
            r: score,
            id: Uuid::nil(),
        });
        let back: Cursor = page::decode_cursor(&c).unwrap();
        assert_eq!(
            back,
            Cursor::Relevance {
                r: score,
                id: Uuid::nil()
            }
        );
    }

    #[test]
    fn reservations_sum_lines_per_product_in_id_order() {
        let a = Uuid::from_u128(2);
        let b = Uuid::from_u128(1);
        let body = serde_json::from_value(json!({"reservation_id": "r1", "items": [
            {"product_id": a.to_string(), "quantity": 2},
            {"product_id": b.to_string(), "quantity": 1},
            {"product_id": a.to_string(), "quantity": 3}]}))
        .unwrap();
        let r = parse_reservation(body).unwrap();
        assert_eq!(r.totals(), vec![(b, 1), (a, 5)]);
    }

    #[test]
    fn bad_reservations_name_their_fields() {
        let body = serde_json::from_value(json!({"reservation_id": "", "items": [
            {"product_id": "nope", "quantity": 0}]}))
        .unwrap();
        let errors = parse_reservation(body).unwrap_err().errors.unwrap();
        assert!(errors.contains("reservation_id"));
        assert!(errors.contains("items[0].product_id"));
        assert!(errors.contains("items[0].quantity"));
    }

    #[test]
    fn kv_labels_are_stable_and_spread() {
        // Pinned: changing the hash would orphan every stored document.
        assert_eq!(
            kv_label(&Uuid::nil()),
            format!("products{}", fnv1a(&[0; 16]) % 4)
        );
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..64u128 {
            seen.insert(kv_label(&Uuid::from_u128(i * 7919)));
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn documents_only_move_forward() {
        let product = input(valid()).into_new().unwrap();
        let p = Product {
            id: Uuid::nil(),
            seller_id: Uuid::nil(),
            title: product.title,
            description: product.description,
            category: product.category,
            price_cents: 1,
            currency: "EUR".into(),
            stock: 1,
            attributes: product.attributes,
            status: Status::Active,
            created_at: String::new(),
            updated_at: String::new(),
        };
        let doc = |version, source, stored_at_ms| Document {
            version,
            source,
            stored_at_ms,
            product: p.clone(),
        };
        let old = doc(1, Source::Primary, 10);
        let new = doc(2, Source::Replica, 5);
        assert!(new.supersedes(Some(&old)));
        assert!(!old.supersedes(Some(&new)));
        assert!(old.supersedes(None));
        // A replica copy is refreshed by a later read of the same version, a primary one is not.
        assert!(doc(2, Source::Replica, 9).supersedes(Some(&new)));
        assert!(!doc(1, Source::Replica, 99).supersedes(Some(&old)));
        assert!(new.is_fresh(5 + REPLICA_DOC_TTL_MS - 1));
        assert!(!new.is_fresh(5 + REPLICA_DOC_TTL_MS));
        assert!(old.is_fresh(i64::MAX));
    }
}
