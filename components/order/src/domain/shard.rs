//! Shard routing: buyer → virtual shard → physical database, and order ids that name their
//! virtual shard.
//!
//! - There are [`VSHARDS`] (64) virtual shards, fixed forever: another number would move
//!   buyers between shards and invalidate order ids.
//! - A buyer's virtual shard is the first two bytes of SHA-256 over the buyer's UUID bytes,
//!   big-endian, mod 64: stable everywhere (unlike `DefaultHasher`) and even over UUID v7s.
//! - `shard_map` maps virtual shards to indexes into `db_urls` (`0-31:0,32-63:1`; empty: even
//!   contiguous ranges). A new database takes whole virtual shards and a new map; no order id
//!   changes, because ids name the virtual shard, not the database.
//! - An order id is `o` + the virtual shard as two lowercase hex digits + a UUID v7 as 32
//!   lowercase hex digits (35 characters, e.g. `o2a0193c0e4a1b27c3d8e9f00112233aabb`).

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The fixed number of virtual shards.
pub const VSHARDS: u16 = 64;

/// A virtual shard number, always `< VSHARDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VShard(u16);

impl VShard {
    /// The virtual shard that holds every order of `buyer`.
    pub fn of_buyer(buyer: Uuid) -> Self {
        let digest = Sha256::digest(buyer.as_bytes());
        Self(u16::from_be_bytes([digest[0], digest[1]]) % VSHARDS)
    }

    pub fn new(n: u16) -> Option<Self> {
        (n < VSHARDS).then_some(Self(n))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// An order id: its virtual shard and a UUID v7. Exists only when well-formed. Ids compare
/// like their text (shard, then UUID bytes), the order `collate "C"` gives them in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId {
    vshard: VShard,
    uuid: Uuid,
}

/// Length of an order id in characters.
pub const ORDER_ID_LEN: usize = 35;

impl OrderId {
    /// A fresh order id in `vshard` (UUID v7: ids of one buyer sort by creation time).
    pub fn generate(vshard: VShard) -> Self {
        Self {
            vshard,
            uuid: Uuid::now_v7(),
        }
    }

    /// Parses the text form; `None` for anything that is not an id this service could have
    /// issued (wrong length, case, prefix, shard out of range, not a UUID v7).
    pub fn parse(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != ORDER_ID_LEN || bytes[0] != b'o' {
            return None;
        }
        let hex = &s[1..];
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if !hex.bytes().all(lower_hex) {
            return None;
        }
        let vshard = VShard::new(u16::from_str_radix(&hex[..2], 16).ok()?)?;
        let uuid = Uuid::try_parse(&hex[2..]).ok()?;
        if uuid.get_version_num() != 7 {
            return None;
        }
        Some(Self { vshard, uuid })
    }

    pub fn vshard(&self) -> VShard {
        self.vshard
    }

    /// When the id was generated (to the millisecond): the order's `created_at`.
    pub fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        let (secs, nanos) = self.uuid.get_timestamp().map_or((0, 0), |t| t.to_unix());
        let millis = (secs as i64) * 1000 + i64::from(nanos / 1_000_000);
        chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "o{:02x}{}", self.vshard.0, self.uuid.simple())
    }
}

impl serde::Serialize for OrderId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for OrderId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not an order id"))
    }
}

/// Virtual shard → index of the physical database in `db_urls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    db_of: Vec<usize>,
}

