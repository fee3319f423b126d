//! Storage edges: accounts, bootstrap-admin reservations and refresh tokens in PostgreSQL
//! (`spin_sdk::pg4` through `marketplace_shared::pg`, here); login-failure windows in the
//! `users` key-value store ([`throttle`]).

pub mod throttle;

use chrono::{DateTime, NaiveDateTime, Utc};
use marketplace_shared::{Role, pg};
use serde::{Serialize, Serializer};
use spin_sdk::pg4::{Connection, DbValue, Decode, ParameterValue, RowSet};
use uuid::Uuid;

use crate::domain::admin::Reservation;
use crate::domain::login::{EXPIRED_TOKEN_RETENTION_DAYS, PURGE_BATCH, SessionLifetime};
use crate::domain::{Email, REFRESH_TOKEN_TTL_SECS};
use crate::error::Error;

pub use throttle::{Slot, Throttle};

/// A live account. It serializes as the contract's user document (`{id, email,
/// display_name, role, created_at}`), without the hash that login needs.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub email: Email,
    pub display_name: String,
    #[serde(serialize_with = "wire_name")]
    pub role: Role,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub password_hash: String,
}

fn wire_name<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&marketplace_shared::time::format(*t))
}

// `timestamptz` cannot be decoded by Spin's binding; select it as UTC `timestamp`.
const USER_COLUMNS: &str = "id, email, display_name, role, password_hash, \
     created_at at time zone 'utc' as created_at";

fn uuid(id: Uuid) -> ParameterValue {
    ParameterValue::Uuid(id.to_string())
}

fn text(s: &str) -> ParameterValue {
    ParameterValue::Str(s.to_string())
}

fn opt_text(s: Option<&str>) -> ParameterValue {
    s.map(text).unwrap_or(ParameterValue::DbNull)
}

fn get<T: Decode>(row: &[DbValue], columns: &RowSet, name: &str) -> Result<T, Error> {
    let i = columns
        .columns
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| Error::Internal(format!("missing column {name}")))?;
    T::decode(&row[i]).map_err(|e| Error::Internal(format!("column {name}: {e}")))
}

/// The user database, one connection per request.
pub struct Db {
    conn: Connection,
}

/// What became of a refresh token presented for rotation.
pub enum Rotation {
    /// Rotated: the old token is spent and `new` belongs to the same family.
    Rotated(User),
    /// Unknown, expired, of a revoked login, or of a deleted account.
    Rejected,
    /// Already spent: its whole family is now revoked.
    Reused,
}

impl Db {
    pub fn open(url: &str) -> Result<Self, Error> {
        Ok(Self {
            conn: Connection::open(url)?,
        })
    }

    fn query(&self, sql: &str, params: &[ParameterValue]) -> Result<RowSet, Error> {
        Ok(pg::query(&self.conn, sql, params)?)
    }

    fn execute(&self, sql: &str, params: &[ParameterValue]) -> Result<(), Error> {
        self.conn.execute(sql, params)?;
        Ok(())
    }

    /// The first row of a statement that returns [`USER_COLUMNS`], as a user.
    fn user(&self, sql: &str, params: &[ParameterValue]) -> Result<Option<User>, Error> {
        let rows = self.query(sql, params)?;
        let Some(row) = rows.rows.first() else {
            return Ok(None);
        };
        let role: String = get(row, &rows, "role")?;
        let created: NaiveDateTime = get(row, &rows, "created_at")?;
        Ok(Some(User {
            id: get(row, &rows, "id")?,
            // Stored only once parsed, so it parses again.
            email: Email::parse(&get::<String>(row, &rows, "email")?)
                .map_err(|e| Error::Internal(format!("stored email: {e}")))?,
            display_name: get(row, &rows, "display_name")?,
            role: Role::parse(&role)
                .ok_or_else(|| Error::Internal(format!("stored role {role}")))?,
            created_at: created.and_utc(),
            password_hash: get(row, &rows, "password_hash")?,
        }))
    }

    fn transaction<T>(&self, f: impl FnOnce(&Self) -> Result<T, Error>) -> Result<T, Error> {
        pg::transaction(&self.conn, |_| f(self))
    }

    pub fn ping(&self) -> Result<(), Error> {
        self.query("select 1", &[]).map(|_| ())
    }

    /// A new account: concurrent registrations of one email cannot both succeed (the unique
    /// index: `EmailTaken`). With `reserve`, the bootstrap-admin reservation is taken in the
    /// same transaction (one already held: `EmailReserved`, and no account is made).
    pub fn insert_user(
        &self,
        email: &Email,
        display_name: &str,
        role: Role,
        password_hash: &str,
        reserve: bool,
    ) -> Result<User, Error> {
        let insert = |db: &Self| {
            db.user(
                &format!(
                    "insert into users \
                     (id, email, email_normalized, display_name, role, password_hash) \
                     values ($1, $2, $3, $4, $5, $6) returning {USER_COLUMNS}"
                ),
                &[
                    uuid(Uuid::now_v7()),
                    text(email.as_str()),
                    text(&email.normalized()),
                    text(display_name),
                    text(role.as_str()),
                    text(password_hash),
                ],
            )?
            .ok_or_else(|| Error::Internal("insert returned no row".into()))
        };
        if !reserve {
            return insert(self);
        }
        self.transaction(|db| {
            let user = insert(db)?;
            db.execute(
                "insert into reserved_admin_emails (email_normalized, user_id) values ($1, $2)",
                &[text(&user.email.normalized()), uuid(user.id)],
            )?;
            Ok(user)
        })
    }

