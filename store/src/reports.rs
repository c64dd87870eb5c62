//! Citizen reports: integrations and their keys, reports (each also a `citizen_report` event),
//! the status callbacks owed to a report's source, and links between events that are one
//! incident. The API owns what the values mean; this module only keeps them.

use std::time::SystemTime;

use pantau_events::Event;

use crate::{Flavour, Store, StoreError};

/// A new integration. The key itself is never stored, only its SHA-256.
#[derive(Debug, Clone)]
pub struct NewIntegration<'a> {
    pub name: &'a str,
    pub key_sha256: &'a str,
    /// The first characters of the key, to tell keys apart in lists.
    pub key_prefix: &'a str,
    pub callback_url: Option<&'a str>,
    pub callback_secret: &'a str,
    pub created_by: &'a str,
}

/// An integration as listed (never the key's hash or the secret).
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRow {
    pub name: String,
    pub key_prefix: String,
    pub callback_url: Option<String>,
    pub created_by: String,
    pub created_at: SystemTime,
    pub disabled: bool,
}

/// A report to keep, with its event.
#[derive(Debug, Clone)]
pub struct NewReport<'a> {
    pub source: &'a str,
    pub external_id: &'a str,
    pub category: &'a str,
    pub text: &'a str,
    pub latitude: f64,
    pub longitude: f64,
    /// File names in the reports folder, in the order sent.
    pub photos: &'a [String],
    /// The matched cameras (id, distance_m), nearest first.
    pub cameras: &'a serde_json::Value,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// The id of its `citizen_report` event.
    pub id: String,
    pub source: String,
    pub external_id: String,
    pub category: String,
    pub text: String,
    pub reported_at: SystemTime,
    pub latitude: f64,
    pub longitude: f64,
    pub photos: Vec<String>,
    pub cameras: serde_json::Value,
    pub received_at: SystemTime,
}

/// A callback whose turn it is: the oldest one not yet delivered of its report.
#[derive(Debug, Clone)]
pub struct CallbackDue {
    pub id: i64,
    pub report_id: String,
    pub seq: i32,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub created_at: SystemTime,
    pub url: Option<String>,
    pub secret: String,
}

/// A callback as kept, for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackRow {
    pub seq: i32,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub delivered_at: Option<SystemTime>,
    pub dead_at: Option<SystemTime>,
    pub last_error: Option<String>,
}

/// An event linked to another as the same incident.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    /// The other event.
    pub event_id: String,
    pub linked_by: String,
    pub linked_at: SystemTime,
}

fn report_row(r: &tokio_postgres::Row) -> ReportRow {
    ReportRow {
        id: r.get(0),
        source: r.get(1),
        external_id: r.get(2),
        category: r.get(3),
        text: r.get(4),
        reported_at: r.get(5),
        latitude: r.get(6),
        longitude: r.get(7),
        photos: r.get(8),
        cameras: r.get(9),
        received_at: r.get(10),
    }
}

const REPORT_COLUMNS: &str = "id, source, external_id, category, text, reported_at, latitude, \
                              longitude, photos, cameras, received_at";

