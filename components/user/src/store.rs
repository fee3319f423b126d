//! Storage: accounts and refresh tokens in PostgreSQL (`spin_sdk::pg4`), login-failure
//! windows in the `users` key-value store (`wasi:keyvalue` with compare-and-swap).

use chrono::{DateTime, NaiveDateTime, Utc};
use marketplace_shared::{Role, pg};
use serde::Serialize;
use spin_sdk::pg4::{Connection, DbValue, Decode, ParameterValue, RowSet};
use spin_sdk::wit::wasi::keyvalue::{atomics, store as wkv};
use uuid::Uuid;

use crate::domain::throttle::{Bucket, Failure, Subject, Table};
use crate::domain::{Email, REFRESH_TOKEN_TTL_SECS};
use crate::error::Error;

/// The key-value store label of the service (spin.toml).
pub const KV_LABEL: &str = "users";

/// A live account as the contract shows it, plus what login needs.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub email_normalized: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub password_hash: String,
}

/// The contract's user document: `{id, email, display_name, role, created_at}`.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: &'static str,
    pub created_at: String,
}

impl User {
    pub fn view(&self) -> UserView {
        UserView {
            id: self.id,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: self.role.as_str(),
            created_at: marketplace_shared::time::format(self.created_at),
        }
    }
}

// `timestamptz` cannot be decoded by Spin's binding; select it as UTC `timestamp`.
const USER_COLUMNS: &str = "id, email, email_normalized, display_name, role, password_hash, \
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

fn users_from(rows: &RowSet) -> Result<Vec<User>, Error> {
    rows.rows
        .iter()
        .map(|row| {
            let role: String = get(row, rows, "role")?;
            let created: NaiveDateTime = get(row, rows, "created_at")?;
            Ok(User {
                id: get(row, rows, "id")?,
                email: get(row, rows, "email")?,
                email_normalized: get(row, rows, "email_normalized")?,
                display_name: get(row, rows, "display_name")?,
                role: Role::parse(&role)
                    .ok_or_else(|| Error::Internal(format!("stored role {role}")))?,
                created_at: created.and_utc(),
                password_hash: get(row, rows, "password_hash")?,
            })
        })
        .collect()
}

fn one_user(rows: &RowSet) -> Result<Option<User>, Error> {
    Ok(users_from(rows)?.into_iter().next())
}

/// The user database, one connection per request.
pub struct Db {
    conn: Connection,
}

