//! Identifiers for things this app names itself: lease owners, run ids, migration claims.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// 64 unpredictable-enough bits for owner ids and jitter (not for secrets). `RandomState` is seeded from
/// the OS (`wasi:random` on Spin); the counter keeps two calls in one instant apart.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A new id with a readable prefix, e.g. `run_5f3c…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:016x}", random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_and_keep_their_prefix() {
        let a = new_id("run");
        let b = new_id("run");
        assert!(a.starts_with("run_") && a.len() == 20, "{a}");
        assert_ne!(a, b);
    }
}
