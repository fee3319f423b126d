//! The component's Spin variables, read once per request into one typed value.

use crate::error::Error;

/// Where the storefront reaches each service (`http://<svc>.spin.internal` by default; a
/// Kubernetes Service or the public address where the services run as separate SpinApps).
pub struct Config {
    pub user_url: String,
    pub product_url: String,
    pub order_url: String,
    pub delivery_url: String,
}

fn url(name: &str) -> Result<String, Error> {
    let v = spin_sdk::variables::get(name)
        .map_err(|e| Error::Internal(format!("variable {name} unavailable: {e}")))?;
    let v = v.trim().trim_end_matches('/').to_string();
    if !(v.starts_with("http://") || v.starts_with("https://")) {
        let not_a_url = format!("variable {name} is not an http(s) URL");
        return Err(Error::Internal(not_a_url));
    }
    Ok(v)
}

impl Config {
    pub fn load() -> Result<Self, Error> {
        Ok(Self {
            user_url: url("user_service_url")?,
            product_url: url("product_service_url")?,
            order_url: url("order_service_url")?,
            delivery_url: url("delivery_service_url")?,
        })
    }
}
