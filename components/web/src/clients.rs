//! Calls to the services' public API over HTTP, like any other client (never their stores),
//! all through `marketplace_shared::outbound::send`.

use std::collections::BTreeMap;

use marketplace_shared::outbound;
use serde_json::{Value, json};
use spin_sdk::http::Method;
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

pub struct Api<'a> {
    cfg: &'a Config,
}

impl<'a> Api<'a> {
    pub fn new(cfg: &'a Config) -> Self {
        Self { cfg }
    }

    /// One call: `method service path`, its JSON answer (`null` when empty) or the refusal.
    async fn call(
        &self,
        service: &'static str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let base = match service {
            "user" => &self.cfg.user_url,
            "product" => &self.cfg.product_url,
            "order" => &self.cfg.order_url,
            _ => &self.cfg.delivery_url,
        };
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        let resp = outbound::send(method, &format!("{base}{path}"), token, body, headers)
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

    async fn get(&self, service: &'static str, path: &str, token: Option<&str>) -> Answer {
        self.call(service, Method::Get, path, token, None, &[])
            .await
    }

    async fn post(
        &self,
        service: &'static str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Answer {
        self.call(service, Method::Post, path, token, Some(body), &[])
            .await
    }

    // ------------------------------------------------------------ user

    /// `POST /api/auth/register`.
    pub async fn register(&self, email: &str, password: &str, name: &str, role: &str) -> Answer {
        let body =
            json!({"email": email, "password": password, "display_name": name, "role": role});
        self.post("user", "/api/auth/register", None, body).await
    }

    /// `POST /api/auth/login`; `client` is the browser's address, passed on as
    /// `X-Forwarded-For` so that the user service's per-address limit sees people, not us.
    pub async fn login(&self, email: &str, password: &str, client: Option<&str>) -> Answer {
        let body = Some(json!({"email": email, "password": password}));
        let xff: Vec<(&str, &str)> = client
            .map(|ip| ("x-forwarded-for", ip))
            .into_iter()
            .collect();
        self.call("user", Method::Post, "/api/auth/login", None, body, &xff)
            .await
    }

    /// `POST /api/auth/refresh`: a new token pair; the old refresh token is spent.
    pub async fn refresh(&self, refresh_token: &str) -> Answer {
        let body = json!({"refresh_token": refresh_token});
        self.post("user", "/api/auth/refresh", None, body).await
    }

    /// `POST /api/auth/logout`: the refresh token is revoked.
    pub async fn logout(&self, refresh_token: &str) -> Answer {
        let body = json!({"refresh_token": refresh_token});
        self.post("user", "/api/auth/logout", None, body).await
    }

    /// `GET /api/users/{id}` (admin).
    pub async fn user(&self, token: &str, id: &Uuid) -> Answer {
        self.get("user", &format!("/api/users/{id}"), Some(token))
            .await
    }

    /// `PUT /api/users/{id}/role` (admin): any of the four roles.
    pub async fn set_role(&self, token: &str, id: &Uuid, role: Role) -> Answer {
        let path = format!("/api/users/{id}/role");
        let body = Some(json!({"role": role.as_str()}));
        self.call("user", Method::Put, &path, Some(token), body, &[])
            .await
    }

    // ------------------------------------------------------------ product

    /// `GET /api/products?…`: a page of products.
    pub async fn products(&self, query: &str) -> Answer {
        self.get("product", &format!("/api/products?{query}"), None)
            .await
    }

    /// `GET /api/products/{id}`; with the seller's token, archived ones too.
    pub async fn product(&self, id: &Uuid, token: Option<&str>) -> Answer {
        self.get("product", &format!("/api/products/{id}"), token)
            .await
    }

    /// `POST /api/products` (seller), or `PATCH /api/products/{id}` (its seller).
    pub async fn save_product(&self, token: &str, id: Option<&Uuid>, body: Value) -> Answer {
        let (method, path) = match id {
            Some(id) => (Method::Patch, format!("/api/products/{id}")),
            None => (Method::Post, "/api/products".to_string()),
        };
        self.call("product", method, &path, Some(token), Some(body), &[])
            .await
    }

    /// `DELETE /api/products/{id}`: archived, not erased.
    pub async fn archive_product(&self, token: &str, id: &Uuid) -> Answer {
        let path = format!("/api/products/{id}");
        self.call("product", Method::Delete, &path, Some(token), None, &[])
            .await
    }

    // ------------------------------------------------------------ order

    /// `POST /api/orders` with the checkout form's idempotency key.
    pub async fn place_order(&self, token: &str, key: &str, body: Value) -> Answer {
        let headers = [("idempotency-key", key)];
        self.call(
            "order",
            Method::Post,
            "/api/orders",
            Some(token),
            Some(body),
            &headers,
        )
        .await
    }

    /// `GET /api/orders?limit=20&cursor=…`, or `/api/orders/sales?…` (a seller's lines).
    pub async fn orders(&self, token: &str, sales: bool, cursor: &str) -> Answer {
        let q = query_string([("limit", "20"), ("cursor", cursor)]);
        let path = if sales {
            "/api/orders/sales"
        } else {
            "/api/orders"
        };
        self.get("order", &format!("{path}?{q}"), Some(token)).await
    }

    /// `GET /api/orders/{id}` (`id` already checked to be URL-safe).
    pub async fn order(&self, token: &str, id: &str) -> Answer {
        self.get("order", &format!("/api/orders/{id}"), Some(token))
            .await
    }

    /// `POST /api/orders/{id}/cancel`.
    pub async fn cancel_order(&self, token: &str, id: &str) -> Answer {
        let path = format!("/api/orders/{id}/cancel");
        self.call("order", Method::Post, &path, Some(token), None, &[])
            .await
    }

    // ------------------------------------------------------------ delivery

    /// `GET /api/deliveries/{id}` (a carrier's or the buyer's view, full history).
    pub async fn shipment(&self, token: &str, id: &Uuid) -> Answer {
        self.get("delivery", &format!("/api/deliveries/{id}"), Some(token))
            .await
    }

    /// `POST /api/deliveries/{id}/events`: one scan; its `event_id` makes a repeat harmless.
    pub async fn scan(&self, token: &str, id: &Uuid, event: Value) -> Answer {
        let path = format!("/api/deliveries/{id}/events");
        self.post("delivery", &path, Some(token), event).await
    }

    /// `GET /api/deliveries?order_id=…`: the order's shipments.
    pub async fn shipments_of(&self, token: &str, order_id: &str) -> Answer {
        let q = query_string([("order_id", order_id)]);
        self.get("delivery", &format!("/api/deliveries?{q}"), Some(token))
            .await
    }

    /// `GET /api/deliveries/track/{tracking_number}` (already checked to be URL-safe).
    pub async fn track(&self, number: &str) -> Answer {
        self.get("delivery", &format!("/api/deliveries/track/{number}"), None)
            .await
    }
}