/// A login's refresh-token family and the hash of its newest token.
pub struct NewLogin<'a> {
    pub family_id: Uuid,
    pub token_hash: &'a [u8],
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

    fn execute(&self, sql: &str, params: &[ParameterValue]) -> Result<u64, Error> {
        Ok(self.conn.execute(sql, params)?)
    }

    /// Runs `f` inside `BEGIN` … `COMMIT` on this connection; any error rolls back.
    fn transaction<T>(&self, f: impl FnOnce(&Self) -> Result<T, Error>) -> Result<T, Error> {
        self.execute("begin", &[])?;
        match f(self) {
            Ok(v) => {
                self.execute("commit", &[])?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rollback) = self.execute("rollback", &[]) {
                    eprintln!("user: rollback failed: {rollback:?}");
                }
                Err(e)
            }
        }
    }

    pub fn ping(&self) -> Result<(), Error> {
        self.query("select 1", &[]).map(|_| ())
    }

    /// Inserts a new account; a live account with the same normalised email → `EmailTaken`
    /// (the unique index decides, so concurrent registrations cannot both succeed).
    pub fn insert_user(
        &self,
        email: &Email,
        display_name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<User, Error> {
        let rows = self.query(
            &format!(
                "insert into users (id, email, email_normalized, display_name, role, password_hash) \
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
        )?;
        one_user(&rows)?.ok_or_else(|| Error::Internal("insert returned no row".into()))
    }

    pub fn user_by_email(&self, email: &Email) -> Result<Option<User>, Error> {
        let rows = self.query(
            &format!(
                "select {USER_COLUMNS} from users \
                 where email_normalized = $1 and deleted_at is null"
            ),
            &[text(&email.normalized())],
        )?;
        one_user(&rows)
    }

    pub fn user_by_id(&self, id: Uuid) -> Result<Option<User>, Error> {
        let rows = self.query(
            &format!("select {USER_COLUMNS} from users where id = $1 and deleted_at is null"),
            &[uuid(id)],
        )?;
        one_user(&rows)
    }

    pub fn set_password_hash(&self, id: Uuid, hash: &str) -> Result<(), Error> {
        self.execute(
            "update users set password_hash = $2, updated_at = now() \
             where id = $1 and deleted_at is null",
            &[uuid(id), text(hash)],
        )
        .map(|_| ())
    }

    pub fn set_role(&self, id: Uuid, role: Role) -> Result<Option<User>, Error> {
        let rows = self.query(
            &format!(
                "update users set role = $2, updated_at = now() \
                 where id = $1 and deleted_at is null returning {USER_COLUMNS}"
            ),
            &[uuid(id), text(role.as_str())],
        )?;
        one_user(&rows)
    }

    /// Changes the display name and/or email (`None` keeps the current value).
    pub fn update_profile(
        &self,
        id: Uuid,
        display_name: Option<&str>,
        email: Option<&Email>,
    ) -> Result<Option<User>, Error> {
        let normalized = email.map(Email::normalized);
        let rows = self.query(
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
        )?;
        one_user(&rows)
    }

    /// Starts a login: a new refresh-token family holding one token.
    pub fn start_login(&self, user_id: Uuid, login: &NewLogin<'_>) -> Result<(), Error> {
        self.transaction(|db| {
            db.execute(
                "insert into refresh_families (id, user_id) values ($1, $2)",
                &[uuid(login.family_id), uuid(user_id)],
            )?;
            db.insert_refresh_token(login.family_id, login.token_hash)
        })
    }

    /// Deletes up to `batch` refresh tokens expired more than `days` ago, then up to `batch`
    /// logins older than that with no token left; returns how many rows went.
    pub fn purge_expired_logins(&self, days: i32, batch: i64) -> Result<u64, Error> {
        let tokens = self.execute(
            "delete from refresh_tokens where token_hash in (select token_hash \
             from refresh_tokens where expires_at < now() - make_interval(days => $1) \
             order by expires_at limit $2)",
            &[ParameterValue::Int32(days), ParameterValue::Int64(batch)],
        )?;
        // A family outlives its tokens by at most the retention: rotation issues each new
        // token in the family of the old one, so an old family without tokens is finished.
        let families = self.execute(
            "delete from refresh_families where id in (select f.id from refresh_families f \
             where f.created_at < now() - make_interval(days => $1) \
             and not exists (select 1 from refresh_tokens t where t.family_id = f.id) \
             order by f.created_at limit $2)",
            &[ParameterValue::Int32(days), ParameterValue::Int64(batch)],
        )?;
        Ok(tokens + families)
    }

    fn insert_refresh_token(&self, family_id: Uuid, hash: &[u8]) -> Result<(), Error> {
        self.execute(
            "insert into refresh_tokens (token_hash, family_id, expires_at) \
             values ($1, $2, now() + make_interval(secs => $3))",
            &[
                ParameterValue::Binary(hash.to_vec()),
                uuid(family_id),
                ParameterValue::Floating64(REFRESH_TOKEN_TTL_SECS as f64),
            ],
        )
        .map(|_| ())
    }

    /// Spends the token with hash `old` and, if it was live, issues `new` in its family.
    ///
    /// Single use holds under concurrency: the conditional `update … where spent_at is null`
    /// takes the row lock, so of two simultaneous rotations one spends the token and the
    /// other finds it spent, which is reuse and revokes the family.
    pub fn rotate(&self, old: &[u8], new: &[u8]) -> Result<Rotation, Error> {
        self.transaction(|db| {
            let rows = db.query(
                "update refresh_tokens t set spent_at = now(), updated_at = now() \
                 from refresh_families f \
                 where t.token_hash = $1 and t.spent_at is null and f.id = t.family_id \
                 returning t.family_id, f.user_id, \
                   (f.revoked_at is null and t.expires_at > now()) as live",
                &[ParameterValue::Binary(old.to_vec())],
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
                db.revoke_family(family)?;
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
            db.insert_refresh_token(family, new)?;
            Ok(Rotation::Rotated(user))
        })
    }

    fn revoke_family(&self, family: Uuid) -> Result<(), Error> {
        self.execute(
            "update refresh_families set revoked_at = now(), updated_at = now() \
             where id = $1 and revoked_at is null",
            &[uuid(family)],
        )
        .map(|_| ())
    }

    /// Ends the login the token belongs to (whether or not the token was still live).
    pub fn logout(&self, token_hash: &[u8]) -> Result<(), Error> {
        self.execute(
            "update refresh_families f set revoked_at = now(), updated_at = now() \
             from refresh_tokens t \
             where t.token_hash = $1 and f.id = t.family_id and f.revoked_at is null",
            &[ParameterValue::Binary(token_hash.to_vec())],
        )
        .map(|_| ())
    }

    fn revoke_all_logins(&self, user_id: Uuid) -> Result<(), Error> {
        self.execute(
            "update refresh_families set revoked_at = now(), updated_at = now() \
             where user_id = $1 and revoked_at is null",
            &[uuid(user_id)],
        )
        .map(|_| ())
    }

    /// Sets a new password hash and revokes every login of the user, atomically.
    pub fn change_password(&self, user_id: Uuid, hash: &str) -> Result<(), Error> {
        self.transaction(|db| {
            db.set_password_hash(user_id, hash)?;
            db.revoke_all_logins(user_id)
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
            db.revoke_all_logins(user_id)
        })
    }
}

/// The login-failure windows in the `users` key-value store (layout: `domain::throttle`).
///
/// Keys are `login-failures/{account,address}/<bucket>`, a fixed set; subjects are stored as
/// hashes, so no email or address is in the store in clear, and unknown emails get a window
/// too (a 429 does not reveal whether an account exists). Updates use
/// `wasi:keyvalue/atomics` compare-and-swap and always read the key back: Spin's swap can
/// report success for a write it did not make (Redis, `WATCH` aborted) and failure for one it
/// made (the test host, like Spin's `UNWATCH <key>`), so only the stored value says whether
/// our slot landed; if not, we retry on the fresh value, and no concurrent slot is lost.
/// (An increment counter alone cannot express a sliding window; a short list can.)
pub struct Throttle {
    bucket: wkv::Bucket,
}

/// A slot reserved in one window before a password check. Kept, it is the failure; a check
/// that did not happen or succeeded gives it back.
pub struct Slot {
    table: &'static Table,
    subject: Subject,
    id: u32,
}

/// What became of a compare-and-swap update.
enum Outcome<R> {
    Done,
    Refused(R),
    /// Every attempt lost a race: at least that many other writers got in first.
    Contended,
}

/// CAS attempts before giving up; each failed attempt means another writer got in first.
const CAS_ATTEMPTS: u32 = 32;

/// Longest pause after a lost race. Of N writers that read one value only one can win, so
/// without a pause N simultaneous logins from one address would need N rounds; a random pause
/// (doubling up to this) spreads them out.
const MAX_BACKOFF_MS: u64 = 64;

fn backoff(lost: u32) {
    let cap = (1u64 << lost.min(6)).min(MAX_BACKOFF_MS);
    let jitter = Uuid::new_v4().as_u64_pair().1 % (cap + 1);
    std::thread::sleep(std::time::Duration::from_millis(jitter));
}

/// `Retry-After` when a reservation loses [`CAS_ATTEMPTS`] races in a row: that many
/// simultaneous attempts on one key are an attack or a stampede, so we fail closed, briefly.
const CONTENDED_RETRY_AFTER: u64 = 5;

fn kv_err(e: wkv::Error) -> Error {
    Error::KeyValueUnavailable(format!("{e:?}"))
}

impl Throttle {
    pub fn open() -> Result<Self, Error> {
        Ok(Self {
            bucket: wkv::open(KV_LABEL).map_err(kv_err)?,
        })
    }

    fn read(&self, key: &str) -> Result<Bucket, Error> {
        let value = self.bucket.get(key).map_err(kv_err)?;
        Ok(Bucket::decode(value.as_deref()))
    }

    /// Seconds until `name` may try again in `table`, without writing; `None` when open.
    pub fn retry_after(
        &self,
        table: &'static Table,
        name: &str,
        now: i64,
    ) -> Result<Option<u64>, Error> {
        let subject = table.subject(name);
        Ok(self
            .read(&subject.key)?
            .retry_after(table.limit, subject.tag, now))
    }

    /// Reserves a slot for `name` at `now`, or answers the `Retry-After` of its full window.
    pub fn reserve(
        &self,
        table: &'static Table,
        name: &str,
        now: i64,
    ) -> Result<Result<Slot, u64>, Error> {
        let subject = table.subject(name);
        let slot = Failure {
            at: now,
            id: Uuid::new_v4().as_u64_pair().0 as u32,
        };
        let outcome = self.update(
            &subject.key,
            |b| b.reserve(table, subject.tag, slot).map(Some),
            |b| b.holds(subject.tag, slot.id),
        )?;
        Ok(match outcome {
            Outcome::Done => Ok(Slot {
                table,
                subject,
                id: slot.id,
            }),
            Outcome::Refused(retry_after) => Err(retry_after),
            Outcome::Contended => Err(CONTENDED_RETRY_AFTER),
        })
    }

    /// Gives the slot back (its check did not happen, or succeeded).
    pub fn release(&self, slot: &Slot) -> Result<(), Error> {
        let (tag, id) = (slot.subject.tag, slot.id);
        self.settle(
            slot,
            self.update::<()>(
                &slot.subject.key,
                |b| Ok(b.holds(tag, id).then(|| b.release(tag, id))),
                |b| !b.holds(tag, id),
            )?,
        );
        Ok(())
    }

    /// Forgets every failure of the slot's subject (a successful login).
    pub fn forget(&self, slot: &Slot) -> Result<(), Error> {
        let tag = slot.subject.tag;
        self.settle(
            slot,
            self.update::<()>(
                &slot.subject.key,
                |b| Ok(b.has(tag).then(|| b.forget(tag))),
                |b| !b.has(tag),
            )?,
        );
        Ok(())
    }

    /// A release that lost every race leaves the slot as a failure until it ages out: the
    /// safe side. Logged, not failed: the check it belonged to is already decided.
    fn settle(&self, slot: &Slot, outcome: Outcome<()>) {
        if let Outcome::Contended = outcome {
            eprintln!(
                "user: giving back a slot of {} lost {CAS_ATTEMPTS} races",
                slot.table.prefix
            );
        }
    }

    /// Applies `change` to the key by compare-and-swap until the value read back satisfies
    /// `landed`. `change` answers `Ok(None)` when there is nothing to write.
    fn update<R>(
        &self,
        key: &str,
        change: impl Fn(&Bucket) -> Result<Option<Bucket>, R>,
        landed: impl Fn(&Bucket) -> bool,
    ) -> Result<Outcome<R>, Error> {
        for attempt in 0..CAS_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt);
            }
            let cas = atomics::Cas::new(&self.bucket, key).map_err(kv_err)?;
            let current = cas.current().map_err(kv_err)?;
            let Some(current) = current else {
                // On Spin's SQLite store a swap of an absent key is an upsert that cannot
                // fail, so two first writers could both "win". Create the key empty first
                // (harmless if several do); from then on every swap compares. Keys are a
                // fixed set and never deleted, so this happens once per key.
                match atomics::swap(cas, &Bucket::default().encode()) {
                    Ok(()) | Err(atomics::CasError::CasFailed(_)) => continue,
                    Err(atomics::CasError::StoreError(e)) => return Err(kv_err(e)),
                }
            };
            let current = Bucket::decode(Some(&current));
            let next = match change(&current) {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(Outcome::Done),
                Err(refusal) => return Ok(Outcome::Refused(refusal)),
            };
            match atomics::swap(cas, &next.encode()) {
                // Whatever the swap reported, the stored value decides (see the type's doc).
                Ok(()) | Err(atomics::CasError::CasFailed(_)) => {}
                Err(atomics::CasError::StoreError(e)) => return Err(kv_err(e)),
            }
            if landed(&self.read(key)?) {
                return Ok(Outcome::Done);
            }
        }
        Ok(Outcome::Contended)
    }

    pub fn ping(&self) -> Result<(), Error> {
        self.bucket.exists("readyz").map(|_| ()).map_err(kv_err)
    }
}
