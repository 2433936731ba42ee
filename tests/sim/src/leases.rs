//! One lease holder at a time: every instance logs `lease acquired`, `renewed` and `released` with the
//! holder and how long it believes it holds the lease (its own clock). Each acquisition is checked on
//! the spot against the tenures still running, in true time.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use super::executor::World;

/// A holder's tenure, in true time.
struct Tenure {
    holder: String,
    instance: usize,
    /// Until when the holder may write: its `until` less the safety margin, back in true time.
    writes_until: i64,
}

/// Watches the lease log of every instance.
pub struct LeaseWatch {
    world: Rc<World>,
    skews: Vec<i64>,
    margin_ms: i64,
    held: RefCell<BTreeMap<String, Vec<Tenure>>>,
    /// Two holders at once, as found.
    pub violations: RefCell<Vec<String>>,
    /// Acquisitions seen.
    pub acquisitions: RefCell<u64>,
}

impl LeaseWatch {
    /// A watch over instances with these clock skews.
    pub fn new(world: Rc<World>, skews: Vec<i64>) -> Rc<LeaseWatch> {
        Rc::new(LeaseWatch {
            world,
            skews,
            margin_ms: common::lease::LeaseConfig::default().margin_ms,
            held: RefCell::new(BTreeMap::new()),
            violations: RefCell::new(Vec::new()),
            acquisitions: RefCell::new(0),
        })
    }

    fn on(&self, message: &str, fields: &BTreeMap<String, String>, instance: usize) {
        let (Some(lease), Some(holder)) = (fields.get("lease"), fields.get("holder")) else {
            return;
        };
        let now = self.world.now();
        let skew = self.skews.get(instance).copied().unwrap_or(0);
        let until = fields.get("until").and_then(|u| u.parse::<i64>().ok());
        let mut held = self.held.borrow_mut();
        let tenures = held.entry(lease.clone()).or_default();
        tenures.retain(|t| t.writes_until > now);
        match message {
            "lease acquired" => {
                *self.acquisitions.borrow_mut() += 1;
                for other in tenures.iter().filter(|t| &t.holder != holder) {
                    self.violations.borrow_mut().push(format!(
                        "lease {lease}: {holder} (instance {instance}) acquired it at {now} while \
                         {} (instance {}) may write until {}",
                        other.holder, other.instance, other.writes_until
                    ));
                }
                tenures.push(Tenure {
                    holder: holder.clone(),
                    instance,
                    writes_until: until.unwrap_or(now) - skew - self.margin_ms,
                });
            }
            "lease renewed" => {
                if let Some(t) = tenures.iter_mut().find(|t| &t.holder == holder) {
                    t.writes_until = until.unwrap_or(now) - skew - self.margin_ms;
                }
            }
            "lease released" => tenures.retain(|t| &t.holder != holder),
            _ => {}
        }
    }
}

impl LeaseWatch {
    /// An instance that holds a lease now (of the lease first by name), if any.
    pub fn a_holder(&self) -> Option<usize> {
        let now = self.world.now();
        self.held
            .borrow()
            .values()
            .flatten()
            .find(|t| t.writes_until > now && t.instance < self.skews.len())
            .map(|t| t.instance)
    }
}

thread_local! {
    /// Lease events logged during the current poll, for [`LeaseWatch::take_log`].
    static LOGGED: RefCell<Vec<(String, BTreeMap<String, String>)>> = const { RefCell::new(Vec::new()) };
}

impl LeaseWatch {
    /// Checks the lease events logged during the last poll, made by `instance`.
    pub fn take_log(&self, instance: Option<usize>) {
        let logged = LOGGED.with(|l| std::mem::take(&mut *l.borrow_mut()));
        for (message, fields) in logged {
            self.on(&message, &fields, instance.unwrap_or(usize::MAX));
        }
    }
}

/// The tracing subscriber of a simulation thread: lease events only, everything else is off.
pub struct LeaseLog;

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl Subscriber for LeaseLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && metadata.target() == "common::lease"
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Id::from_u64(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        LOGGED.with(|l| l.borrow_mut().push((message, fields.0)));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
