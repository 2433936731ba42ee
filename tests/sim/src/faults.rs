//! The faults of one simulated run, drawn from its seed: outages of hours to days, `429` storms, a token
//! that stops working until a person fixes it, requests that hang past a lease (some after the server
//! did the work), a Notion that answers every request slowly for hours (one seed in ten), instance
//! crashes at await points (the instance holding the leases among them: a crash lands on whatever the
//! instance holds), and wall clocks that disagree. The object store gets
//! its own outages, `503 SlowDown` storms and revoked keys (`403`), and hangs like any other API.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::executor::World;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// The APIs the app calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `api.notion.com`.
    Notion,
    /// `api.openphone.com`.
    OpenPhone,
    /// OpenPhone's media host (recordings, voicemails).
    Media,
    /// The object store (S3 or R2) that keeps copies of the media.
    S3,
}

impl Api {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Api::Notion => "notion",
            Api::OpenPhone => "openphone",
            Api::Media => "media",
            Api::S3 => "s3",
        }
    }
}

/// How a window of trouble answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// Every request fails to connect.
    Down,
    /// Every request gets `503`.
    Unavailable,
    /// Every request gets `429` with a `Retry-After` of this many seconds.
    Storm(u32),
    /// Every request gets `401`: the token was rotated, until a person puts the new one in.
    Unauthorized,
    /// Every request answers, but only after 10 to 19.5 s (inside the app's 20 s limit), so one event's
    /// writes can take longer than its 5-minute lease while the drain's other events wait.
    Slow,
}

/// A window of trouble on one API (true time, epoch ms).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The API.
    pub api: Api,
    /// From.
    pub from: i64,
    /// Until (exclusive).
    pub until: i64,
    /// What it answers.
    pub trouble: Trouble,
}

/// What the network does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection.
    Unreachable,
    /// An error status, with a `Retry-After` in seconds for `429`.
    Status(u16, u32),
    /// The answer takes `hang_ms`; with `ghost` the server has done the work before the wait.
    Hang {
        /// How long the answer takes.
        hang_ms: i64,
        /// Whether a write took effect although its answer is lost.
        ghost: bool,
    },
}

impl Failure {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Unreachable => "unreachable",
            Failure::Status(429, _) => "429",
            Failure::Status(401 | 403, _) => "401",
            Failure::Status(_, _) => "5xx",
            Failure::Hang { ghost: true, .. } => "ghost write",
            Failure::Hang { .. } => "hang",
        }
    }
}

/// Every fault of a run.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Windows of trouble.
    pub windows: Vec<Window>,
    /// Per request, the chance it hangs (outside the windows).
    pub hang_chance: f64,
    /// Per hanging write, the chance the server did the work anyway.
    pub ghost_chance: f64,
    /// Per request, the chance of a lone `5xx` or connection error.
    pub error_chance: f64,
    /// Instance kills: (true time, instance). Each lands at whatever await point the instance's tasks
    /// have reached then.
    pub crashes: Vec<(i64, usize)>,
    /// Each instance's clock skew (ms).
    pub skews: Vec<i64>,
    /// When the last fault ends (true time): after it the world is kind, and everything must settle.
    pub calm_from: i64,
}

