//! Identifiers for things this app names itself: lease owners, run ids, migration claims.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// 64 unpredictable-enough bits for owner ids and jitter (not for secrets). `RandomState` is seeded from
/// the OS (`wasi:random` on Spin); the counter keeps two calls in one instant apart. A thread that called
/// [`seed_this_thread`] gets a fixed sequence instead.
pub fn random_u64() -> u64 {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(value) = seeded::next() {
        return value;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Makes [`random_u64`] on this thread a fixed sequence from `seed` (`None` goes back to the OS), so
/// that a simulation of the app replays bit for bit.
#[cfg(not(target_arch = "wasm32"))]
pub fn seed_this_thread(seed: Option<u64>) {
    seeded::STATE.with(|state| state.set(seed));
}

#[cfg(not(target_arch = "wasm32"))]
mod seeded {
    use std::cell::Cell;

    thread_local! {
        pub(super) static STATE: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// The next value of splitmix64 from this thread's seed, if it has one.
    pub(super) fn next() -> Option<u64> {
        STATE.with(|state| {
            let current = state.get()?.wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(Some(current));
            let mut z = current;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            Some(z ^ (z >> 31))
        })
    }
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

    #[test]
    fn a_seeded_thread_repeats_its_sequence() {
        seed_this_thread(Some(7));
        let first: Vec<u64> = (0..3).map(|_| random_u64()).collect();
        seed_this_thread(Some(7));
        let again: Vec<u64> = (0..3).map(|_| random_u64()).collect();
        seed_this_thread(None);
        assert_eq!(first, again);
        assert_ne!(first[0], first[1]);
        assert_ne!(random_u64(), first[0]);
    }
}
