//! Issuers and their encryption keys, kept in memory for the card requests that need them on every
//! call. A registration used to read them in a read transaction of its own, on a blocking thread:
//! 16% of the runtime threads' CPU under registrations (docs/PERFORMANCE.md).
//!
//! Fresh enough, and never wrong for long:
//! - this process forgets an issuer whenever it changes it (onboarding, key rotation), and an entry
//!   read before such a change is never kept after it (the generation check in [`IssuerCache::keep`]);
//! - what another process changed (several nodes on one PostgreSQL database) is seen after at most
//!   [`FRESH_FOR`];
//! - a card product or an encryption key that a kept entry lacks is looked for in the database before
//!   a request is refused ([`Needs`]), so that a product added or a key rotated on another node works
//!   at once. What stays stale for up to [`FRESH_FOR`] on the other nodes is a change to a product
//!   that exists (its authorisation mode, say).

use crate::ports::StoredEncryptionKey;
use cardplane_domain::ids::{CardProductId, IssuerId};
use cardplane_domain::issuer::Issuer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// How long a kept issuer is used before it is read again.
pub(crate) const FRESH_FOR: Duration = Duration::seconds(1);

/// An issuer with its encryption keys (retired ones included: they still decrypt).
#[derive(Debug)]
pub(crate) struct IssuerKeys {
    pub(crate) issuer: Issuer,
    pub(crate) keys: Vec<StoredEncryptionKey>,
}

/// What a request needs of the issuer; a kept entry without it is read again. (A key that card
/// data names and a kept entry lacks is found when the decryption is refused: `Platform::decrypt`.)
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Needs<'a> {
    /// A card product it names.
    pub(crate) product: Option<&'a CardProductId>,
}

impl Needs<'_> {
    pub(crate) fn met_by(&self, known: &IssuerKeys) -> bool {
        let has_product = |id: &CardProductId| known.issuer.onboarding.card_products.iter().any(|p| &p.id == id);
        self.product.is_none_or(has_product)
    }
}

/// The issuers read lately. One per [`Platform`](crate::Platform); holds one entry per issuer that
/// made a card request in the last [`FRESH_FOR`] or since (entries are replaced, never piled up).
#[derive(Debug, Default)]
pub(crate) struct IssuerCache {
    entries: Mutex<HashMap<IssuerId, (OffsetDateTime, Arc<IssuerKeys>)>>,
    /// Moves on at every [`IssuerCache::forget`].
    generation: AtomicU64,
}

impl IssuerCache {
    /// The issuer as read less than [`FRESH_FOR`] before `now`.
    pub(crate) fn get(&self, id: &IssuerId, now: OffsetDateTime) -> Option<Arc<IssuerKeys>> {
        let entries = self.entries.lock().expect("the issuer cache lock is never poisoned");
        let (read_at, known) = entries.get(id)?;
        (*read_at <= now && now - *read_at < FRESH_FOR).then(|| Arc::clone(known))
    }

    /// To be taken before reading an issuer, and handed to [`IssuerCache::keep`] with what was read.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Keeps `known`, read at `read_at` after [`IssuerCache::generation`] returned `seen`, unless
    /// an issuer was forgotten since: what was read may predate that change.
    pub(crate) fn keep(&self, known: Arc<IssuerKeys>, read_at: OffsetDateTime, seen: u64) {
        let mut entries = self.entries.lock().expect("the issuer cache lock is never poisoned");
        if self.generation.load(Ordering::SeqCst) == seen {
            entries.insert(known.issuer.id.clone(), (read_at, known));
        }
    }

    /// Forgets the issuer; to be called once a change to it (or to its keys) has committed.
    pub(crate) fn forget(&self, id: &IssuerId) {
        let mut entries = self.entries.lock().expect("the issuer cache lock is never poisoned");
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardplane_domain::issuer::{IssuerName, Onboarding};

    fn known(name: &str, at: OffsetDateTime) -> Arc<IssuerKeys> {
        let onboarding = Onboarding {
            name: IssuerName::parse(name).unwrap(),
            assertion_keys: Vec::new(),
            card_products: Vec::new(),
            callback: None,
            wallet_server: None,
        };
        let issuer = Issuer { id: IssuerId::parse("BANK000001").unwrap(), onboarding, created_at: at, updated_at: at };
        Arc::new(IssuerKeys { issuer, keys: Vec::new() })
    }

    fn name(known: &IssuerKeys) -> &str {
        known.issuer.onboarding.name.as_str()
    }

    #[test]
    fn an_issuer_is_kept_for_a_second_from_its_read() {
        let cache = IssuerCache::default();
        let (id, t0) = (IssuerId::parse("BANK000001").unwrap(), OffsetDateTime::UNIX_EPOCH);
        cache.keep(known("first", t0), t0, cache.generation());
        assert_eq!(cache.get(&id, t0 + Duration::milliseconds(999)).as_deref().map(name), Some("first"));
        assert!(cache.get(&id, t0 + FRESH_FOR).is_none(), "kept for longer than FRESH_FOR");
        assert!(cache.get(&id, t0 - Duration::milliseconds(1)).is_none(), "a clock set back trusts nothing");
        assert!(cache.get(&IssuerId::parse("BANK000002").unwrap(), t0).is_none());
    }

    /// A read that began before a change and ends after it is not kept: it may predate the change.
    #[test]
    fn a_read_overtaken_by_a_change_is_not_kept() {
        let cache = IssuerCache::default();
        let (id, t0) = (IssuerId::parse("BANK000001").unwrap(), OffsetDateTime::UNIX_EPOCH);
        cache.keep(known("old", t0), t0, cache.generation());
        let seen = cache.generation();
        // ...the issuer is read (as it was), meanwhile it is changed and forgotten...
        cache.forget(&id);
        cache.keep(known("old", t0), t0, seen);
        assert!(cache.get(&id, t0).is_none(), "a read from before the change was kept");
        // A read begun after the change is kept.
        cache.keep(known("new", t0), t0, cache.generation());
        assert_eq!(cache.get(&id, t0).as_deref().map(name), Some("new"));
    }
}
