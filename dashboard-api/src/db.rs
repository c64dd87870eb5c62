//! The API's connection to the store: connected on first use and again after the database
//! went away, so a database restart never needs a pantau restart.

use std::sync::Arc;
use std::time::Duration;

use pantau_sinks::store::Store;

use crate::error::ApiError;

#[derive(Debug)]
pub struct Db {
    url: String,
    schema: String,
    current: tokio::sync::Mutex<Option<Arc<Store>>>,
}

impl Db {
    /// Does not connect yet; the first request (or [`Db::store`]) does.
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: schema.into(),
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The open store, connecting (and migrating) when there is none or the last one closed.
    pub async fn store(&self) -> Result<Arc<Store>, ApiError> {
        let mut current = self.current.lock().await;
        if let Some(s) = current.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        match tokio::time::timeout(
            Duration::from_secs(5),
            Store::connect(&self.url, &self.schema),
        )
        .await
        {
            Ok(Ok(s)) => {
                let s = Arc::new(s);
                *current = Some(s.clone());
                Ok(s)
            }
            Ok(Err(e)) => Err(ApiError::store(e)),
            Err(_) => Err(ApiError::store("connecting took more than 5 s")),
        }
    }
}
