//! Calls to the services' public API over HTTP, like any other client (never their stores),
//! all through `marketplace_shared::outbound::send`.

use std::collections::BTreeMap;

use marketplace_shared::outbound;
use serde_json::{Value, json};
use spin_sdk::http::Method::{self, Delete, Get, Patch, Post, Put};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::form::query_string;
use crate::domain::role::Role;

/// A service's answer that was not a success, or no answer (`status` 503).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub service: &'static str,
    pub status: u16,
    /// The problem document's `detail`.
    pub detail: String,
    /// The problem document's `errors`: field → messages.
    pub errors: BTreeMap<String, Vec<String>>,
}

impl ApiError {
    fn new(service: &'static str, status: u16, detail: String) -> Self {
        Self {
            service,
            status,
            detail,
            errors: BTreeMap::new(),
        }
    }

    /// The problem document of a refusal (its `detail` and `errors`, bounded).
    fn problem(service: &'static str, status: u16, body: &[u8]) -> Self {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let detail = v["detail"].as_str().unwrap_or("").chars().take(1000);
        let mut e = Self::new(service, status, detail.collect());
        for (field, msgs) in v["errors"].as_object().into_iter().flatten().take(50) {
            let msgs = msgs.as_array().into_iter().flatten();
            let msgs = msgs.filter_map(|m| m.as_str().map(String::from)).take(5);
            e.errors.insert(field.clone(), msgs.collect());
        }
        e
    }

    pub fn detail_or_default(&self) -> String {
        if self.detail.is_empty() {
            crate::error::title(self.status).to_string()
        } else {
            self.detail.clone()
        }
    }
}

type Answer = Result<Value, ApiError>;

/// Every endpoint of the services' public API that the storefront calls.
pub enum Call<'a> {
    Register(Value),
    /// The browser's address chain goes as `X-Forwarded-For`: the login limit counts people.
    Login(Value, Option<&'a str>),
    /// `POST /api/auth/refresh`: a new token pair; the old refresh token is spent.
    Refresh(&'a str),
    /// `POST /api/auth/logout`: the refresh token is revoked.
    Logout(&'a str),
    User(Uuid),
    SetRole(Uuid, Role),
    Products(&'a str),
    /// `GET /api/products/{id}`; with the seller's token, archived ones too.
    Product(Uuid),
    SaveProduct(Option<Uuid>, Value),
    /// `DELETE /api/products/{id}`: archived, not erased.
    Archive(Uuid),
    /// `POST /api/orders` with the checkout form's idempotency key.
    PlaceOrder(&'a str, Value),
    /// `GET /api/orders?…`, or `/api/orders/sales?…` (a seller's lines).
    Orders {
        sales: bool,
        cursor: &'a str,
    },
    /// `GET /api/orders/{id}` (`id` already checked to be URL-safe).
    Order(&'a str),
    Cancel(&'a str),
    /// `GET /api/deliveries/{id}` (a carrier's or the buyer's view, full history).
    Shipment(Uuid),
    /// `POST /api/deliveries/{id}/events`: one scan; its `event_id` makes a repeat harmless.
    Scan(Uuid, Value),
    ShipmentsOf(&'a str),
    /// `GET /api/deliveries/track/{tracking_number}` (already checked to be URL-safe).
    Track(&'a str),
}

/// Method, path, JSON body and one extra header of a call.
type Parts<'a> = (
    Method,
    String,
    Option<Value>,
    Option<(&'static str, &'a str)>,
);

impl<'a> Call<'a> {
    fn parts(self) -> Parts<'a> {
        let spent = |token: &str| Some(json!({"refresh_token": token}));
        match self {
            Call::Register(b) => (Post, "/api/auth/register".into(), Some(b), None),
            Call::Login(b, client) => {
                let xff = client.map(|ip| ("x-forwarded-for", ip));
                (Post, "/api/auth/login".into(), Some(b), xff)
            }
            Call::Refresh(t) => (Post, "/api/auth/refresh".into(), spent(t), None),
            Call::Logout(t) => (Post, "/api/auth/logout".into(), spent(t), None),
            Call::User(id) => (Get, format!("/api/users/{id}"), None, None),
            Call::SetRole(id, role) => {
                let body = json!({"role": role.as_str()});
                (Put, format!("/api/users/{id}/role"), Some(body), None)
            }
            Call::Products(q) => (Get, format!("/api/products?{q}"), None, None),
            Call::Product(id) => (Get, format!("/api/products/{id}"), None, None),
            Call::SaveProduct(None, b) => (Post, "/api/products".into(), Some(b), None),
            Call::SaveProduct(Some(id), b) => (Patch, format!("/api/products/{id}"), Some(b), None),
            Call::Archive(id) => (Delete, format!("/api/products/{id}"), None, None),
            Call::PlaceOrder(key, b) => {
                let key = Some(("idempotency-key", key));
                (Post, "/api/orders".into(), Some(b), key)
            }
            Call::Orders { sales, cursor } => {
                let q = query_string([("limit", "20"), ("cursor", cursor)]);
                let sales = if sales { "/sales" } else { "" };
                (Get, format!("/api/orders{sales}?{q}"), None, None)
            }
            Call::Order(id) => (Get, format!("/api/orders/{id}"), None, None),
            Call::Cancel(id) => (Post, format!("/api/orders/{id}/cancel"), None, None),
            Call::Shipment(id) => (Get, format!("/api/deliveries/{id}"), None, None),
            Call::Scan(id, b) => (Post, format!("/api/deliveries/{id}/events"), Some(b), None),
            Call::ShipmentsOf(order) => {
                let q = query_string([("order_id", order)]);
                (Get, format!("/api/deliveries?{q}"), None, None)
            }
            Call::Track(n) => (Get, format!("/api/deliveries/track/{n}"), None, None),
        }
    }
}

pub struct Api<'a> {
    pub cfg: &'a Config,
}

impl Api<'_> {
    pub async fn call(&self, call: Call<'_>) -> Answer {
        self.send(None, call).await
    }

    pub async fn call_as(&self, token: &str, call: Call<'_>) -> Answer {
        self.send(Some(token), call).await
    }

    /// Sends `call` to the service that owns its path (as spin.toml routes it): its JSON
    /// answer (`null` when empty) or the refusal.
    async fn send(&self, token: Option<&str>, call: Call<'_>) -> Answer {
        let (method, path, body, header) = call.parts();
        let (service, base) = match path.split(['/', '?']).nth(2) {
            Some("auth" | "users") => ("user", &self.cfg.user_url),
            Some("products") => ("product", &self.cfg.product_url),
            Some("orders") => ("order", &self.cfg.order_url),
            _ => ("delivery", &self.cfg.delivery_url),
        };
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        let headers: Vec<_> = header.into_iter().collect();
        let resp = outbound::send(method, &format!("{base}{path}"), token, body, &headers)
            .await
            .map_err(|e| ApiError::new(service, 503, e))?;
        let status = *resp.status();
        if !(200..300).contains(&status) {
            return Err(ApiError::problem(service, status, resp.body()));
        }
        if resp.body().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(resp.body())
            .map_err(|e| ApiError::new(service, 502, format!("unreadable answer: {e}")))
    }
}
