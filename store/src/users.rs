//! Users, sessions and the audit trail, for the console's API. Roles are kept as text here;
//! the API owns what they allow.

use std::time::SystemTime;

use crate::{Store, StoreError};

/// A user as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    /// The agencies it belongs to; empty: every camera.
    pub agencies: Vec<String>,
    pub disabled: bool,
    pub created_at: SystemTime,
}

/// What changes for a user; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate<'a> {
    pub role: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub disabled: Option<bool>,
    pub agencies: Option<&'a [String]>,
}

impl Store {
    /// The user (name, role, agencies) of a live session, by the SHA-256 of its token.
    pub async fn session_user(
        &self,
        token_sha256: &str,
    ) -> Result<Option<(String, String, Vec<String>)>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!(
                    "select u.name, u.role, u.agencies from {sc}.sessions s join {sc}.users u on u.name = s.user_name
                     where s.token_sha256 = $1 and s.expires_at > now() and not u.disabled"
                ),
                &[&token_sha256],
            )
            .await?
            .map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// Creates the user or sets its role, password and agencies (enabling it); true when
    /// created. A changed password ends the user's sessions, in the same transaction.
    pub async fn upsert_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        agencies: &[String],
    ) -> Result<bool, StoreError> {
        let sc = self.schema();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let created: bool = tx
            .query_one(
                &format!(
                    "insert into {sc}.users (name, role, password_hash, agencies) values ($1, $2, $3, $4)
                     on conflict (name) do update set role = excluded.role,
                       password_hash = excluded.password_hash, agencies = excluded.agencies,
                       disabled = false
                     returning (xmax = 0)"
                ),
                &[&name, &role, &password_hash, &agencies],
            )
            .await?
            .get(0);
        if !created {
            tx.execute(
                &format!("delete from {sc}.sessions where user_name = $1"),
                &[&name],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// A user's role, password hash and whether it is disabled, enabled or not.
    pub async fn user_secret(
        &self,
        name: &str,
    ) -> Result<Option<(String, String, bool)>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!("select role, password_hash, disabled from {sc}.users where name = $1"),
                &[&name],
            )
            .await?
            .map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// Creates a user of `agencies` (none: every camera); false when the name is taken.
    pub async fn create_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        agencies: &[String],
    ) -> Result<bool, StoreError> {
        let sc = self.schema();
        let n = self
            .client()
            .await?
            .execute(
                &format!("insert into {sc}.users (name, role, password_hash, agencies) values ($1, $2, $3, $4) on conflict do nothing"),
                &[&name, &role, &password_hash, &agencies],
            )
            .await?;
        Ok(n == 1)
    }

    /// Role and password hash of an enabled user, for a login.
    pub async fn login_user(&self, name: &str) -> Result<Option<(String, String)>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!(
                    "select role, password_hash from {sc}.users where name = $1 and not disabled"
                ),
                &[&name],
            )
            .await?
            .map(|r| (r.get(0), r.get(1))))
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!("select name, role, disabled, created_at, agencies from {sc}.users order by name"),
                &[],
            )
            .await?
            .iter()
            .map(|r| UserRow {
                name: r.get(0),
                role: r.get(1),
                agencies: r.get(4),
                disabled: r.get(2),
                created_at: r.get(3),
            })
            .collect())
    }

    /// Changes a user; false when there is no such user. A new password or disabling ends the
    /// user's sessions.
    pub async fn update_user(&self, name: &str, u: UserUpdate<'_>) -> Result<bool, StoreError> {
        let sc = self.schema();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                &format!(
                    "update {sc}.users set role = coalesce($2, role), password_hash = coalesce($3, password_hash),
                       disabled = coalesce($4, disabled), agencies = coalesce($5, agencies)
                     where name = $1"
                ),
                &[&name, &u.role, &u.password_hash, &u.disabled, &u.agencies],
            )
            .await?;
        if n > 0 && (u.password_hash.is_some() || u.disabled == Some(true) || u.agencies.is_some())
        {
            tx.execute(
                &format!("delete from {sc}.sessions where user_name = $1"),
                &[&name],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Deletes a user (and its sessions); false when there is no such user.
    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let sc = self.schema();
        let n = self
            .client()
            .await?
            .execute(&format!("delete from {sc}.users where name = $1"), &[&name])
            .await?;
        Ok(n > 0)
    }

    /// Whether `name` is an enabled admin, and how many other enabled admins there are.
    pub async fn admin_standing(&self, name: &str) -> Result<(bool, i64), StoreError> {
        let sc = self.schema();
        let row = self
            .client()
            .await?
            .query_one(
                &format!(
                    "select exists (select 1 from {sc}.users where name = $1 and role = 'admin' and not disabled),
                            (select count(*) from {sc}.users where role = 'admin' and not disabled and name <> $1)"
                ),
                &[&name],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Starts a session until `expires` (and clears expired ones).
    pub async fn create_session(
        &self,
        token_sha256: &str,
        user: &str,
        expires: SystemTime,
    ) -> Result<(), StoreError> {
        let sc = self.schema();
        let client = self.client().await?;
        client
            .batch_execute(&format!(
                "delete from {sc}.sessions where expires_at < now()"
            ))
            .await?;
        client
            .execute(
                &format!("insert into {sc}.sessions (token_sha256, user_name, expires_at) values ($1, $2, $3)"),
                &[&token_sha256, &user, &expires],
            )
            .await?;
        Ok(())
    }

    /// Ends a session.
    pub async fn delete_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        let sc = self.schema();
        self.client()
            .await?
            .execute(
                &format!("delete from {sc}.sessions where token_sha256 = $1"),
                &[&token_sha256],
            )
            .await?;
        Ok(())
    }

    /// One audit entry.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let sc = self.schema();
        self.client()
            .await?
            .execute(
                &format!(
                    "insert into {sc}.audit (actor, action, target, detail) values ($1, $2, $3, $4)"
                ),
                &[&actor, &action, &target, &detail],
            )
            .await?;
        Ok(())
    }

    /// Snoozes `rule` on `camera` until `until` (replacing an earlier snooze of the same).
    pub async fn snooze(
        &self,
        camera: &str,
        rule: &str,
        until: SystemTime,
        by: &str,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let sc = self.schema();
        self.client()
            .await?
            .execute(
                &format!(
                    "insert into {sc}.snoozes (camera, rule, until, by_user, note) values ($1, $2, $3, $4, $5)
                     on conflict (camera, rule) do update set until = excluded.until,
                       by_user = excluded.by_user, note = excluded.note, created_at = now()"
                ),
                &[&camera, &rule, &until, &by, &note],
            )
            .await?;
        Ok(())
    }

    /// Ends a snooze early; false when there was none running.
    pub async fn unsnooze(&self, camera: &str, rule: &str) -> Result<bool, StoreError> {
        let sc = self.schema();
        let n = self
            .client()
            .await?
            .execute(
                &format!(
                    "update {sc}.snoozes set until = now() where camera = $1 and rule = $2 and until > now()"
                ),
                &[&camera, &rule],
            )
            .await?;
        Ok(n > 0)
    }

    /// Snoozes running now.
    pub async fn snoozes(&self) -> Result<Vec<SnoozeRow>, StoreError> {
        let sc = self.schema();
        Ok(self
            .client()
            .await?
            .query(
                &format!(
                    "select camera, rule, until, by_user, note from {sc}.snoozes where until > now()
                     order by camera, rule"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| SnoozeRow {
                camera: r.get(0),
                rule: r.get(1),
                until: r.get(2),
                by: r.get(3),
                note: r.get(4),
            })
            .collect())
    }
}

/// A rule snoozed on a camera.
#[derive(Debug, Clone, PartialEq)]
pub struct SnoozeRow {
    pub camera: String,
    pub rule: String,
    pub until: SystemTime,
    pub by: String,
    pub note: Option<String>,
}
