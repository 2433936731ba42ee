//! Fault injection shared by the API servers: failures, throttling and delays on chosen requests.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What an injected fault does to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this status (500, 502, 503, 504, …) and the API's error body, without handling the
    /// request: nothing is written.
    Status(u16),
    /// Answer `429` (`rate_limited` on Notion) with this `Retry-After`, without handling the request.
    RateLimited {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// Answer `529 service_overload` with this `Retry-After` (Notion's overload signal).
    Overloaded {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// Wait this long, then handle the request normally (a client timeout shorter than this sees a
    /// timeout and nothing is written, because the server handles the request only after the wait).
    Delay(Duration),
    /// Handle the request and commit its write, then answer `500`: the unknown outcome a client must
    /// resolve without writing twice. Only write endpoints trigger it, and only writes that succeeded.
    AppliedButFailed,
    /// Handle the request and commit its write, then wait this long before answering: with a shorter
    /// client timeout, the write has landed but the client saw a timeout. Only successful writes
    /// trigger it.
    AppliedThenDelay(Duration),
}

impl Fault {
    /// Whether the fault acts after a successful write rather than before the request is handled.
    fn after_write(&self) -> bool {
        matches!(self, Self::AppliedButFailed | Self::AppliedThenDelay(_))
    }
}

/// When a fault fires: on the next `n` eligible requests, or on each with probability `p`.
#[derive(Clone, Debug, PartialEq)]
enum Trigger {
    Next(u32),
    Fraction(f64),
}

/// A fault, when it fires, and optionally the one endpoint it applies to.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    fault: Fault,
    trigger: Trigger,
    endpoint: Option<String>,
    body_contains: Option<Vec<u8>>,
}

impl FaultRule {
    /// The next `n` eligible requests get `fault`.
    pub fn next(n: u32, fault: Fault) -> Self {
        Self {
            fault,
            trigger: Trigger::Next(n),
            endpoint: None,
            body_contains: None,
        }
    }

    /// Each eligible request gets `fault` with probability `p` (drawn from the server's seeded RNG, so a
    /// run is reproducible).
    pub fn fraction(p: f64, fault: Fault) -> Self {
        Self {
            fault,
            trigger: Trigger::Fraction(p.clamp(0.0, 1.0)),
            endpoint: None,
            body_contains: None,
        }
    }

    /// Restricts the rule to one endpoint, named as in the request counters: method and route
    /// template, e.g. `"POST /v1/pages"` or `"PATCH /v1/blocks/{id}/children"`.
    pub fn on(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Restricts the rule to requests whose body contains `needle` (e.g. one phone number, to slow down
    /// the work of one number only). The OpenPhone server matches the path and query instead: its
    /// requests carry their parameters there.
    pub fn when_body_contains(mut self, needle: impl Into<String>) -> Self {
        self.body_contains = Some(needle.into().into_bytes());
        self
    }

    fn applies_to(&self, endpoint: &str, body: &[u8]) -> bool {
        self.endpoint.as_deref().is_none_or(|only| only == endpoint)
            && self.body_contains.as_deref().is_none_or(|needle| {
                !needle.is_empty() && body.windows(needle.len()).any(|w| w == needle)
            })
    }
}

/// The rules armed on one server.
#[derive(Debug)]
pub(crate) struct Faults {
    rules: Vec<FaultRule>,
    rng: ChaCha8Rng,
    triggered: u64,
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rules: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            triggered: 0,
        }
    }

    pub(crate) fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    pub(crate) fn triggered(&self) -> u64 {
        self.triggered
    }

    /// The fault to apply before handling a request to `endpoint` with `body`, if one fires.
    pub(crate) fn before(&mut self, endpoint: &str, body: &[u8]) -> Option<Fault> {
        self.fire(endpoint, body, false)
    }

    /// The fault to apply after a write to `endpoint` with `body` succeeded, if one fires.
    pub(crate) fn after_write(&mut self, endpoint: &str, body: &[u8]) -> Option<Fault> {
        self.fire(endpoint, body, true)
    }

    fn fire(&mut self, endpoint: &str, body: &[u8], after_write: bool) -> Option<Fault> {
        let index = self.rules.iter().position(|rule| {
            rule.fault.after_write() == after_write
                && rule.applies_to(endpoint, body)
                && match rule.trigger {
                    Trigger::Next(n) => n > 0,
                    Trigger::Fraction(p) => self.rng.gen_bool(p),
                }
        })?;
        let rule = &mut self.rules[index];
        let fault = rule.fault.clone();
        if let Trigger::Next(n) = &mut rule.trigger {
            *n -= 1;
            if *n == 0 {
                self.rules.remove(index);
            }
        }
        self.triggered += 1;
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_n_fires_exactly_n_times_on_its_endpoint_only() {
        let mut faults = Faults::new(0);
        faults.add(FaultRule::next(2, Fault::Status(503)).on("POST /v1/pages"));
        assert_eq!(faults.before("GET /v1/pages/{id}", b""), None);
        assert_eq!(
            faults.before("POST /v1/pages", b""),
            Some(Fault::Status(503))
        );
        assert_eq!(faults.after_write("POST /v1/pages", b""), None);
        assert_eq!(
            faults.before("POST /v1/pages", b""),
            Some(Fault::Status(503))
        );
        assert_eq!(faults.before("POST /v1/pages", b""), None);
        assert_eq!(faults.triggered(), 2);
    }

    #[test]
    fn a_body_rule_fires_only_on_bodies_with_its_needle() {
        let mut faults = Faults::new(0);
        faults.add(FaultRule::next(1, Fault::Status(503)).when_body_contains("+15550001"));
        assert_eq!(
            faults.before("POST /v1/pages", b"{\"to\":\"+15550002\"}"),
            None
        );
        assert_eq!(
            faults.before("POST /v1/pages", b"{\"to\":\"+15550001\"}"),
            Some(Fault::Status(503))
        );
        assert_eq!(
            faults.before("POST /v1/pages", b"{\"to\":\"+15550001\"}"),
            None
        );
    }

    #[test]
    fn fractions_are_reproducible_from_the_seed() {
        let draw = |seed| {
            let mut faults = Faults::new(seed);
            faults.add(FaultRule::fraction(0.3, Fault::Status(500)));
            (0..200)
                .map(|_| faults.before("GET /x", b"").is_some())
                .collect::<Vec<_>>()
        };
        let first = draw(7);
        assert_eq!(first, draw(7));
        let fired = first.iter().filter(|hit| **hit).count();
        assert!((30..90).contains(&fired), "{fired} of 200 at p=0.3");
    }
}
