//! Status callbacks to a report's source: what the store queued with each dispatch change,
//! POSTed to the integration's callback URL, signed, in sequence per report, again and again
//! with growing waits until the source answers 2xx or the callback is too old.
//!
//! The signature: `X-Pantau-Timestamp` is the Unix time in seconds of the attempt and
//! `X-Pantau-Signature` is `sha256=` and the lowercase hex HMAC-SHA256, keyed with the
//! integration's callback secret (its ASCII text), of the timestamp, a `.` and the exact body.
//! A receiver recomputes it, compares in constant time, and refuses timestamps more than a few
//! minutes from its clock, so a recorded callback cannot be replayed later.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, Request, Uri};
use futures_util::StreamExt as _;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::body::Bytes;
use pantau_config::config::ReportsConfig;
use pantau_store::{CallbackDue, Store};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::Db;

/// The header with the attempt's Unix time, seconds.
pub const TIMESTAMP_HEADER: &str = "x-pantau-timestamp";
/// The header with the signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-pantau-signature";

/// How callbacks are delivered (`[reports]`).
#[derive(Debug, Clone)]
pub struct CallbackSettings {
    /// One attempt, connecting included.
    pub timeout: Duration,
    /// The wait after the first failure; it doubles with each further one...
    pub retry_initial: Duration,
    /// ...up to this.
    pub retry_max: Duration,
    /// A callback not delivered this long after it was made is given up.
    pub max_age: Duration,
    /// How often the queue is looked at.
    pub poll: Duration,
}

impl CallbackSettings {
    pub fn from_config(c: &ReportsConfig) -> Self {
        Self {
            timeout: Duration::from_secs(c.callback_timeout_s.into()),
            retry_initial: Duration::from_secs(c.callback_retry_initial_s.into()),
            retry_max: Duration::from_secs(c.callback_retry_max_s.into()),
            max_age: Duration::from_secs(u64::from(c.callback_max_age_h) * 3600),
            poll: Duration::from_secs(1),
        }
    }

    /// The wait before attempt `attempts + 1`, after `attempts` failures (at least one).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.retry_initial
            .saturating_mul(factor)
            .min(self.retry_max)
    }
}

/// `sha256=<hex>` of the HMAC-SHA256 of `<timestamp>.<body>` with `secret`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", crate::auth::hex(&mac.finalize().into_bytes()))
}

/// Delivers queued callbacks until `shutdown`: every `settings.poll`, the callbacks whose turn
/// it is, a few at once (each report's in sequence). The node spawns this beside the API when
/// a store is configured; it connects through `db` as the API does, and waits while the
/// database is away.
pub async fn deliver_callbacks(
    db: Arc<Db>,
    settings: CallbackSettings,
    shutdown: CancellationToken,
) {
    let mut wait = settings.poll;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let store = match db.store().await {
            Ok(s) => s,
            Err(_) => {
                // Db::store has logged why; look again later, not every poll.
                wait = (wait * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        match deliver_due(&store, &settings).await {
            Ok(_) => wait = settings.poll,
            Err(e) => {
                if wait == settings.poll {
                    tracing::warn!("report callbacks wait for the database: {e}");
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One round: every callback whose turn it is, up to 8 at once. Returns how many were
/// delivered.
pub async fn deliver_due(
    store: &Store,
    settings: &CallbackSettings,
) -> Result<usize, pantau_store::StoreError> {
    let due = store.due_callbacks(64).await?;
    let results: Vec<Result<bool, pantau_store::StoreError>> = futures_util::stream::iter(due)
        .map(|c| deliver_one(store, settings, c))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut delivered = 0;
    for r in results {
        if r? {
            delivered += 1;
        }
    }
    Ok(delivered)
}

/// Tries one callback; true when the source acknowledged it.
async fn deliver_one(
    store: &Store,
    settings: &CallbackSettings,
    c: CallbackDue,
) -> Result<bool, pantau_store::StoreError> {
    let body = serde_json::to_vec(&c.payload).unwrap_or_default();
    let outcome = match &c.url {
        Some(url) => post_signed(url, &c.secret, body, settings.timeout).await,
        None => Err("the integration has no callback URL".to_string()),
    };
    let error = match outcome {
        Ok(()) => {
            store.callback_delivered(c.id).await?;
            if c.attempts > 0 {
                tracing::info!(report = %c.report_id, seq = c.seq, attempts = c.attempts + 1, "report callback delivered");
            }
            return Ok(true);
        }
        Err(e) => e,
    };
    let age = SystemTime::now()
        .duration_since(c.created_at)
        .unwrap_or_default();
    if age >= settings.max_age {
        tracing::error!(
            report = %c.report_id, seq = c.seq, attempts = c.attempts + 1,
            "report callback given up after {} h, kept in report_callbacks as dead: {error}",
            age.as_secs() / 3600
        );
        store.callback_dead(c.id, &error).await?;
        return Ok(false);
    }
    let attempts = u32::try_from(c.attempts + 1).unwrap_or(u32::MAX);
    let wait = settings.backoff(attempts);
    if attempts == 1 {
        // Later failures of the same callback are only counted in the table.
        tracing::warn!(
            report = %c.report_id, seq = c.seq,
            "report callback failed, trying again with growing waits: {error}"
        );
    }
    store
        .callback_failed(c.id, &error, SystemTime::now() + wait)
        .await?;
    Ok(false)
}

/// POSTs `body` (JSON) to `url` with the signature headers; `Ok` on a 2xx answer.
pub async fn post_signed(
    url: &str,
    secret: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let signature = signature(secret, timestamp, &body);
    let attempt = async {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("the callback URL is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the callback URL is not http(s)".to_string()),
        };
        let authority = uri
            .authority()
            .ok_or("the callback URL has no host")?
            .clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::post(path)
            .header(header::HOST, authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "pantau")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        // Only the status matters; the answer (and with it the connection) is dropped.
        let status = crate::client::send(host, port, https, request)
            .await?
            .status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the callback URL answered {status}"))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs_f64())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let s = CallbackSettings {
            timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
            poll: Duration::from_secs(1),
        };
        let waits: Vec<u64> = (1..=6).map(|a| s.backoff(a).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(s.backoff(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        // RFC 4231 test case 2 layout: key "Jefe"; here with pantau's message layout.
        let a = signature("Jefe", 1_700_000_000, b"{\"state\":\"closed\"}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64, "{a}");
        assert_ne!(
            a,
            signature("Jefe", 1_700_000_001, b"{\"state\":\"closed\"}")
        );
        assert_ne!(
            a,
            signature("Jefe", 1_700_000_000, b"{\"state\":\"closed\"} ")
        );
        assert_ne!(
            a,
            signature("jefe", 1_700_000_000, b"{\"state\":\"closed\"}")
        );
        // The known HMAC of RFC 4231 case 2, through the same function's parts.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            crate::auth::hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
