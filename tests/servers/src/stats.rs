//! Request counters and the rate limiters the API servers share.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Counts requests per endpoint and remembers when the requests that count against the API budget
/// arrived, so a test can prove the app stayed within it.
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    per_endpoint: BTreeMap<String, u64>,
    /// Arrival of every request that counts against the budget: monotonic time for sliding windows,
    /// Unix second for the wall-clock windows a fixed-window limiter (and the app's own KV windows) use.
    arrivals: Vec<(Instant, u64)>,
}

impl RequestStats {
    pub(crate) fn count(&mut self, endpoint: &str) {
        *self.per_endpoint.entry(endpoint.to_owned()).or_default() += 1;
    }

    pub(crate) fn arrive(&mut self) {
        self.arrivals.push((Instant::now(), unix_now().as_secs()));
    }

    pub(crate) fn per_endpoint(&self) -> BTreeMap<String, u64> {
        self.per_endpoint.clone()
    }

    pub(crate) fn max_in_wall_clock_second(&self) -> usize {
        let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
        for (_, second) in &self.arrivals {
            *per_second.entry(*second).or_default() += 1;
        }
        per_second.into_values().max().unwrap_or(0)
    }

    pub(crate) fn max_in_sliding_second(&self) -> usize {
        let times: Vec<Instant> = self.arrivals.iter().map(|(at, _)| *at).collect();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// A fixed window aligned on wall-clock seconds: what Kong's `rate-limiting` plugin (OpenPhone's
/// gateway, `second: 10`, `policy: local`) does.
#[derive(Debug)]
pub(crate) struct FixedWindow {
    pub(crate) limit: Option<u32>,
    second: u64,
    used: u32,
}

impl FixedWindow {
    pub(crate) fn new(limit: Option<u32>) -> Self {
        Self {
            limit,
            second: 0,
            used: 0,
        }
    }

    /// Takes one request from the current second's allowance; `false` when it is spent.
    pub(crate) fn admit(&mut self) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        let second = unix_now().as_secs();
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        if self.used >= limit {
            return false;
        }
        self.used += 1;
        true
    }
}

/// Notion's "average of 3 requests per second, short bursts allowed", as a token bucket.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    pub(crate) config: Option<(f64, f64)>,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(config: Option<(f64, f64)>) -> Self {
        Self {
            config,
            tokens: config.map_or(0.0, |(burst, _)| burst),
            last: Instant::now(),
        }
    }

    pub(crate) fn reconfigure(&mut self, config: Option<(f64, f64)>) {
        *self = Self::new(config);
    }

    /// Takes a token, or says how long until one is available.
    pub(crate) fn take(&mut self) -> Result<(), Duration> {
        let Some((burst, per_second)) = self.config else {
            return Ok(());
        };
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * per_second).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_counts_the_densest_second() {
        let base = Instant::now();
        let mut stats = RequestStats::default();
        for millis in [0, 100, 200, 1150, 1200, 1300, 1400, 3000] {
            stats
                .arrivals
                .push((base + Duration::from_millis(millis), 0));
        }
        // 0..200 holds three; 1150..=1400 holds four; 200 and 1150 are close but 1400 is 1200 ms after 200.
        assert_eq!(stats.max_in_sliding_second(), 4);
    }

    #[test]
    fn token_bucket_allows_the_burst_then_refuses() {
        let mut bucket = TokenBucket::new(Some((3.0, 1.0)));
        assert!(bucket.take().is_ok());
        assert!(bucket.take().is_ok());
        assert!(bucket.take().is_ok());
        let wait = bucket.take().expect_err("the burst is spent");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
    }
}
