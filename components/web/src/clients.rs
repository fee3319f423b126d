//! Calls to the services' public API over HTTP, like any other client (never their stores).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};

use crate::config::Config;

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
    pub fn detail_or_default(&self) -> String {
        if self.detail.is_empty() {
            crate::error::title(self.status).to_string()
        } else {
            self.detail.clone()
        }
    }
}

pub struct Api<'a> {
    cfg: &'a Config,
}

struct Call<'b> {
    service: &'static str,
    method: Method,
    url: String,
    token: Option<&'b str>,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

fn problem(service: &'static str, status: u16, body: &[u8]) -> ApiError {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let detail = v
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(1000)
        .collect();
    let mut errors = BTreeMap::new();
    if let Some(m) = v.get("errors").and_then(Value::as_object) {
        for (field, msgs) in m.iter().take(50) {
            let msgs: Vec<String> = msgs
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(String::from))
                .take(5)
                .collect();
            errors.insert(field.clone(), msgs);
        }
    }
    ApiError {
        service,
        status,
        detail,
        errors,
    }
}

async fn send(call: Call<'_>) -> Result<(u16, Value), ApiError> {
    let mut b = Request::builder();
    b.method(call.method)
        .uri(call.url)
        .header("accept", "application/json");
    if let Some(t) = call.token {
        b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in call.headers {
        b.header(k, v);
    }
    if let Some(body) = call.body {
        b.header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default());
    }
    let resp: Response = spin_sdk::http::send(b.build())
        .await
        .map_err(|e| ApiError {
            service: call.service,
            status: 503,
            detail: format!("unreachable: {e}"),
            errors: BTreeMap::new(),
        })?;
    let status = *resp.status();
    if !(200..300).contains(&status) {
        return Err(problem(call.service, status, resp.body()));
    }
    if resp.body().is_empty() {
        return Ok((status, Value::Null));
    }
    serde_json::from_slice(resp.body())
        .map(|v| (status, v))
        .map_err(|e| ApiError {
            service: call.service,
            status: 502,
            detail: format!("unreadable answer: {e}"),
            errors: BTreeMap::new(),
        })
}

impl<'a> Api<'a> {
    pub fn new(cfg: &'a Config) -> Self {
        Self { cfg }
    }

    fn call(&self, service: &'static str, method: Method, path: String) -> Call<'static> {
        let base = match service {
            "user" => &self.cfg.user_url,
            "product" => &self.cfg.product_url,
            "order" => &self.cfg.order_url,
            _ => &self.cfg.delivery_url,
        };
        Call {
            service,
            method,
            url: format!("{base}{path}"),
            token: None,
            body: None,
            headers: vec![],
        }
    }

    // ------------------------------------------------------------ user

    /// `POST /api/auth/register`.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        display_name: &str,
        role: &str,
    ) -> Result<Value, ApiError> {
        let mut c = self.call("user", Method::Post, "/api/auth/register".into());
        c.body = Some(
            json!({"email": email, "password": password, "display_name": display_name, "role": role}),
        );
        send(c).await.map(|r| r.1)
    }