impl Store {
    /// Creates an integration; false when the name is taken.
    pub async fn create_integration(&self, i: &NewIntegration<'_>) -> Result<bool, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .execute(
                &format!(
                    "insert into {sc}.integrations
                       (name, key_sha256, key_prefix, callback_url, callback_secret, created_by)
                     values ($1, $2, $3, $4, $5, $6) on conflict (name) do nothing"
                ),
                &[
                    &i.name,
                    &i.key_sha256,
                    &i.key_prefix,
                    &i.callback_url,
                    &i.callback_secret,
                    &i.created_by,
                ],
            )
            .await?
            == 1)
    }

    /// Every integration, by name.
    pub async fn integrations(&self) -> Result<Vec<IntegrationRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!(
                    "select name, key_prefix, callback_url, created_by, created_at, disabled
                     from {sc}.integrations order by name"
                ),
                &[],
            )
            .await?
            .iter()
            .map(integration_row)
            .collect())
    }

    /// The integration whose key has this SHA-256, enabled or not.
    pub async fn integration_by_key(
        &self,
        key_sha256: &str,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!(
                    "select name, key_prefix, callback_url, created_by, created_at, disabled
                     from {sc}.integrations where key_sha256 = $1"
                ),
                &[&key_sha256],
            )
            .await?
            .as_ref()
            .map(integration_row))
    }

    /// Disables or enables an integration's key; false when there is no such integration.
    pub async fn set_integration_disabled(
        &self,
        name: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .execute(
                &format!("update {sc}.integrations set disabled = $2 where name = $1"),
                &[&name, &disabled],
            )
            .await?
            == 1)
    }

    /// Keeps a report and its event in one transaction. False when the source sent this
    /// `external_id` before: nothing is written and the first report stands
    /// ([`Store::report_by_external_id`]).
    pub async fn insert_report(
        &self,
        r: &NewReport<'_>,
        event: &Event,
    ) -> Result<bool, StoreError> {
        if self.flavour() == Flavour::Postgres {
            self.ensure_partitions(event.captured_at, event.captured_at)
                .await?;
        }
        let sc = self.schema().to_string();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = event.id.to_string();
        let inserted = tx
            .execute(
                &format!(
                    "insert into {sc}.reports (id, source, external_id, category, text,
                       reported_at, latitude, longitude, photos, cameras)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     on conflict (source, external_id) do nothing"
                ),
                &[
                    &id,
                    &r.source,
                    &r.external_id,
                    &r.category,
                    &r.text,
                    &event.captured_at,
                    &r.latitude,
                    &r.longitude,
                    &r.photos,
                    &r.cameras,
                ],
            )
            .await?
            == 1;
        if !inserted {
            return Ok(false);
        }
        let payload = serde_json::to_value(event).map_err(|e| StoreError::Db(e.to_string()))?;
        tx.execute(
            &format!(
                "insert into {sc}.events (id, at, camera, site, rule, kind, class, payload)
                 values ($1, $2, $3, $4, $5, $6, null, $7) on conflict do nothing"
            ),
            &[
                &id,
                &event.captured_at,
                &event.camera,
                &event.site,
                &event.rule,
                &event.kind.as_str(),
                &payload,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The report a source sent with this id.
    pub async fn report_by_external_id(
        &self,
        source: &str,
        external_id: &str,
    ) -> Result<Option<ReportRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!(
                    "select {REPORT_COLUMNS} from {sc}.reports
                     where source = $1 and external_id = $2"
                ),
                &[&source, &external_id],
            )
            .await?
            .as_ref()
            .map(report_row))
    }

    /// One report by its (event) id.
    pub async fn report(&self, id: &str) -> Result<Option<ReportRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!("select {REPORT_COLUMNS} from {sc}.reports where id = $1"),
                &[&id],
            )
            .await?
            .as_ref()
            .map(report_row))
    }

    /// Callbacks whose turn it is, at most `limit`: due, not delivered or given up, and the
    /// first such one of their report (a report's callbacks go out in sequence).
    pub async fn due_callbacks(&self, limit: i64) -> Result<Vec<CallbackDue>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!(
                    "select c.id, c.report_id, c.seq, c.payload, c.attempts, c.created_at,
                            i.callback_url, i.callback_secret
                     from {sc}.report_callbacks c
                     join {sc}.reports r on r.id = c.report_id
                     join {sc}.integrations i on i.name = r.source
                     where c.delivered_at is null and c.dead_at is null
                       and c.next_attempt_at <= now()
                       and not exists (
                         select 1 from {sc}.report_callbacks p
                         where p.report_id = c.report_id and p.seq < c.seq
                           and p.delivered_at is null and p.dead_at is null)
                     order by c.next_attempt_at, c.id
                     limit $1"
                ),
                &[&limit],
            )
            .await?
            .iter()
            .map(|r| CallbackDue {
                id: r.get(0),
                report_id: r.get(1),
                seq: r.get(2),
                payload: r.get(3),
                attempts: r.get(4),
                created_at: r.get(5),
                url: r.get(6),
                secret: r.get(7),
            })
            .collect())
    }

    /// The source acknowledged the callback.
    pub async fn callback_delivered(&self, id: i64) -> Result<(), StoreError> {
        let sc = self.schema();
        self.client()
            .await?
            .execute(
                &format!(
                    "update {sc}.report_callbacks set delivered_at = now(),
                       attempts = attempts + 1, last_error = null where id = $1"
                ),
                &[&id],
            )
            .await?;
        Ok(())
    }

    /// The callback failed; it is tried again at `next`.
    pub async fn callback_failed(
        &self,
        id: i64,
        error: &str,
        next: SystemTime,
    ) -> Result<(), StoreError> {
        let sc = self.schema();
        self.client()
            .await?
            .execute(
                &format!(
                    "update {sc}.report_callbacks set attempts = attempts + 1,
                       last_error = $2, next_attempt_at = $3 where id = $1"
                ),
                &[&id, &error, &next],
            )
            .await?;
        Ok(())
    }

    /// The callback is given up (too old): kept, marked dead.
    pub async fn callback_dead(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let sc = self.schema();
        self.client()
            .await?
            .execute(
                &format!(
                    "update {sc}.report_callbacks set dead_at = now(), last_error = $2
                     where id = $1"
                ),
                &[&id, &error],
            )
            .await?;
        Ok(())
    }

    /// A report's callbacks in sequence.
    pub async fn callbacks_of(&self, report_id: &str) -> Result<Vec<CallbackRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!(
                    "select seq, payload, attempts, delivered_at, dead_at, last_error
                     from {sc}.report_callbacks where report_id = $1 order by seq"
                ),
                &[&report_id],
            )
            .await?
            .iter()
            .map(|r| CallbackRow {
                seq: r.get(0),
                payload: r.get(1),
                attempts: r.get(2),
                delivered_at: r.get(3),
                dead_at: r.get(4),
                last_error: r.get(5),
            })
            .collect())
    }

    /// Links two events as one incident, with an audit entry on each, in one statement. False
    /// when they were linked already (nothing is written).
    pub async fn link_events(
        &self,
        a: &str,
        b: &str,
        actor: &str,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sc = self.schema();
        let (first, second) = if a < b { (a, b) } else { (b, a) };
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!(
                    "with linked as (
                       insert into {sc}.incident_links (event_a, event_b, linked_by)
                       values ($1, $2, $3) on conflict do nothing returning 1),
                     audited as (
                       insert into {sc}.audit (actor, action, target, detail)
                       select $3, 'incident.link', 'event:' || t.id,
                              jsonb_build_object('with', t.other, 'note', $4::text)
                       from linked, (values ($1, $2), ($2, $1)) as t (id, other))
                     select 1 from linked"
                ),
                &[&first, &second, &actor, &note],
            )
            .await?
            .is_some())
    }

    /// The events linked to `id`, oldest link first.
    pub async fn links_of(&self, id: &str) -> Result<Vec<LinkRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!(
                    "select case when event_a = $1 then event_b else event_a end, linked_by,
                            linked_at
                     from {sc}.incident_links where event_a = $1 or event_b = $1
                     order by linked_at"
                ),
                &[&id],
            )
            .await?
            .iter()
            .map(|r| LinkRow {
                event_id: r.get(0),
                linked_by: r.get(1),
                linked_at: r.get(2),
            })
            .collect())
    }
}

fn integration_row(r: &tokio_postgres::Row) -> IntegrationRow {
    IntegrationRow {
        name: r.get(0),
        key_prefix: r.get(1),
        callback_url: r.get(2),
        created_by: r.get(3),
        created_at: r.get(4),
        disabled: r.get(5),
    }
}
