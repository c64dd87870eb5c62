//! Evidence clips marked "keep" by dispatch: retention leaves them alone.

use std::collections::HashSet;
use std::time::SystemTime;

use crate::{Store, StoreError};

impl Store {
    /// Marks clip `clip` (`camera/date/clip`) of event `event_id` kept (or not) by `by`, with
    /// its audit entry in the same transaction.
    pub async fn keep_clip(
        &self,
        clip: &str,
        event_id: &str,
        by: &str,
        keep: bool,
    ) -> Result<(), StoreError> {
        let sc = self.schema();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if keep {
            tx.execute(
                &format!(
                    "insert into {sc}.evidence_keep (clip, event_id, kept_by) values ($1, $2, $3)
                     on conflict (clip, event_id) do update set kept_by = $3, kept_at = now()"
                ),
                &[&clip, &event_id, &by],
            )
            .await?;
        } else {
            tx.execute(
                &format!("delete from {sc}.evidence_keep where clip = $1 and event_id = $2"),
                &[&clip, &event_id],
            )
            .await?;
        }
        let detail = serde_json::json!({ "clip": clip, "keep": keep });
        tx.execute(
            &format!(
                "insert into {sc}.audit (actor, action, target, detail) values ($1, $2, $3, $4)"
            ),
            &[
                &by,
                &if keep {
                    "evidence.keep"
                } else {
                    "evidence.release"
                },
                &format!("event:{event_id}"),
                &detail,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who kept the clip for event `event_id` and when, if it is kept.
    pub async fn clip_kept(
        &self,
        clip: &str,
        event_id: &str,
    ) -> Result<Option<(String, SystemTime)>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!(
                    "select kept_by, kept_at from {sc}.evidence_keep where clip = $1 and event_id = $2"
                ),
                &[&clip, &event_id],
            )
            .await?
            .map(|r| (r.get(0), r.get(1))))
    }

    /// Every clip some incident keeps.
    pub async fn kept_clips(&self) -> Result<HashSet<String>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!("select distinct clip from {sc}.evidence_keep"),
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }
}
