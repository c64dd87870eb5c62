//! The API's store: connected (and migrated) on first use, then a pool of connections that
//! replaces lost ones, so a database restart never needs a pantau restart and one slow query
//! holds up only its own request.

use std::sync::Arc;
use std::time::Duration;

use pantau_store::Store;

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
        // The pool replaces lost connections itself; only the first connection (and the
        // migrations) happens here.
        if let Some(s) = current.as_ref() {
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
