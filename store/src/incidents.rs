//! Events as the console searches them, with their dispatch state; the dispatch workflow's
//! writes; its audit trail and the MQTT messages written with each action.

use std::time::{Duration, SystemTime};

use crate::{Store, StoreError};

/// What an event search asks for (the API has checked the values).
#[derive(Debug, Clone, Default)]
pub struct EventSearch {
    pub from: Option<SystemTime>,
    pub to: Option<SystemTime>,
    pub camera: Option<String>,
    pub rule: Option<String>,
    pub kind: Option<String>,
    pub severity: Option<Vec<String>>,
    /// Dispatch states (alerts only).
    pub state: Option<Vec<String>>,
    /// Keyset: only events before (at, id).
    pub before: Option<(SystemTime, String)>,
    pub limit: i64,
    /// What an agency's user may see; `None`: everything.
    pub visible: Option<Visible>,
}

/// What a user of agencies sees: the events of `cameras` (those of its agencies' groups) and
/// the incidents handed over to one of `agencies`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Visible {
    pub cameras: Vec<String>,
    pub agencies: Vec<String>,
}

/// An event's dispatch row, when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchRow {
    pub state: String,
    pub assignee: Option<String>,
    pub escalations: i32,
    pub updated_at: SystemTime,
    pub updated_by: String,
}

/// An event with its dispatch state.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: String,
    pub at: SystemTime,
    pub payload: serde_json::Value,
    pub severity: String,
    pub dispatch: Option<DispatchRow>,
    /// Agencies the incident was handed over to, in order.
    pub handed_to: Vec<String>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub at: SystemTime,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// A dispatch change to apply if the incident is still as it was read.
#[derive(Debug, Clone)]
pub struct DispatchChange<'a> {
    pub event_id: &'a str,
    pub actor: &'a str,
    /// As read: state and escalations.
    pub from: (&'a str, i32),
    pub state: &'a str,
    pub assignee: Option<&'a str>,
    pub escalations: i32,
    /// The audit action (`incident.assign`, ...) and detail.
    pub action: &'a str,
    pub detail: &'a serde_json::Value,
    /// The MQTT message of the change, kept until it is in the outbox.
    pub message: &'a serde_json::Value,
    /// What to tell the source of a citizen report (`state`, `at`, ...). Queued with the
    /// change when the event is a report whose integration has a callback URL; the store adds
    /// `report_id`, `external_id`, `source` and the report's next `sequence`.
    pub callback: Option<&'a serde_json::Value>,
    /// The agency the incident is handed over to (action `incident.handover`).
    pub handover: Option<&'a str>,
}

fn event_with_dispatch(sc: &str) -> String {
    format!(
        "select e.id, e.at, e.payload, coalesce(e.payload->>'severity', 'info'),
                i.state, i.assignee, i.escalations, i.updated_at, i.updated_by,
                coalesce(i.handed_to, '{{}}')
         from {sc}.events e left join {sc}.incidents i on i.event_id = e.id"
    )
}

fn event_row(r: &tokio_postgres::Row) -> EventRow {
    let state: Option<String> = r.get(4);
    EventRow {
        id: r.get(0),
        at: r.get(1),
        payload: r.get(2),
        severity: r.get(3),
        dispatch: state.map(|state| DispatchRow {
            state,
            assignee: r.get(5),
            escalations: r.get(6),
            updated_at: r.get(7),
            updated_by: r.get(8),
        }),
        handed_to: r.get(9),
    }
}

