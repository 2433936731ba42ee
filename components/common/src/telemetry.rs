//! Structured logs: one JSON object per line on stderr (Spin collects component stderr), filtered by the
//! `log_level` variable. Secrets and message bodies are never passed to `tracing` in the first place.

use tracing::level_filters::LevelFilter;

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
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_max_level(level(log_level))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_case_insensitively_with_info_as_fallback() {
        assert_eq!(level("DEBUG"), LevelFilter::DEBUG);
        assert_eq!(level(" warn "), LevelFilter::WARN);
        assert_eq!(level("loud"), LevelFilter::INFO);
    }
}