impl FaultPlan {
    /// The faults of a run starting at `start` whose traffic lasts `span` ms, for `instances`
    /// instances. `long_outage` forces a 48-hour Notion outage; `slow_notion` adds a window of 20 minutes
    /// to 3 hours in which Notion answers every request slowly ([`Trouble::Slow`]).
    pub fn draw(
        rng: &mut ChaCha8Rng,
        start: i64,
        span: i64,
        instances: usize,
        long_outage: bool,
        slow_notion: bool,
    ) -> FaultPlan {
        let mut plan = FaultPlan {
            skews: (0..instances)
                .map(|_| rng.gen_range(-3_000..=3_000))
                .collect(),
            hang_chance: if rng.gen_bool(0.5) {
                rng.gen_range(0.0..0.03)
            } else {
                0.0
            },
            ghost_chance: rng.gen_range(0.0..0.7),
            error_chance: rng.gen_range(0.0..0.1),
            ..FaultPlan::default()
        };
        if rng.gen_bool(0.7) {
            // Up to one crash every ten minutes of traffic, at times with no relation to the work.
            let most = usize::try_from(span / (10 * MINUTE)).unwrap_or(1).max(1);
            plan.crashes = (0..rng.gen_range(1..=most))
                .map(|_| {
                    (
                        start + rng.gen_range(0..span.max(1)),
                        rng.gen_range(0..instances),
                    )
                })
                .collect();
            plan.crashes.sort_unstable();
        }
        if long_outage {
            let from = start + rng.gen_range(0..span.max(1));
            plan.windows.push(Window {
                api: Api::Notion,
                from,
                until: from + 48 * HOUR,
                trouble: if rng.gen_bool(0.5) {
                    Trouble::Down
                } else {
                    Trouble::Unavailable
                },
            });
        }
        for _ in 0..rng.gen_range(0..4) {
            let api = match rng.gen_range(0..4) {
                0 | 1 => Api::Notion,
                2 => Api::OpenPhone,
                _ => Api::S3,
            };
            let trouble = match rng.gen_range(0..4) {
                0 => Trouble::Down,
                1 => Trouble::Unavailable,
                2 => Trouble::Storm(rng.gen_range(1..60)),
                _ => Trouble::Unauthorized,
            };
            let length = match rng.gen_range(0..3) {
                0 => rng.gen_range(MINUTE..30 * MINUTE),
                1 => rng.gen_range(30 * MINUTE..6 * HOUR),
                _ => rng.gen_range(6 * HOUR..30 * HOUR),
            };
            let from = start + rng.gen_range(0..span.max(1));
            plan.windows.push(Window {
                api,
                from,
                until: from + length,
                trouble,
            });
        }
        // Drawn from a copy of the generator, so every other draw of the seed is as without it.
        if slow_notion {
            let mut slow = ChaCha8Rng::seed_from_u64(rng.clone().gen());
            let from = start + slow.gen_range(0..span.max(1));
            plan.windows.push(Window {
                api: Api::Notion,
                from,
                until: from + slow.gen_range(20 * MINUTE..3 * HOUR),
                trouble: Trouble::Slow,
            });
        }
        plan.calm_from = plan
            .windows
            .iter()
            .map(|w| w.until)
            .max()
            .unwrap_or(start)
            .max(start + span);
        plan
    }

    /// What happens to a request to `api` sent at true time `now`, if anything.
    pub fn failure(&self, api: Api, now: i64, world: &World) -> Option<Failure> {
        if let Some(window) = self
            .windows
            .iter()
            .find(|w| w.api == api && (w.from..w.until).contains(&now))
        {
            return Some(match (window.trouble, api) {
                (Trouble::Slow, _) => Failure::Hang {
                    hang_ms: world.random(|r| r.gen_range(10_000..19_500)),
                    ghost: false,
                },
                (Trouble::Down, _) => Failure::Unreachable,
                (Trouble::Unavailable, _) => Failure::Status(503, 0),
                // S3 throttles with `503 SlowDown` and refuses a revoked key with `403`.
                (Trouble::Storm(_), Api::S3) => Failure::Status(503, 0),
                (Trouble::Storm(seconds), _) => Failure::Status(429, seconds),
                (Trouble::Unauthorized, Api::S3) => Failure::Status(403, 0),
                (Trouble::Unauthorized, _) => Failure::Status(401, 0),
            });
        }
        if now >= self.calm_from {
            return None;
        }
        if world.chance(self.error_chance) {
            return Some(if world.chance(0.5) {
                Failure::Unreachable
            } else {
                Failure::Status(502, 0)
            });
        }
        if world.chance(self.hang_chance) {
            let hang_ms = world.random(|r| {
                if r.gen_bool(0.5) {
                    r.gen_range(1_000..25_000)
                } else {
                    r.gen_range(25_000..15 * MINUTE)
                }
            });
            return Some(Failure::Hang {
                hang_ms,
                ghost: world.chance(self.ghost_chance),
            });
        }
        None
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skews {:?} ms; hang {:.3}, ghost {:.2}, error {:.3}, {} crashes",
            self.skews,
            self.hang_chance,
            self.ghost_chance,
            self.error_chance,
            self.crashes.len()
        )?;
        for w in &self.windows {
            write!(
                f,
                "; {:?} {:?} for {:.1} h",
                w.api,
                w.trouble,
                (w.until - w.from) as f64 / HOUR as f64
            )?;
        }
        Ok(())
    }
}