impl ShardMap {
    /// Parses `spec` (single shards `5:1` allowed) for `databases` databases: every virtual
    /// shard mapped exactly once, to an existing database. `Err`: why not (deployment error).
    pub fn parse(spec: &str, databases: usize) -> Result<Self, String> {
        if databases == 0 {
            return Err("no order database configured".into());
        }
        let n = usize::from(VSHARDS);
        if databases > n {
            let more = format!("more databases ({databases}) than virtual shards ({n})");
            return Err(more);
        }
        if spec.trim().is_empty() {
            let db_of = (0..n).map(|v| v * databases / n).collect();
            return Ok(Self { db_of });
        }
        let mut db_of: Vec<Option<usize>> = vec![None; n];
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || format!("entry `{entry}` is not `from-to:db`");
            let (range, db) = entry.split_once(':').ok_or_else(bad)?;
            let db: usize = db.trim().parse().map_err(|_| bad())?;
            if db >= databases {
                let only = format!("only {databases} are configured");
                return Err(format!("entry `{entry}` names database {db}, but {only}"));
            }
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            let from: usize = from.trim().parse().map_err(|_| bad())?;
            let to: usize = to.trim().parse().map_err(|_| bad())?;
            if from > to || to >= usize::from(VSHARDS) {
                let last = VSHARDS - 1;
                return Err(format!("entry `{entry}`: range must be within 0-{last}"));
            }
            for slot in &mut db_of[from..=to] {
                if slot.replace(db).is_some() {
                    return Err(format!("entry `{entry}` maps a virtual shard twice"));
                }
            }
        }
        let db_of = db_of
            .into_iter()
            .enumerate()
            .map(|(v, db)| db.ok_or_else(|| format!("virtual shard {v} is unmapped")))
            .collect::<Result<_, _>>()?;
        Ok(Self { db_of })
    }

    /// The physical database holding `vshard`.
    pub fn database_of(&self, vshard: VShard) -> usize {
        self.db_of[usize::from(vshard.0)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buyer_always_lands_in_the_same_virtual_shard() {
        let buyer = Uuid::parse_str("0193c0e4-a1b2-7c3d-8e9f-00112233aabb").unwrap();
        let first = VShard::of_buyer(buyer);
        for _ in 0..10 {
            assert_eq!(VShard::of_buyer(buyer), first);
        }
        // Pinned value: if this changes, every existing order would be looked up on the wrong
        // shard. SHA-256(bytes)[0..2] big-endian mod 64.
        let digest = Sha256::digest(buyer.as_bytes());
        assert_eq!(first.get(), u16::from_be_bytes([digest[0], digest[1]]) % 64);
    }

    #[test]
    fn buyers_spread_over_every_virtual_shard() {
        let mut seen = [0u32; VSHARDS as usize];
        for _ in 0..6400 {
            seen[usize::from(VShard::of_buyer(Uuid::now_v7()).get())] += 1;
        }
        assert!(seen.iter().all(|&n| n > 40), "{seen:?}");
    }

    #[test]
    fn an_order_id_names_its_virtual_shard_and_round_trips() {
        let v = VShard::new(42).unwrap();
        let id = OrderId::generate(v);
        let text = id.to_string();
        assert_eq!(text.len(), ORDER_ID_LEN);
        assert!(text.starts_with("o2a"));
        let back = OrderId::parse(&text).unwrap();
        assert_eq!(back, id);
        assert_eq!(back.vshard(), v);
        let age = chrono::Utc::now() - back.created_at();
        assert!(age.num_milliseconds().abs() < 5_000);
    }

    #[test]
    fn forged_order_ids_are_refused() {
        let good = OrderId::generate(VShard::new(3).unwrap()).to_string();
        assert!(OrderId::parse(&good).is_some());
        let upper = good.to_uppercase();
        let cases = [
            "",
            "o",
            "garbage",
            &upper,
            &good[1..],
            &format!("{good}0"),
            &format!("x{}", &good[1..]),
            // virtual shard 0x40 = 64 is out of range
            &format!("o40{}", &good[3..]),
            // a UUID v4 instead of v7
            &format!("o03{}", Uuid::new_v4().simple()),
            "o03../../../etc/passwd0000000000000",
        ];
        for case in cases {
            assert!(OrderId::parse(case).is_none(), "{case}");
        }
    }

    /// The database `map` puts virtual shard `v` on.
    fn db(map: &ShardMap, v: u16) -> usize {
        map.database_of(VShard::new(v).unwrap())
    }

    #[test]
    fn an_empty_map_spreads_virtual_shards_evenly() {
        let two = ShardMap::parse("", 2).unwrap();
        assert_eq!([0, 31, 32, 63].map(|v| db(&two, v)), [0, 0, 1, 1]);
        let one = ShardMap::parse(" ", 1).unwrap();
        assert!((0..VSHARDS).all(|v| db(&one, v) == 0));
        let three = ShardMap::parse("", 3).unwrap();
        let counts = [0, 1, 2].map(|d| (0..VSHARDS).filter(|&v| db(&three, v) == d).count());
        assert_eq!(counts, [22, 21, 21]);
    }

    #[test]
    fn an_explicit_map_is_followed() {
        let m = ShardMap::parse("0-9:1, 10-62:0, 63:1", 2).unwrap();
        assert_eq!([5, 10, 63].map(|v| db(&m, v)), [1, 0, 1]);
    }

    #[test]
    fn moving_a_virtual_shard_changes_no_order_id() {
        let id = OrderId::generate(VShard::new(40).unwrap());
        let before = ShardMap::parse("0-63:0", 2).unwrap();
        let after = ShardMap::parse("0-39:0,40-63:1", 2).unwrap();
        let parsed = OrderId::parse(&id.to_string()).unwrap();
        assert_eq!(before.database_of(parsed.vshard()), 0);
        assert_eq!(after.database_of(parsed.vshard()), 1);
    }

    #[test]
    fn broken_maps_are_refused() {
        assert!(ShardMap::parse("0-31:0", 2).is_err(), "gap");
        assert!(ShardMap::parse("0-40:0,30-63:1", 2).is_err(), "overlap");
        assert!(ShardMap::parse("0-63:2", 2).is_err(), "unknown database");
        assert!(ShardMap::parse("0-64:0", 1).is_err(), "out of range");
        assert!(ShardMap::parse("9-3:0", 1).is_err(), "reversed");
        assert!(ShardMap::parse("zero:0", 1).is_err(), "garbage");
        assert!(ShardMap::parse("", 0).is_err(), "no database");
    }
}
