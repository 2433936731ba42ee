//! Structured logs: one JSON object per line on stderr (Spin collects component stderr), filtered by the
//! `log_level` variable. Secrets and message bodies are never passed to `tracing` in the first place.
//!
//! A line is `{"timestamp":…,"level":…,"fields":{…},"span":{…,"name":…}}`: the event's fields in the
//! order they were given (`message` among them), then the fields and name of the innermost span the event
//! happened in, as `tracing-subscriber`'s JSON format wrote them. The subscriber is our own because
//! `tracing-subscriber` (its registry, layers and formatters) was about 25 KB of every component for
//! these few lines of behaviour.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_core::span::Current;

/// Parses a `log_level` value (`trace`, `debug`, `info`, `warn`, `error`); anything else is `info`.
pub fn level(raw: &str) -> LevelFilter {
    match raw.trim().to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "warn" | "warning" => LevelFilter::WARN,
        "error" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    }
}

/// Installs the JSON subscriber for this instance; later calls do nothing. `component` is added to every
/// line through the root span the caller enters.
pub fn init(log_level: &str) {
    let subscriber = JsonLines::new(level(log_level), |line| {
        // A log line that cannot be written has nowhere to be reported; the request goes on.
        let _ = std::io::stderr().lock().write_all(line);
    });
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Span ids are unique in the process, not per subscriber, so that the entered-span stack (one per thread,
/// shared by every subscriber on it) never confuses one subscriber's span with another's.
static NEXT_SPAN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The spans entered on this thread, innermost last; `true` marks a span entered again while already
    /// entered, which does not make it the current one (as in `tracing-subscriber`'s registry).
    static ENTERED: RefCell<Vec<(u64, bool)>> = const { RefCell::new(Vec::new()) };
}

/// The subscriber: writes each enabled event as one JSON line through `sink`.
struct JsonLines<S> {
    max: LevelFilter,
    spans: Mutex<HashMap<u64, SpanData>>,
    sink: S,
}

/// A live span: what its lines show, and how many handles still refer to it.
struct SpanData {
    metadata: &'static Metadata<'static>,
    /// Sorted by name, as `tracing-subscriber` kept them.
    fields: BTreeMap<&'static str, Value>,
    handles: usize,
}

impl<S: Fn(&[u8]) + Send + Sync + 'static> JsonLines<S> {
    fn new(max: LevelFilter, sink: S) -> Self {
        Self {
            max,
            spans: Mutex::new(HashMap::new()),
            sink,
        }
    }

    fn spans(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SpanData>> {
        // A panic while the map was held left it consistent (each change is one insert or remove).
        self.spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The innermost span entered on this thread that belongs to this subscriber.
    fn current(&self) -> Option<u64> {
        let spans = self.spans();
        ENTERED.with(|entered| {
            entered
                .borrow()
                .iter()
                .rev()
                .find(|(id, again)| !again && spans.contains_key(id))
                .map(|(id, _)| *id)
        })
    }
}

impl<S: Fn(&[u8]) + Send + Sync + 'static> Subscriber for JsonLines<S> {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let id = NEXT_SPAN.fetch_add(1, Ordering::Relaxed);
        let mut fields = SpanFields::default();
        attributes.record(&mut fields);
        self.spans().insert(
            id,
            SpanData {
                metadata: attributes.metadata(),
                fields: fields.0,
                handles: 1,
            },
        );
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = SpanFields::default();
        values.record(&mut fields);
        if let Some(data) = self.spans().get_mut(&span.into_u64()) {
            data.fields.extend(fields.0);
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let parent = event.parent().map(Id::into_u64).or_else(|| self.current());
        let line = {
            let spans = self.spans();
            let span = parent.and_then(|id| spans.get(&id));
            let mut line = Vec::with_capacity(256);
            let written = LogLine {
                level: *event.metadata().level(),
                fields: &fields.0,
                span,
            }
            .serialize(&mut serde_json::Serializer::new(&mut line));
            if written.is_err() {
                return;
            }
            line.push(b'\n');
            line
        };
        (self.sink)(&line);
    }

    fn enter(&self, span: &Id) {
        let id = span.into_u64();
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            let again = entered.iter().any(|(entered, _)| *entered == id);
            entered.push((id, again));
        });
    }

    fn exit(&self, span: &Id) {
        let id = span.into_u64();
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|(entered, _)| *entered == id) {
                entered.remove(at);
            }
        });
    }

    fn clone_span(&self, span: &Id) -> Id {
        if let Some(data) = self.spans().get_mut(&span.into_u64()) {
            data.handles += 1;
        }
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        let mut spans = self.spans();
        let id = span.into_u64();
        let Some(data) = spans.get_mut(&id) else {
            return false;
        };
        data.handles -= 1;
        if data.handles > 0 {
            return false;
        }
        spans.remove(&id);
        true
    }

    fn current_span(&self) -> Current {
        match self.current() {
            Some(id) => match self.spans().get(&id) {
                Some(data) => Current::new(Id::from_u64(id), data.metadata),
                None => Current::none(),
            },
            None => Current::none(),
        }
    }
}