    /// The reservation of a listed address, if any.
    pub fn reservation(&self, email: &Email) -> Result<Option<Reservation>, Error> {
        let rows = self.query(
            "select user_id, bootstrap_revoked_at is not null as revoked \
             from reserved_admin_emails where email_normalized = $1",
            &[text(&email.normalized())],
        )?;
        let Some(row) = rows.rows.first() else {
            return Ok(None);
        };
        let (holder, revoked) = (get(row, &rows, "user_id")?, get(row, &rows, "revoked")?);
        Ok(Some(Reservation { holder, revoked }))
    }

    /// Reserves a listed address for `user_id` unless it is reserved already; returns the
    /// reservation that holds (the first taker's, whoever won a race).
    pub fn claim_reservation(&self, email: &Email, user_id: Uuid) -> Result<Reservation, Error> {
        self.execute(
            "insert into reserved_admin_emails (email_normalized, user_id) values ($1, $2) \
             on conflict (email_normalized) do nothing",
            &[text(&email.normalized()), uuid(user_id)],
        )?;
        self.reservation(email)?
            .ok_or_else(|| Error::Internal("reservation vanished".into()))
    }

    pub fn user_by_email(&self, email: &Email) -> Result<Option<User>, Error> {
        self.user(
            &format!(
                "select {USER_COLUMNS} from users \
                 where email_normalized = $1 and deleted_at is null"
            ),
            &[text(&email.normalized())],
        )
    }

    pub fn user_by_id(&self, id: Uuid) -> Result<Option<User>, Error> {
        self.user(
            &format!("select {USER_COLUMNS} from users where id = $1 and deleted_at is null"),
            &[uuid(id)],
        )
    }

    pub fn set_password_hash(&self, id: Uuid, hash: &str) -> Result<(), Error> {
        self.execute(
            "update users set password_hash = $2, updated_at = now() \
             where id = $1 and deleted_at is null",
            &[uuid(id), text(hash)],
        )
    }

    /// Sets the role; with `revoke_bootstrap`, the account's bootstrap-admin reservations
    /// stop promoting it at login (atomically with the role).
    pub fn set_role(
        &self,
        id: Uuid,
        role: Role,
        revoke_bootstrap: bool,
    ) -> Result<Option<User>, Error> {
        self.transaction(|db| {
            let user = db.user(
                &format!(
                    "update users set role = $2, updated_at = now() \
                     where id = $1 and deleted_at is null returning {USER_COLUMNS}"
                ),
                &[uuid(id), text(role.as_str())],
            )?;
            if user.is_some() && revoke_bootstrap {
                db.execute(
                    "update reserved_admin_emails set bootstrap_revoked_at = now(), \
                     updated_at = now() where user_id = $1 and bootstrap_revoked_at is null",
                    &[uuid(id)],
                )?;
            }
            Ok(user)
        })
    }

    /// Changes the display name and/or email (`None` keeps the current value).
    pub fn update_profile(
        &self,
        id: Uuid,
        display_name: Option<&str>,
        email: Option<&Email>,
    ) -> Result<Option<User>, Error> {
        let normalized = email.map(Email::normalized);
        self.user(
            &format!(
                "update users set display_name = coalesce($2, display_name), \
                 email = coalesce($3, email), \
                 email_normalized = coalesce($4, email_normalized), updated_at = now() \
                 where id = $1 and deleted_at is null returning {USER_COLUMNS}"
            ),
            &[
                uuid(id),
                opt_text(display_name),
                opt_text(email.map(Email::as_str)),
                opt_text(normalized.as_deref()),
            ],
        )
    }

    /// Starts a login: a new refresh-token family holding one token, the one hashed `token_hash`.
    pub fn start_login(
        &self,
        user_id: Uuid,
        token_hash: &[u8],
        lifetime: SessionLifetime,
    ) -> Result<(), Error> {
        let family = Uuid::now_v7();
        self.transaction(|db| {
            db.execute(
                "insert into refresh_families (id, user_id) values ($1, $2)",
                &[uuid(family), uuid(user_id)],
            )?;
            db.insert_refresh_token(family, token_hash, lifetime)
        })
    }