    /// `POST /api/auth/login`; `client` is the browser's address, passed on as
    /// `X-Forwarded-For` so that the user service's per-address limit sees people, not us.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut c = self.call("user", Method::Post, "/api/auth/login".into());
        c.body = Some(json!({"email": email, "password": password}));
        if let Some(ip) = client {
            c.headers.push(("x-forwarded-for", ip.to_string()));
        }
        send(c).await.map(|r| r.1)
    }

    /// `POST /api/auth/refresh`: a new token pair; the old refresh token is spent.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Value, ApiError> {
        let mut c = self.call("user", Method::Post, "/api/auth/refresh".into());
        c.body = Some(json!({"refresh_token": refresh_token}));
        send(c).await.map(|r| r.1)
    }

    /// `POST /api/auth/logout`: the refresh token is revoked.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), ApiError> {
        let mut c = self.call("user", Method::Post, "/api/auth/logout".into());
        c.body = Some(json!({"refresh_token": refresh_token}));
        send(c).await.map(|_| ())
    }

    // ------------------------------------------------------------ product

    /// `GET /api/products?…`: a page of products.
    pub async fn products(&self, query: &str) -> Result<Value, ApiError> {
        send(self.call("product", Method::Get, format!("/api/products?{query}")))
            .await
            .map(|r| r.1)
    }

    /// `GET /api/products/{id}`.
    pub async fn product(&self, id: &uuid::Uuid) -> Result<Value, ApiError> {
        send(self.call("product", Method::Get, format!("/api/products/{id}")))
            .await
            .map(|r| r.1)
    }

    /// `POST /api/products` (seller).
    pub async fn create_product(&self, token: &str, body: Value) -> Result<Value, ApiError> {
        let mut c = self.call("product", Method::Post, "/api/products".into());
        c.token = Some(token);
        c.body = Some(body);
        send(c).await.map(|r| r.1)
    }

    /// `PATCH /api/products/{id}` (its seller).
    pub async fn update_product(
        &self,
        token: &str,
        id: &uuid::Uuid,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut c = self.call("product", Method::Patch, format!("/api/products/{id}"));
        c.token = Some(token);
        c.body = Some(body);
        send(c).await.map(|r| r.1)
    }

    /// `DELETE /api/products/{id}`: archived, not erased.
    pub async fn archive_product(&self, token: &str, id: &uuid::Uuid) -> Result<(), ApiError> {
        let mut c = self.call("product", Method::Delete, format!("/api/products/{id}"));
        c.token = Some(token);
        send(c).await.map(|_| ())
    }

    /// `GET /api/products/{id}` as its seller (archived ones too).
    pub async fn own_product(&self, token: &str, id: &uuid::Uuid) -> Result<Value, ApiError> {
        let mut c = self.call("product", Method::Get, format!("/api/products/{id}"));
        c.token = Some(token);
        send(c).await.map(|r| r.1)
    }

    // ------------------------------------------------------------ order

    /// `POST /api/orders` with the checkout form's idempotency key.
    pub async fn place_order(
        &self,
        token: &str,
        key: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut c = self.call("order", Method::Post, "/api/orders".into());
        c.token = Some(token);
        c.body = Some(body);
        c.headers.push(("idempotency-key", key.to_string()));
        send(c).await.map(|r| r.1)
    }

    /// `GET /api/orders?limit=20&cursor=…`.
    pub async fn orders(&self, token: &str, cursor: &str) -> Result<Value, ApiError> {
        let q = crate::domain::form::query_string([("limit", "20"), ("cursor", cursor)]);
        let mut c = self.call("order", Method::Get, format!("/api/orders?{q}"));
        c.token = Some(token);
        send(c).await.map(|r| r.1)
    }

    /// `GET /api/orders/{id}` (`id` already checked to be URL-safe).
    pub async fn order(&self, token: &str, id: &str) -> Result<Value, ApiError> {
        let mut c = self.call("order", Method::Get, format!("/api/orders/{id}"));
        c.token = Some(token);
        send(c).await.map(|r| r.1)
    }

    /// `POST /api/orders/{id}/cancel`.
    pub async fn cancel_order(&self, token: &str, id: &str) -> Result<Value, ApiError> {
        let mut c = self.call("order", Method::Post, format!("/api/orders/{id}/cancel"));
        c.token = Some(token);
        send(c).await.map(|r| r.1)
    }

    /// `GET /api/orders/sales?limit=20&cursor=…`: the seller's order lines.
    pub async fn sales(&self, token: &str, cursor: &str) -> Result<Value, ApiError> {
        let q = crate::domain::form::query_string([("limit", "20"), ("cursor", cursor)]);
        let mut c = self.call("order", Method::Get, format!("/api/orders/sales?{q}"));
        c.token = Some(token);
        send(c).await.map(|r| r.1)
    }

    // ------------------------------------------------------------ delivery

    /// `GET /api/deliveries/{id}` (a carrier's or the buyer's view, full history).
    pub async fn shipment(&self, token: &str, id: &uuid::Uuid) -> Result<Value, ApiError> {
        let mut c = self.call("delivery", Method::Get, format!("/api/deliveries/{id}"));
        c.token = Some(token);
        send(c).await.map(|r| r.1)
    }

    /// `POST /api/deliveries/{id}/events`: one scan; its `event_id` makes a repeat harmless.
    pub async fn scan(
        &self,
        token: &str,
        id: &uuid::Uuid,
        event: Value,
    ) -> Result<Value, ApiError> {
        let mut c = self.call(
            "delivery",
            Method::Post,
            format!("/api/deliveries/{id}/events"),
        );
        c.token = Some(token);
        c.body = Some(event);
        send(c).await.map(|r| r.1)
    }

    /// `GET /api/deliveries?order_id=…`: the order's shipments.
    pub async fn shipments_of(&self, token: &str, order_id: &str) -> Result<Value, ApiError> {
        let q = crate::domain::form::query_string([("order_id", order_id)]);
        let mut c = self.call("delivery", Method::Get, format!("/api/deliveries?{q}"));
        c.token = Some(token);
        send(c).await.map(|r| r.1)
    }

    /// `GET /api/deliveries/track/{tracking_number}` (already checked to be URL-safe).
    pub async fn track(&self, number: &str) -> Result<Value, ApiError> {
        send(self.call(
            "delivery",
            Method::Get,
            format!("/api/deliveries/track/{number}"),
        ))
        .await
        .map(|r| r.1)
    }
}