/// One log line, serialized in `tracing-subscriber`'s key order.
struct LogLine<'a> {
    level: Level,
    fields: &'a [(&'static str, Value)],
    span: Option<&'a SpanData>,
}

impl Serialize for LogLine<'_> {
    fn serialize<T: Serializer>(&self, serializer: T) -> Result<T::Ok, T::Error> {
        let mut line = serializer.serialize_map(None)?;
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.serialize_entry("timestamp", &timestamp)?;
        line.serialize_entry("level", self.level.as_str())?;
        line.serialize_entry("fields", &Ordered(self.fields))?;
        if let Some(span) = self.span {
            line.serialize_entry("span", &SpanLine(span))?;
        }
        line.end()
    }
}

/// Fields as a JSON object in the order given.
struct Ordered<'a>(&'a [(&'static str, Value)]);

impl Serialize for Ordered<'_> {
    fn serialize<T: Serializer>(&self, serializer: T) -> Result<T::Ok, T::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// A span's fields, then its name.
struct SpanLine<'a>(&'a SpanData);

impl Serialize for SpanLine<'_> {
    fn serialize<T: Serializer>(&self, serializer: T) -> Result<T::Ok, T::Error> {
        let mut map = serializer.serialize_map(Some(self.0.fields.len() + 1))?;
        for (name, value) in &self.0.fields {
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("name", self.0.metadata.name())?;
        map.end()
    }
}

/// A field's name as written: `r#type = …` in a macro is the field `type`.
fn name(field: &Field) -> &'static str {
    let name = field.name();
    name.strip_prefix("r#").unwrap_or(name)
}

