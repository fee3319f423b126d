//! The login-failure windows in the `users` key-value store (layout and rules:
//! `domain::throttle`). Every write is a compare-and-swap read back (`marketplace_shared::kv`):
//! only the stored value says whether our slot landed; if not, we retry on the fresh value, and
//! no concurrent slot is lost.

use marketplace_shared::kv::{self, KvError, Step};
use spin_sdk::wit::wasi::keyvalue::atomics as wkv_atomics;
use spin_sdk::wit::wasi::keyvalue::store as wkv;
use uuid::Uuid;

use crate::domain::login::Fate;
use crate::domain::throttle::{Bucket, Failure, Subject, Table};
use crate::error::Error;

/// The key-value store label of the service (spin.toml).
pub const KV_LABEL: &str = "users";

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

/// What became of a compare-and-swap update (or of one round of it).
enum Outcome<R> {
    Done,
    Refused(R),
    /// Every attempt lost a race: at least that many other writers got in first.
    Contended,
    /// (One round only.) The key was absent: it is created empty, once (see `update`).
    Absent,
}

/// CAS attempts before giving up; each failed attempt means another writer got in first.
const CAS_ATTEMPTS: u32 = 32;

/// Rounds a writer waits for another to create an absent key before creating it itself.
const CREATE_PATIENCE: u32 = 8;

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

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        Error::KeyValueUnavailable(e.0)
    }
}

/// A failed `what` on the store, for `map_err`.
fn failed<E: std::fmt::Debug>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::KeyValueUnavailable(format!("{what}: {e:?}"))
}

impl Throttle {
    pub fn open() -> Result<Self, Error> {
        Ok(Self {
            bucket: wkv::open(KV_LABEL).map_err(failed("open"))?,
        })
    }

    /// Seconds until `name` may try again in `table`, without writing; `None` when open.
    pub fn retry_after(
        &self,
        table: &'static Table,
        name: &str,
        now: i64,
    ) -> Result<Option<u64>, Error> {
        let subject = table.subject(name);
        let value = self.bucket.get(&subject.key).map_err(failed("get"))?;
        let bucket = Bucket::decode(value.as_deref());
        Ok(bucket.retry_after(table.limit, subject.tag, now))
    }

    /// Reserves a slot for `name` at `now`, or answers the `Retry-After` of its full window.
    pub fn reserve(
        &self,
        table: &'static Table,
        name: &str,
        now: i64,
    ) -> Result<Result<Slot, u64>, Error> {
        let subject = table.subject(name);
        let id = Uuid::new_v4().as_u64_pair().0 as u32;
        let outcome = self.update(
            &subject.key,
            |b| b.holds(subject.tag, id),
            |b| b.reserve(table, subject.tag, Failure(now, id)),
        )?;
        Ok(match outcome {
            Outcome::Done => Ok(Slot { table, subject, id }),
            Outcome::Refused(retry_after) => Err(retry_after),
            Outcome::Contended | Outcome::Absent => Err(CONTENDED_RETRY_AFTER),
        })
    }

    /// Keeps the slot (the failure), gives it back (its check did not happen, or succeeded) or
    /// forgets every failure of its subject (a successful login): `domain::login::settle`.
    pub fn settle(&self, slot: &Slot, fate: Fate) -> Result<(), Error> {
        let (key, tag, id) = (&slot.subject.key, slot.subject.tag, slot.id);
        let outcome = match fate {
            Fate::Keep => return Ok(()),
            Fate::Release => {
                self.update::<()>(key, |b| !b.holds(tag, id), |b| Ok(b.release(tag, id)))?
            }
            Fate::Forget => self.update::<()>(key, |b| !b.has(tag), |b| Ok(b.forget(tag)))?,
        };
        // A give-back that lost every race leaves the slot as a failure until it ages out: the
        // safe side. Logged, not failed: the check it belonged to is already decided.
        if let Outcome::Contended = outcome {
            let table = slot.table.prefix;
            eprintln!("user: giving back a slot of {table} lost {CAS_ATTEMPTS} races");
        }
        Ok(())
    }

    /// Applies `change` to the key until the stored value satisfies `landed`
    /// (`marketplace_shared::kv::update`, one attempt per round, with a random pause between
    /// rounds). `change` refuses with `Err(R)`.
    ///
    /// On Spin's SQLite store a swap of an **absent** key is a blind upsert, so an absent key
    /// is never written by `change`: it is created empty once ([`Self::create`]), and from
    /// then on every swap compares. Keys are a fixed set and never deleted.
    fn update<R>(
        &self,
        key: &str,
        landed: impl Fn(&Bucket) -> bool,
        change: impl Fn(&Bucket) -> Result<Bucket, R>,
    ) -> Result<Outcome<R>, Error> {
        let mut step = |current: Option<&[u8]>| {
            if current.is_none() {
                return Step::Done(Outcome::Absent);
            }
            let bucket = Bucket::decode(current);
            if landed(&bucket) {
                return Step::Done(Outcome::Done);
            }
            match change(&bucket) {
                Ok(next) => Step::Write(next.encode(), Outcome::Done),
                Err(refusal) => Step::Done(Outcome::Refused(refusal)),
            }
        };
        for round in 0..CAS_ATTEMPTS {
            if round > 0 {
                backoff(round);
            }
            match kv::update(&self.bucket, key, 1, &mut step)? {
                Some(Outcome::Absent) => self.create(key, round)?,
                None => {}
                Some(done) => return Ok(done),
            }
        }
        Ok(Outcome::Contended)
    }

    /// Creates the absent `key` empty, by one writer only. Two creators would race: the later
    /// blind upsert (Spin's SQLite swap of an absent key) would wipe what a writer added after
    /// the first one (a failed login lost: seen under load in CI). `increment` is atomic on
    /// every store, so only its first caller creates the key; the others wait for it, and
    /// create it themselves only after [`CREATE_PATIENCE`] rounds (should that caller have
    /// died in between).
    fn create(&self, key: &str, round: u32) -> Result<(), Error> {
        let marker = format!("created/{key}");
        let takers =
            wkv_atomics::increment(&self.bucket, &marker, 1).map_err(failed("increment"))?;
        if takers != 1 && round < CREATE_PATIENCE {
            return Ok(());
        }
        let cas = wkv_atomics::Cas::new(&self.bucket, key).map_err(failed("cas"))?;
        if cas.current().map_err(failed("cas current"))?.is_none() {
            kv::swap_read_back(&self.bucket, key, cas, &Bucket::default().encode())?;
        }
        Ok(())
    }

    pub fn ping(&self) -> Result<(), Error> {
        self.bucket.exists("readyz").map_err(failed("exists"))?;
        Ok(())
    }
}
