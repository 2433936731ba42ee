//! Domain types parsed once at the edge: a value of these types is known to be well formed.

use std::fmt;

/// Why an identifier or number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a phone number we can put in E.164 form.
    #[error("{0:?} is not a phone number in E.164 form (+ country code and 8 to 15 digits)")]
    PhoneNumber(String),
    /// Not an id of the expected kind.
    #[error("{kind} {value:?} is not valid: {why}")]
    Id {
        /// Which id.
        kind: &'static str,
        /// The value, shortened.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// A phone number in E.164 form (`+` and 8–15 digits). Formatting people type (spaces, dashes, dots,
/// parentheses) is accepted; ten-digit numbers without a country code are taken as North American.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses a phone number.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let refuse = || ParseError::PhoneNumber(shorten(raw));
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.len() > 40 {
            return Err(refuse());
        }
        let has_plus = trimmed.starts_with('+');
        let body = if has_plus { &trimmed[1..] } else { trimmed };
        let mut digits = String::with_capacity(16);
        for c in body.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(refuse()),
            }
        }
        let digits = match (has_plus, digits.len()) {
            (true, 8..=15) if !digits.starts_with('0') => digits,
            (false, 10) if !digits.starts_with(['0', '1']) => format!("1{digits}"),
            (false, 11) if digits.starts_with('1') => digits,
            _ => return Err(refuse()),
        };
        Ok(Self(format!("+{digits}")))
    }

    /// The number, e.g. `+15555550123`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits without the `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// For North American numbers, the ten national digits.
    pub fn nanp_national(&self) -> Option<&str> {
        let d = self.digits();
        (d.len() == 11 && d.starts_with('1')).then(|| &d[1..])
    }

    /// How a person would write it: `(555) 555-0123` for North American numbers, E.164 otherwise.
    pub fn formatted(&self) -> String {
        match self.nanp_national() {
            Some(n) => format!("({}) {}-{}", &n[..3], &n[3..6], &n[6..]),
            None => self.0.clone(),
        }
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn shorten(raw: &str) -> String {
    raw.chars().take(40).collect()
}

fn parse_id(kind: &'static str, raw: &str, prefixes: &[&str]) -> Result<String, ParseError> {
    let err = |why| ParseError::Id {
        kind,
        value: shorten(raw),
        why,
    };
    if raw.is_empty() {
        return Err(err("empty"));
    }
    if raw.len() > 128 {
        return Err(err("longer than 128 characters"));
    }
    if !raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(err("only letters, digits, '_', '-' and '.' are allowed"));
    }
    if !prefixes.is_empty() && !prefixes.iter().any(|p| raw.starts_with(p)) {
        return Err(err("wrong prefix"));
    }
    Ok(raw.to_owned())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, [$($prefix:literal),*]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses and checks the id.
            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                parse_id($kind, raw, &[$($prefix),*]).map(Self)
            }

            /// The id.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A webhook event id: OpenPhone's `EV…`, or a Standard Webhooks `webhook-id` (`msg_…`).
    EventId, "event id", []
);
id_type!(
    /// A call id (`AC…`). Messages share the prefix, so the prefix says nothing about the kind.
    CallId, "call id", ["AC"]
);
id_type!(
    /// A message id (`AC…`).
    MessageId, "message id", ["AC"]
);
id_type!(
    /// A workspace phone number id (`PN…`).
    PhoneNumberId, "phone number id", ["PN"]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_what_people_type() {
        for raw in [
            "+15555550123",
            "5555550123",
            "15555550123",
            "(555) 555-0123",
            "555.555.0123",
            "555-555-0123",
            "+1 555 555 0123",
        ] {
            assert_eq!(E164::parse(raw).unwrap().as_str(), "+15555550123", "{raw}");
        }
        assert_eq!(
            E164::parse("+442071838750").unwrap().as_str(),
            "+442071838750"
        );
    }

    #[test]
    fn e164_refuses_what_is_not_a_number() {
        for raw in [
            "",
            "+",
            "12345",
            "555-0123",
            "+0123456789",
            "call me",
            "+1555555012x",
            "0555550123",
            "+1234567890123456",
        ] {
            assert!(E164::parse(raw).is_err(), "{raw} was accepted");
        }
        let long = "9".repeat(200);
        let err = E164::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 150, "the error echoes the whole input: {err}");
    }

    #[test]
    fn e164_formats_north_american_numbers() {
        let n = E164::parse("+15555550123").unwrap();
        assert_eq!(n.formatted(), "(555) 555-0123");
        assert_eq!(n.nanp_national(), Some("5555550123"));
        assert_eq!(
            E164::parse("+442071838750").unwrap().formatted(),
            "+442071838750"
        );
    }

    #[test]
    fn ids_check_prefix_and_characters() {
        assert!(CallId::parse("ACbaee66e137f0467dbed5ad4bc8d60800").is_ok());
        assert!(CallId::parse("PN123").is_err());
        assert!(PhoneNumberId::parse("PNtoDbDhuz").is_ok());
        assert!(EventId::parse("msg_2Lh9KRb0pzN4LePd3XiA4xdg8eJ").is_ok());
        assert!(EventId::parse("EV1 2").is_err());
        assert!(EventId::parse("../etc/passwd").is_err());
        assert!(EventId::parse(&"E".repeat(129)).is_err());
    }
}