/// An event's fields, in order.
#[derive(Default)]
struct EventFields(Vec<(&'static str, Value)>);

/// A span's fields, by name.
#[derive(Default)]
struct SpanFields(BTreeMap<&'static str, Value>);

/// Numbers, booleans and strings stay JSON values; anything else is its `Debug` text (a message's
/// `format_args!` is its text).
macro_rules! visit_values {
    ($fields:ty, $put:ident) => {
        impl Visit for $fields {
            fn record_f64(&mut self, field: &Field, value: f64) {
                self.$put(name(field), Value::from(value));
            }
            fn record_i64(&mut self, field: &Field, value: i64) {
                self.$put(name(field), Value::from(value));
            }
            fn record_u64(&mut self, field: &Field, value: u64) {
                self.$put(name(field), Value::from(value));
            }
            fn record_bool(&mut self, field: &Field, value: bool) {
                self.$put(name(field), Value::from(value));
            }
            fn record_str(&mut self, field: &Field, value: &str) {
                self.$put(name(field), Value::from(value));
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.$put(name(field), Value::from(format!("{value:?}")));
            }
        }
    };
}

impl EventFields {
    fn put(&mut self, name: &'static str, value: Value) {
        self.0.push((name, value));
    }
}

impl SpanFields {
    fn put(&mut self, name: &'static str, value: Value) {
        self.0.insert(name, value);
    }
}

visit_values!(EventFields, put);
visit_values!(SpanFields, put);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tracing::Instrument;

    #[test]
    fn levels_parse_case_insensitively_with_info_as_fallback() {
        assert_eq!(level("DEBUG"), LevelFilter::DEBUG);
        assert_eq!(level(" warn "), LevelFilter::WARN);
        assert_eq!(level("loud"), LevelFilter::INFO);
    }

    /// Runs `log` under a subscriber at `max` and returns the lines it wrote, parsed.
    fn lines(max: LevelFilter, log: impl FnOnce()) -> Vec<serde_json::Map<String, Value>> {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&written);
        let subscriber = JsonLines::new(max, move |line: &[u8]| {
            sink.lock().unwrap().extend_from_slice(line)
        });
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{text}");
        text.lines()
            .map(|line| match serde_json::from_str(line) {
                Ok(Value::Object(map)) => map,
                other => panic!("not a JSON object: {line} ({other:?})"),
            })
            .collect()
    }

    #[test]
    fn an_event_is_one_json_line_with_its_fields_in_order_and_its_innermost_span() {
        let logged = lines(LevelFilter::INFO, || {
            let outer = tracing::info_span!("request", component = "webhook", path = %"/x");
            let _outer = outer.enter();
            let inner = tracing::info_span!("event", r#type = %"message.received", attempt = 2u64);
            let _inner = inner.enter();
            tracing::info!(
                lease = "number",
                until = -5i64,
                ok = true,
                "lease \"acquired\""
            );
        });
        assert_eq!(logged.len(), 1);
        let line = &logged[0];
        let keys: Vec<&str> = line.keys().map(String::as_str).collect();
        assert_eq!(keys, ["fields", "level", "span", "timestamp"]);
        assert_eq!(line["level"], "INFO");
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'),
            "{timestamp}"
        );
        assert_eq!(timestamp.len(), "2026-12-05T04:30:00.123456Z".len());
        assert_eq!(
            line["fields"],
            serde_json::json!({"message": "lease \"acquired\"", "lease": "number", "until": -5, "ok": true})
        );
        assert_eq!(
            line["span"],
            serde_json::json!({"attempt": 2, "type": "message.received", "name": "event"})
        );
    }

    #[test]
    fn the_raw_line_keeps_tracing_subscribers_key_order() {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&written);
        let subscriber = JsonLines::new(LevelFilter::INFO, move |line: &[u8]| {
            sink.lock().unwrap().extend_from_slice(line)
        });
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("tick", run_id = "r1", component = "cron");
            span.in_scope(|| tracing::warn!(b = 1u64, a = 2u64, "late"));
        });
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let after_timestamp = &text[text.find("\",\"level\"").unwrap()..];
        assert_eq!(
            after_timestamp,
            "\",\"level\":\"WARN\",\"fields\":{\"message\":\"late\",\"b\":1,\"a\":2},\
             \"span\":{\"component\":\"cron\",\"run_id\":\"r1\",\"name\":\"tick\"}}\n"
        );
        assert!(text.starts_with("{\"timestamp\":\""), "{text}");
    }

    #[test]
    fn the_level_filters_events_and_an_event_outside_spans_has_no_span() {
        let logged = lines(LevelFilter::WARN, || {
            tracing::info!("too chatty");
            tracing::debug!("far too chatty");
            tracing::error!(code = 7u64, "broken");
        });
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0]["level"], "ERROR");
        assert_eq!(logged[0]["fields"]["message"], "broken");
        assert!(!logged[0].contains_key("span"));

        let everything = lines(LevelFilter::TRACE, || tracing::trace!("all of it"));
        assert_eq!(everything.len(), 1);
        assert!(lines(LevelFilter::OFF, || tracing::error!("nothing")).is_empty());
    }

    #[test]
    fn a_span_is_current_only_while_entered_and_follows_its_future() {
        let logged = lines(LevelFilter::INFO, || {
            let span = tracing::info_span!("drain", owner = "a");
            {
                let _entered = span.enter();
                tracing::info!("inside");
            }
            tracing::info!("outside");
            futures::executor::block_on(
                async { tracing::info!("in the future") }
                    .instrument(tracing::info_span!("write_page", event_id = "e1")),
            );
            // An explicit parent wins over the current span.
            let other = tracing::info_span!("other");
            let _entered = span.enter();
            tracing::info!(parent: &other, "to other");
        });
        let spans: Vec<Option<&str>> = logged
            .iter()
            .map(|line| line.get("span").map(|s| s["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            spans,
            [Some("drain"), None, Some("write_page"), Some("other")]
        );
        assert_eq!(logged[2]["span"]["event_id"], "e1");
    }

    #[test]
    fn values_recorded_later_show_and_closed_spans_are_forgotten() {
        let logged = lines(LevelFilter::INFO, || {
            let span = tracing::info_span!("sync.number", found = tracing::field::Empty);
            span.record("found", 3u64);
            span.in_scope(|| tracing::info!("done"));
        });
        assert_eq!(logged[0]["span"]["found"], 3);

        let subscriber = Arc::new(JsonLines::new(LevelFilter::INFO, |_: &[u8]| {}));
        tracing::subscriber::with_default(Arc::clone(&subscriber), || {
            let span = tracing::info_span!("outbound", service = "notion");
            let clone = span.clone();
            drop(span);
            assert_eq!(subscriber.spans().len(), 1, "a handle is still alive");
            drop(clone);
            assert!(
                subscriber.spans().is_empty(),
                "the closed span is still kept"
            );
        });
    }
}
