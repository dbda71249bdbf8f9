//! API keys: the format Portcullis issues (`sk_live_` / `sk_test_`, 32 random base62 characters,
//! a 6-character base62 CRC-32 checksum), and the in-memory key ring every request looks keys up
//! in by `sha256(key)`. Only hashes are kept; a plaintext exists once, in the create/rotate answer.

use crate::auth::identity::{no_scopes, AuthMethod, Identity};
use crate::auth::rate_limit::{LimitKey, LimitSpec, RateLimit};
use crate::values::Rate;
use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Env {
    Live,
    Test,
}

impl Env {
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Live => "live",
            Env::Test => "test",
        }
    }
    pub fn parse(s: &str) -> Option<Env> {
        match s {
            "live" => Some(Env::Live),
            "test" => Some(Env::Test),
            _ => None,
        }
    }
}

pub fn random_base62(n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        let _ = aws_lc_rs::rand::fill(&mut buf);
        for b in buf {
            // 248 = 4 * 62: rejection sampling keeps every character equally likely.
            if b < 248 && out.len() < n {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    out
}

fn base62_u32(mut v: u32, width: usize) -> String {
    let mut digits = Vec::with_capacity(width);
    while v > 0 {
        digits.push(BASE62[(v % 62) as usize]);
        v /= 62;
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

pub fn checksum(body: &str) -> String {
    base62_u32(crc32fast::hash(body.as_bytes()), 6)
}

/// A new secret: `sk_<env>_` + 32 random base62 + 6-character checksum (>= 190 bits of entropy).
pub fn generate_secret(env: Env) -> String {
    let body = format!("sk_{}_{}", env.as_str(), random_base62(32));
    let sum = checksum(&body);
    body + &sum
}

pub fn generate_id() -> String {
    format!("key_{}", random_base62(16))
}

/// What a presented key looks like.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    /// Our format with a valid checksum.
    Ours(Env),
    /// Our format, checksum wrong: refused without a lookup.
    BadChecksum,
    /// Anything else (imported keys from other systems).
    Foreign,
}

pub fn shape(key: &str) -> Shape {
    let env = if key.starts_with("sk_live_") {
        Env::Live
    } else if key.starts_with("sk_test_") {
        Env::Test
    } else {
        return Shape::Foreign;
    };
    let b = key.as_bytes();
    if b.len() != 46 || !b[8..].iter().all(u8::is_ascii_alphanumeric) {
        return Shape::Foreign;
    }
    if checksum(&key[..40]) == key[40..] {
        Shape::Ours(env)
    } else {
        Shape::BadChecksum
    }
}

pub type Hash = [u8; 32];

/// What the store and the key ring keep of a key: its SHA-256.
/// A rotation's earlier secrets: each ends at the latest at `until` (the new grace's end),
/// `current` joins them until then, and those already over at `now` are gone; soonest first.
/// (Keys and the authorization server's clients rotate alike.)
pub fn rotated_previous(
    previous: &[(Hash, i64)],
    current: Hash,
    until: i64,
    now: i64,
) -> Vec<(Hash, i64)> {
    let mut out: Vec<(Hash, i64)> = previous
        .iter()
        .map(|(h, u)| (*h, (*u).min(until)))
        .chain(std::iter::once((current, until)))
        .filter(|(_, u)| *u > now)
        .collect();
    out.sort_by_key(|p| p.1);
    out
}

pub fn hash_key(key: &str) -> Hash {
    crate::digest::sha256(key.as_bytes())
}

/// A key as stored: metadata and secret hashes, never a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub id: String,
    pub prefix: String,
    pub name: String,
    pub subject: Option<String>,
    pub scopes: Vec<String>,
    pub env: Env,
    pub rate_limit: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// The current secret's hash.
    pub current: Hash,
    /// Earlier secrets still accepted until their time (unix seconds).
    pub previous: Vec<(Hash, i64)>,
}

/// A short public prefix: enough to recognise a key, never enough to weaken it.
pub fn prefix_of(key: &str) -> String {
    match shape(key) {
        Shape::Ours(_) => key[..12].to_owned(),
        _ => key.chars().take((key.len() / 4).min(6)).collect(),
    }
}

impl KeyRow {
    /// A key with only what a lookup needs (the secret's hash and display prefix; env from its
    /// shape, live for foreign keys) and neutral metadata. Tests, benches and fuzz targets fill
    /// in the rest with `KeyRow { subject: …, ..KeyRow::new(id, secret) }`.
    pub fn new(id: impl Into<String>, secret: &str) -> KeyRow {
        let id = id.into();
        KeyRow {
            name: id.clone(),
            id,
            prefix: prefix_of(secret),
            subject: None,
            scopes: Vec::new(),
            env: match shape(secret) {
                Shape::Ours(env) => env,
                _ => Env::Live,
            },
            rate_limit: None,
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            current: hash_key(secret),
            previous: Vec::new(),
        }
    }
}

/// A key in memory: compact (a million of them must fit in a few hundred MiB). Strings that also
/// appear in the identity are shared (`Arc<str>`), so building an identity per request only
/// bumps reference counts.
#[derive(Debug)]
pub struct KeyRecord {
    pub id: Arc<str>,
    pub subject: Option<Arc<str>>,
    pub scopes: Arc<[String]>,
    prefix: [u8; 12],
    prefix_len: u8,
    pub env: Env,
    pub created_at: i64,
    /// 0 = never.
    expires: i64,
    /// 0 = not revoked.
    revoked: i64,
    pub last_used: AtomicI64,
    dirty: AtomicBool,
    pub current: Hash,
    /// What most keys do not have, out of line (a million keys must stay small).
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
struct Extra {
    /// `None`: the same as the subject (imports of `<key> <subject>` lines).
    name: Option<Box<str>>,
    /// The key's own rate limit, shared by keys with the same quota (its name is the quota text).
    rate_limit: Option<Arc<RateLimit>>,
    /// Earlier secrets still accepted until their time.
    previous: Box<[(Hash, i64)]>,
}

impl KeyRecord {
    pub fn expires_at(&self) -> Option<i64> {
        (self.expires != 0).then_some(self.expires)
    }

    pub fn revoked_at(&self) -> Option<i64> {
        (self.revoked != 0).then_some(self.revoked)
    }

    pub fn name(&self) -> &str {
        self.extra
            .as_ref()
            .and_then(|e| e.name.as_deref())
            .or(self.subject.as_deref())
            .unwrap_or(&self.id)
    }

    pub fn rate_limit(&self) -> Option<&Arc<RateLimit>> {
        self.extra.as_ref().and_then(|e| e.rate_limit.as_ref())
    }

    pub fn previous(&self) -> &[(Hash, i64)] {
        self.extra.as_ref().map_or(&[], |e| &e.previous)
    }

    /// The current secret's hash and every earlier one's.
    fn hashes(&self) -> impl Iterator<Item = &Hash> {
        std::iter::once(&self.current).chain(self.previous().iter().map(|(h, _)| h))
    }

    pub fn prefix(&self) -> &str {
        std::str::from_utf8(&self.prefix[..self.prefix_len as usize]).unwrap_or("")
    }

    pub fn status(&self, now: i64) -> &'static str {
        if self.revoked != 0 {
            "revoked"
        } else if self.expires != 0 && self.expires <= now {
            "expired"
        } else {
            "active"
        }
    }

    /// The identity a request with this key gets.
    /// The key's identity, as proven by the authenticator named `authenticator`.
    pub fn identity(&self, authenticator: &Arc<str>) -> Arc<Identity> {
        Arc::new(Identity {
            method: AuthMethod::ApiKey,
            authenticator: Some(authenticator.clone()),
            subject: Some(self.subject.clone().unwrap_or_else(|| self.id.clone())),
            scopes: self.scopes.clone(),
            key_id: Some(self.id.clone()),
            issuer: None,
            extra_headers: Vec::new(),
            own_limit: self.rate_limit().cloned(),
        })
    }

    /// The stored form (admin path only).
    pub fn to_row(&self) -> KeyRow {
        let last = self.last_used.load(Ordering::Relaxed);
        KeyRow {
            id: self.id.to_string(),
            prefix: self.prefix().to_owned(),
            name: self.name().to_owned(),
            subject: self.subject.as_deref().map(str::to_owned),
            scopes: self.scopes.to_vec(),
            env: self.env,
            rate_limit: self.rate_limit().map(|l| l.name.to_string()),
            created_at: self.created_at,
            expires_at: self.expires_at(),
            revoked_at: self.revoked_at(),
            last_used_at: (last > 0).then_some(last),
            current: self.current,
            previous: self.previous().to_vec(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Malformed,
    Unknown,
    Expired,
    Revoked,
    /// An earlier secret whose grace period has ended.
    Rotated,
}

/// All keys, in memory, shared by every listener and reload.
#[derive(Default)]
pub struct KeyRing {
    /// Keyed by the first 16 bytes of the SHA-256 (a lookup then compares all 32 with the
    /// record's), which halves the index of a million keys.
    by_hash: DashMap<u128, Arc<KeyRecord>>,
    by_id: DashMap<Arc<str>, Arc<KeyRecord>>,
    /// One limiter per distinct per-key quota, counting per key id.
    limits: DashMap<LimitSpec, Arc<RateLimit>>,
    /// Keys used since the last `take_used`, each queued once (when its `dirty` flag is set).
    /// Scanning `by_id` for dirty flags instead stalled the serving thread every 5 s: with
    /// 1 000 000 keys the load benchmark's p99 was 150 ms (3.25 ms with this queue).
    used: Mutex<Vec<Arc<KeyRecord>>>,
    pub loaded: AtomicBool,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.by_id.len())
            .finish()
    }
}

fn short(h: &Hash) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    u128::from_le_bytes(b)
}

impl KeyRing {
    fn limiter(&self, rate: &str) -> Option<Arc<RateLimit>> {
        let r: Rate = crate::values::parse_rate(rate).ok()?;
        let spec = LimitSpec {
            count: r.count,
            per: r.per,
            burst: r.count,
        };
        if let Some(l) = self.limits.get(&spec) {
            return Some(l.clone());
        }
        // Validated rates (N <= 999999999 per second or longer) always make a quota.
        let l = Arc::new(RateLimit::new(rate, spec, LimitKey::Identity).ok()?);
        Some(self.limits.entry(spec).or_insert(l).clone())
    }

    fn record(&self, row: KeyRow) -> Arc<KeyRecord> {
        let rate_limit = row.rate_limit.as_deref().and_then(|r| self.limiter(r));
        let mut prefix = [0u8; 12];
        let plen = row.prefix.len().min(12);
        prefix[..plen].copy_from_slice(&row.prefix.as_bytes()[..plen]);
        let name =
            (row.subject.as_deref() != Some(row.name.as_str())).then(|| row.name.into_boxed_str());
        let extra =
            (name.is_some() || rate_limit.is_some() || !row.previous.is_empty()).then(|| {
                Box::new(Extra {
                    name,
                    rate_limit,
                    previous: row.previous.into_boxed_slice(),
                })
            });
        Arc::new(KeyRecord {
            id: Arc::from(row.id),
            subject: row.subject.map(Arc::from),
            scopes: if row.scopes.is_empty() {
                no_scopes()
            } else {
                Arc::from(row.scopes)
            },
            prefix,
            prefix_len: plen as u8,
            env: row.env,
            created_at: row.created_at,
            expires: row.expires_at.unwrap_or(0),
            revoked: row.revoked_at.unwrap_or(0),
            last_used: AtomicI64::new(row.last_used_at.unwrap_or(0)),
            dirty: AtomicBool::new(false),
            current: row.current,
            extra,
        })
    }

    /// Puts (or replaces) a key: every hash it has now points at the new record, then the
    /// hashes it no longer has are dropped. In that order, a lookup racing the change finds
    /// every secret that stays valid (a rotation keeps the old one for its grace) on the old
    /// record or the new one, never on neither. A revoked key keeps its hashes, so a lookup can
    /// tell a revoked key from an unknown one.
    pub fn put(&self, row: KeyRow) {
        let rec = self.record(row);
        for h in rec.hashes() {
            self.by_hash.insert(short(h), rec.clone());
        }
        let old = self.by_id.insert(rec.id.clone(), rec.clone());
        if let Some(old) = old {
            for h in old.hashes().filter(|h| !rec.hashes().any(|n| n == *h)) {
                self.by_hash.remove_if(&short(h), |_, r| r.id == rec.id);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<KeyRecord>> {
        self.by_id.get(id).map(|r| r.clone())
    }

    pub fn contains_hash(&self, h: &Hash) -> bool {
        self.by_hash
            .get(&short(h))
            .is_some_and(|r| r.current == *h || r.previous().iter().any(|(p, _)| p == h))
    }

    pub fn all(&self) -> Vec<Arc<KeyRecord>> {
        let mut v: Vec<_> = self.by_id.iter().map(|r| r.clone()).collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        v
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Active keys (not revoked, not expired).
    pub fn active(&self, now: i64) -> usize {
        self.by_id
            .iter()
            .filter(|r| r.status(now) == "active")
            .count()
    }

    /// The per-request lookup: shape check, then one hash and one map probe.
    pub fn lookup(&self, key: &str, now: i64) -> Result<Arc<KeyRecord>, KeyRefusal> {
        if shape(key) == Shape::BadChecksum {
            return Err(KeyRefusal::Malformed);
        }
        let h = hash_key(key);
        let rec = self
            .by_hash
            .get(&short(&h))
            .map(|r| r.clone())
            .ok_or(KeyRefusal::Unknown)?;
        if rec.current != h && !rec.previous().iter().any(|(p, _)| *p == h) {
            return Err(KeyRefusal::Unknown);
        }
        if rec.revoked != 0 {
            return Err(KeyRefusal::Revoked);
        }
        if rec.expires != 0 && rec.expires <= now {
            return Err(KeyRefusal::Expired);
        }
        if rec.current != h {
            let valid = rec
                .previous()
                .iter()
                .any(|(p, until)| *p == h && *until > now);
            if !valid {
                return Err(KeyRefusal::Rotated);
            }
        }
        // At most once a second per key; queued once until the next `take_used`.
        if rec.last_used.swap(now, Ordering::Relaxed) != now
            && !rec.dirty.swap(true, Ordering::AcqRel)
        {
            self.used
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(rec.clone());
        }
        Ok(rec)
    }

    /// Puts back use times whose store write failed, so the next flush retries them (a key used
    /// since is queued already and carries a newer time).
    pub fn give_back(&self, used: &[(String, i64)]) {
        let mut queue = self.used.lock().unwrap_or_else(|p| p.into_inner());
        for (id, _) in used {
            if let Some(rec) = self.by_id.get(id.as_str()) {
                if !rec.dirty.swap(true, Ordering::AcqRel) {
                    queue.push(rec.clone());
                }
            }
        }
    }

    /// Keys used since the last call, with their last-use time (for a batched store write).
    pub fn take_used(&self) -> Vec<(String, i64)> {
        let used = std::mem::take(&mut *self.used.lock().unwrap_or_else(|p| p.into_inner()));
        used.iter()
            // The flag is cleared before the time is read: a use after this re-queues the key,
            // a use before it is in the time read here.
            .filter(|r| r.dirty.swap(false, Ordering::AcqRel))
            .map(|r| (r.id.to_string(), r.last_used.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_have_the_documented_shape() {
        for env in [Env::Live, Env::Test] {
            let k = generate_secret(env);
            assert_eq!(k.len(), 46);
            assert!(k.starts_with(&format!("sk_{}_", env.as_str())));
            assert_eq!(shape(&k), Shape::Ours(env));
            assert_eq!(k[40..], base62_u32(crc32fast::hash(&k.as_bytes()[..40]), 6));
            // a flipped character fails the checksum
            let mut b = k.clone().into_bytes();
            b[20] = if b[20] == b'a' { b'b' } else { b'a' };
            assert_eq!(shape(&String::from_utf8(b).unwrap()), Shape::BadChecksum);
        }
        assert_eq!(shape("pk_0123456789abcdef"), Shape::Foreign);
        assert_eq!(shape("sk_live_short"), Shape::Foreign);
        assert_eq!(base62_u32(0, 6), "000000");
        assert_eq!(base62_u32(61, 6), "00000z");
        assert_eq!(base62_u32(62, 6), "000010");
        assert_eq!(base62_u32(u32::MAX, 6), "4gfFC3");
        assert!(generate_id().starts_with("key_"));
        assert_eq!(generate_id().len(), 20);
    }

    /// Readers racing a rotation: a secret that stays valid (the old one, in its grace) is found
    /// on every lookup while the key's entries are replaced, and a revoked key says so.
    #[test]
    fn a_rotation_never_hides_a_secret_that_stays_valid() {
        let ring = Arc::new(KeyRing::default());
        let old = generate_secret(Env::Live);
        ring.put(KeyRow::new("k1", &old));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (ring, old, stop) = (ring.clone(), old.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut missed, mut looked) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    looked += 1;
                    if ring.lookup(&old, 100).is_err() {
                        missed += 1;
                    }
                }
                (missed, looked)
            })
        };
        for _ in 0..20_000 {
            let new = generate_secret(Env::Live);
            let mut row = KeyRow::new("k1", &new);
            row.previous = vec![(hash_key(&old), 1_000)];
            ring.put(row);
        }
        stop.store(true, Ordering::Relaxed);
        let (missed, looked) = reader.join().expect("reader");
        assert!(looked > 0);
        assert_eq!(
            missed, 0,
            "{missed} of {looked} lookups missed a valid secret"
        );
        let mut row = ring.get("k1").expect("k1").to_row();
        row.revoked_at = Some(50);
        ring.put(row);
        assert_eq!(ring.lookup(&old, 100).unwrap_err(), KeyRefusal::Revoked);
    }

    fn row(id: &str, secret: &str) -> KeyRow {
        KeyRow {
            name: "n".into(),
            subject: Some("svc".into()),
            scopes: vec!["read".into()],
            created_at: 1,
            ..KeyRow::new(id, secret)
        }
    }

    #[test]
    fn rotation_grace_and_revocation() {
        let ring = KeyRing::default();
        let old = generate_secret(Env::Live);
        let new = generate_secret(Env::Live);
        ring.put(row("key_a", &old));
        assert!(ring.lookup(&old, 100).is_ok());
        let mut r = row("key_a", &new);
        r.previous = vec![(hash_key(&old), 200)];
        ring.put(r.clone());
        assert!(ring.lookup(&new, 150).is_ok());
        assert!(ring.lookup(&old, 150).is_ok());
        assert_eq!(ring.lookup(&old, 200).unwrap_err(), KeyRefusal::Rotated);
        r.revoked_at = Some(160);
        ring.put(r);
        // a revoked key's secrets say so (logs and metrics tell it from an unknown key)
        assert_eq!(ring.lookup(&new, 170).unwrap_err(), KeyRefusal::Revoked);
        assert_eq!(ring.lookup(&old, 170).unwrap_err(), KeyRefusal::Revoked);
        assert_eq!(ring.get("key_a").unwrap().status(170), "revoked");
    }

    #[test]
    fn use_times_are_queued_once_per_flush() {
        let ring = KeyRing::default();
        let (a, b) = (generate_secret(Env::Live), generate_secret(Env::Live));
        ring.put(row("key_a", &a));
        ring.put(row("key_b", &b));
        assert!(ring.take_used().is_empty());
        for now in [100, 100, 101] {
            ring.lookup(&a, now).unwrap();
        }
        // one entry, with the latest time, whatever the number of uses
        assert_eq!(ring.take_used(), vec![("key_a".to_owned(), 101)]);
        assert!(ring.take_used().is_empty());
        // used again after the flush: queued again; the same second as the last write: not
        ring.lookup(&a, 101).unwrap();
        ring.lookup(&b, 102).unwrap();
        ring.lookup(&a, 103).unwrap();
        let mut used = ring.take_used();
        used.sort();
        assert_eq!(
            used,
            vec![("key_a".to_owned(), 103), ("key_b".to_owned(), 102)]
        );
        // a failed store write gives them back for the next flush
        ring.give_back(&used);
        ring.give_back(&used);
        let mut again = ring.take_used();
        again.sort();
        assert_eq!(again, used);
    }
}