impl Store {
    /// Events newest first, at most `limit`.
    pub async fn search_events(&self, q: &EventSearch) -> Result<Vec<EventRow>, StoreError> {
        let sc = self.schema();
        let (after_at, after_id) = match &q.before {
            Some((at, id)) => (Some(*at), Some(id.clone())),
            None => (None, None),
        };
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "{}
                     where e.at >= $1 and e.at < $2
                       and ($3::text is null or e.camera = $3)
                       and ($4::text is null or e.rule = $4)
                       and ($5::text is null or e.kind = $5)
                       and ($6::text[] is null or e.payload->>'severity' = any($6))
                       and ($7::text[] is null or (e.payload->>'severity' <> 'info'
                                                   and coalesce(i.state, 'new') = any($7)))
                       and ($8::timestamptz is null or (e.at, e.id) < ($8, $9::text))
                       and ($11::text[] is null or e.camera = any($11)
                            or coalesce(i.handed_to, '{{}}') && $12::text[])
                     order by e.at desc, e.id desc
                     limit $10",
                    event_with_dispatch(sc)
                ),
                &[
                    &q.from,
                    &q.to,
                    &q.camera,
                    &q.rule,
                    &q.kind,
                    &q.severity,
                    &q.state,
                    &after_at,
                    &after_id,
                    &q.limit,
                    &q.visible.as_ref().map(|v| v.cameras.clone()),
                    &q.visible
                        .as_ref()
                        .map_or_else(Vec::new, |v| v.agencies.clone()),
                ],
            )
            .await?;
        Ok(rows.iter().map(event_row).collect())
    }

    /// One event with its dispatch state.
    pub async fn event(&self, id: &str) -> Result<Option<EventRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!("{} where e.id = $1", event_with_dispatch(sc)),
                &[&id],
            )
            .await?
            .as_ref()
            .map(event_row))
    }

    /// The audit trail of `target` (e.g. `event:<id>`), oldest first.
    pub async fn audit_trail(&self, target: &str) -> Result<Vec<AuditRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!(
                    "select at, actor, action, detail from {sc}.audit where target = $1 order by seq"
                ),
                &[&target],
            )
            .await?
            .iter()
            .map(|r| AuditRow {
                at: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                detail: r.get(3),
            })
            .collect())
    }

    /// The other events of an incident (same camera and incident key, within a day), oldest
    /// first.
    pub async fn incident_events(
        &self,
        camera: &str,
        incident: &str,
        near: SystemTime,
        except: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!(
                    "select payload from {sc}.events where camera = $1 and at >= $2 and at < $3
                       and payload->>'incident' = $4 and id <> $5 order by at"
                ),
                &[
                    &camera,
                    &(near - Duration::from_secs(3600)),
                    &(near + Duration::from_secs(86_400)),
                    &incident,
                    &except,
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// The dispatch row of an alert, created (`new`) if it has none yet: (state, assignee,
    /// escalations).
    pub async fn open_incident(
        &self,
        event_id: &str,
        camera: &str,
        captured_at: SystemTime,
        actor: &str,
    ) -> Result<(String, Option<String>, i32), StoreError> {
        let sc = self.schema();
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "insert into {sc}.incidents (event_id, camera, captured_at, state, updated_at, updated_by)
                     values ($1, $2, $3, 'new', now(), $4) on conflict do nothing"
                ),
                &[&event_id, &camera, &captured_at, &actor],
            )
            .await?;
        let r = client
            .query_one(
                &format!(
                    "select state, assignee, escalations from {sc}.incidents where event_id = $1"
                ),
                &[&event_id],
            )
            .await?;
        Ok((r.get(0), r.get(1), r.get(2)))
    }

    /// Applies a dispatch change, its audit entry, its MQTT message and (for a citizen report)
    /// its callback in one statement, only if nobody changed the incident since it was read.
    /// Returns the message's number (for [`Store::message_sent`]), or `None` when someone else
    /// changed it first.
    pub async fn apply_dispatch(&self, c: &DispatchChange<'_>) -> Result<Option<i64>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!(
                    "with changed as (
                       update {sc}.incidents set state = $2, assignee = $3, escalations = $4,
                         updated_at = now(), updated_by = $5,
                         handed_to = case when $13::text is null then handed_to
                           else array_append(array_remove(handed_to, $13::text), $13::text) end
                       where event_id = $1 and state = $6 and escalations = $7 returning event_id),
                     audited as (
                       insert into {sc}.audit (actor, action, target, detail)
                       select $5, $8, $9, $10 from changed),
                     -- Taking the report's row (update) numbers its callbacks in order even
                     -- when two changes come at once.
                     numbered as (
                       update {sc}.reports r set callbacks = r.callbacks + 1
                       from changed, {sc}.integrations i
                       where $12::jsonb is not null and r.id = changed.event_id
                         and i.name = r.source and i.callback_url is not null
                       returning r.id, r.source, r.external_id, r.callbacks),
                     queued as (
                       insert into {sc}.report_callbacks (report_id, seq, payload)
                       select id, callbacks, $12::jsonb || jsonb_build_object(
                         'report_id', id, 'external_id', external_id, 'source', source,
                         'sequence', callbacks)
                       from numbered)
                     insert into {sc}.incident_messages (payload)
                     select $11 from changed returning id"
                ),
                &[
                    &c.event_id,
                    &c.state,
                    &c.assignee,
                    &c.escalations,
                    &c.actor,
                    &c.from.0,
                    &c.from.1,
                    &c.action,
                    &format!("event:{}", c.event_id),
                    &c.detail,
                    &c.message,
                    &c.callback,
                    &c.handover,
                ],
            )
            .await?
            .map(|r| r.get(0)))
    }

    /// Dispatch messages not yet handed to the outbox (after a crash), oldest first.
    pub async fn pending_messages(&self) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!("select id, payload from {sc}.incident_messages order by id limit 10000"),
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// The dispatch message is in the outbox.
    pub async fn message_sent(&self, id: i64) -> Result<(), StoreError> {
        let sc = self.schema();
        self.client()
            .await?
            .execute(
                &format!("delete from {sc}.incident_messages where id = $1"),
                &[&id],
            )
            .await?;
        Ok(())
    }
}