    /// Retention: one batch of long-expired refresh tokens, then of logins with none left.
    pub fn purge_expired_logins(&self) -> Result<(), Error> {
        let (days, batch) = (EXPIRED_TOKEN_RETENTION_DAYS, PURGE_BATCH);
        self.execute(
            "delete from refresh_tokens where token_hash in (select token_hash \
             from refresh_tokens where expires_at < now() - make_interval(days => $1) \
             order by expires_at limit $2)",
            &[ParameterValue::Int32(days), ParameterValue::Int64(batch)],
        )?;
        // A family outlives its tokens by at most the retention: rotation issues each new
        // token in the family of the old one, so an old family without tokens is finished.
        self.execute(
            "delete from refresh_families where id in (select f.id from refresh_families f \
             where f.created_at < now() - make_interval(days => $1) \
             and not exists (select 1 from refresh_tokens t where t.family_id = f.id) \
             order by f.created_at limit $2)",
            &[ParameterValue::Int32(days), ParameterValue::Int64(batch)],
        )
    }

    /// A token of the family; capped at the login's absolute lifetime, so that no refresh
    /// extends a login past it.
    fn insert_refresh_token(
        &self,
        family_id: Uuid,
        hash: &[u8],
        lifetime: SessionLifetime,
    ) -> Result<(), Error> {
        self.execute(
            "insert into refresh_tokens (token_hash, family_id, expires_at) \
             select $1, f.id, least(now() + make_interval(secs => $3), \
               f.created_at + make_interval(secs => $4)) \
             from refresh_families f where f.id = $2",
            &[
                ParameterValue::Binary(hash.to_vec()),
                uuid(family_id),
                ParameterValue::Floating64(REFRESH_TOKEN_TTL_SECS as f64),
                ParameterValue::Floating64(lifetime.secs() as f64),
            ],
        )
    }

    /// Spends the token with hash `old` and, if it was live, issues `new` in its family. The
    /// conditional update takes the row lock, so of two simultaneous rotations one finds the
    /// token spent: reuse, which revokes the family. A login past `lifetime` is over; it is read
    /// at each refresh, so shortening it ends running logins too.
    pub fn rotate(
        &self,
        old: &[u8],
        new: &[u8],
        lifetime: SessionLifetime,
    ) -> Result<Rotation, Error> {
        self.transaction(|db| {
            let rows = db.query(
                "update refresh_tokens t set spent_at = now(), updated_at = now() \
                 from refresh_families f \
                 where t.token_hash = $1 and t.spent_at is null and f.id = t.family_id \
                 returning t.family_id, f.user_id, (f.revoked_at is null \
                   and t.expires_at > now() \
                   and f.created_at + make_interval(secs => $2) > now()) as live",
                &[
                    ParameterValue::Binary(old.to_vec()),
                    ParameterValue::Floating64(lifetime.secs() as f64),
                ],
            )?;
            let Some(row) = rows.rows.first() else {
                let spent = db.query(
                    "select family_id from refresh_tokens where token_hash = $1",
                    &[ParameterValue::Binary(old.to_vec())],
                )?;
                let Some(row) = spent.rows.first() else {
                    return Ok(Rotation::Rejected);
                };
                let family: Uuid = get(row, &spent, "family_id")?;
                db.revoke_logins("id", family)?;
                return Ok(Rotation::Reused);
            };
            let family: Uuid = get(row, &rows, "family_id")?;
            let user_id: Uuid = get(row, &rows, "user_id")?;
            let live: bool = get(row, &rows, "live")?;
            if !live {
                return Ok(Rotation::Rejected);
            }
            let Some(user) = db.user_by_id(user_id)? else {
                return Ok(Rotation::Rejected);
            };
            db.insert_refresh_token(family, new, lifetime)?;
            Ok(Rotation::Rotated(user))
        })
    }

    /// Ends the login the token belongs to (whether or not the token was still live).
    pub fn logout(&self, token_hash: &[u8]) -> Result<(), Error> {
        self.execute(
            "update refresh_families f set revoked_at = now(), updated_at = now() \
             from refresh_tokens t \
             where t.token_hash = $1 and f.id = t.family_id and f.revoked_at is null",
            &[ParameterValue::Binary(token_hash.to_vec())],
        )
    }

    /// Revokes the logins whose `column` (`id`: one family, `user_id`: all of a user) is `id`.
    fn revoke_logins(&self, column: &'static str, id: Uuid) -> Result<(), Error> {
        self.execute(
            &format!(
                "update refresh_families set revoked_at = now(), updated_at = now() \
                 where {column} = $1 and revoked_at is null"
            ),
            &[uuid(id)],
        )
    }

    /// Sets a new password hash and revokes every login of the user, atomically.
    pub fn change_password(&self, user_id: Uuid, hash: &str) -> Result<(), Error> {
        self.transaction(|db| {
            db.set_password_hash(user_id, hash)?;
            db.revoke_logins("user_id", user_id)
        })
    }

    /// Erases the account's personal data (the row and id stay, for orders that refer to
    /// it), frees its email and revokes every login, atomically.
    pub fn delete_account(&self, user_id: Uuid) -> Result<(), Error> {
        self.transaction(|db| {
            db.execute(
                "update users set email = null, email_normalized = null, display_name = null, \
                 password_hash = null, deleted_at = now(), updated_at = now() \
                 where id = $1 and deleted_at is null",
                &[uuid(user_id)],
            )?;
            db.revoke_logins("user_id", user_id)
        })
    }
}
