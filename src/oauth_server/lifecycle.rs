//! The signing keys' lifecycle on a running gateway: opened at start (the secrets key from the
//! config, or the `secrets-key` file beside the SQLite store, written on first start), a first key
//! made when the store has none, and a new key made `publish_ahead` before the active one has
//! signed for `rotate_every` (on schedule, or now by `portcullis oauth keys rotate`). A key is
//! only added under the store's write lock and only when no later key exists, so replicas
//! rotating at once add one key, and every replica signs with the same key at the same time (its
//! timeline is read from times, see [`crate::oauth::signing`]).

use crate::config::oauth::OauthServerCfg;
use crate::oauth::signing::{generate, SecretsKey, SigningKeyRow};
use crate::oauth::OauthState;
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};

/// Where the generated secrets key is kept when the config gives none (SQLite mode only).
pub fn secrets_key_file(sqlite: &Path) -> PathBuf {
    sqlite
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("secrets-key")
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The secrets key: the config's, else the file's, else a new one written to the file (0600).
fn secrets_key(cfg: &OauthServerCfg, file: &Path) -> std::io::Result<SecretsKey> {
    if let Some(k) = &cfg.secrets_key {
        return Ok(k.clone());
    }
    match std::fs::read_to_string(file) {
        Ok(text) => SecretsKey::from_base64(&text)
            .map_err(|e| io(format!("{}: the secrets key {e}", file.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, text) = SecretsKey::generate().map_err(io)?;
            crate::devpki::write_secret_file(file, &text)?;
            tracing::warn!(file = %file.display(), "oauth_server.signing.secrets_key is not set: a new one is in this file (mode 0600); keep a copy, or set the key in the config, or the signing keys cannot be opened again");
            Ok(key)
        }
        Err(e) => Err(io(format!("{}: {e}", file.display()))),
    }
}

/// Start-up (blocking): the secrets key, every client and signing key into memory, and a first
/// key when there is none.
pub fn load(
    cfg: &OauthServerCfg,
    sqlite: &Path,
    store: &dyn Store,
    state: &OauthState,
) -> std::io::Result<()> {
    state
        .keys
        .set_secrets(secrets_key(cfg, &secrets_key_file(sqlite))?);
    for c in store.load_clients().map_err(io)? {
        state.clients.put(c);
    }
    let keys = store.load_signing_keys().map_err(io)?;
    for k in &keys {
        state.keys.put(k).map_err(io)?;
    }
    if keys.is_empty() {
        let now = crate::clock::now_secs();
        // No token exists yet, so no verifier can have cached a JWKS without it: it signs now.
        let row = new_key(cfg, state, now, now)?;
        if store.insert_signing_key(&row, i64::MIN).map_err(io)? {
            state.keys.put(&row).map_err(io)?;
            tracing::info!(kid = %row.kid, alg = row.alg.as_str(), "first signing key made");
        } else {
            // another replica made the first key meanwhile
            for k in store.load_signing_keys().map_err(io)? {
                state.keys.put(&k).map_err(io)?;
            }
        }
    }
    Ok(())
}

fn new_key(
    cfg: &OauthServerCfg,
    state: &OauthState,
    now: i64,
    activates_at: i64,
) -> std::io::Result<SigningKeyRow> {
    let secrets = state.keys.secrets().ok_or_else(|| io("no secrets key"))?;
    generate(cfg.algorithm, secrets, now, activates_at).map_err(io)
}

/// What a rotation did.
#[derive(Debug)]
pub enum Rotated {
    /// A new key, published now, that signs from its `activates_at`.
    Added(SigningKeyRow),
    /// A key that activates later exists already (made here or by another replica).
    Pending,
}

/// Adds the next key, activating `publish_ahead` from now (`force`), or on schedule when the
/// active key has signed for `rotate_every` less `publish_ahead` (upkeep). Blocking.
pub fn rotate(
    cfg: &OauthServerCfg,
    store: &dyn Store,
    state: &OauthState,
    now: i64,
    force: bool,
) -> Result<Option<Rotated>, StoreError> {
    let timeline = state.keys.timeline();
    let last = timeline.last_activation();
    if last.is_some_and(|l| l > now) {
        return Ok(Some(Rotated::Pending));
    }
    let ahead = cfg.publish_ahead.as_secs() as i64;
    let every = cfg.rotate_every.as_secs() as i64;
    let due = last.is_none_or(|l| now >= l + every - ahead);
    if !force && !due {
        return Ok(None);
    }
    // `now` is whole seconds, up to one behind the clock: a second more keeps the key published
    // at least publish_ahead before it signs
    let earliest = now + ahead + 1;
    let at = match (force, last) {
        (false, Some(l)) => (l + every).max(earliest),
        _ => earliest,
    };
    let row = new_key(cfg, state, now, at).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    if !store.insert_signing_key(&row, now)? {
        return Ok(Some(Rotated::Pending));
    }
    state.keys.put(&row).map_err(StoreError::Unavailable)?;
    tracing::info!(kid = %row.kid, alg = row.alg.as_str(), activates_at = %crate::clock::rfc3339(row.activates_at, 0), "signing key added; it is published now and signs from activates_at");
    Ok(Some(Rotated::Added(row)))
}
