//! Webhook signature verification, pure: no I/O, the time is a parameter.
//!
//! Two schemes, chosen by the headers present:
//!
//! - **legacy OpenPhone** `openphone-signature: hmac;1;<timestamp-ms>;<base64>` (several may be sent,
//!   comma-separated), HMAC-SHA256 over `<timestamp>.<raw body>`;
//! - **Standard Webhooks** (Quo's 2026 webhooks): `webhook-id`, `webhook-timestamp` (seconds) and
//!   `webhook-signature: v1,<base64> [v1,<base64> …]`, HMAC-SHA256 over `<id>.<timestamp>.<raw body>`.
//!
//! Both are checked over the raw body bytes with every configured key, compared in constant time, and
//! refused when the signed timestamp is more than [`TOLERANCE_MS`] away from now.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::api::Request;

/// How far a signature's timestamp may be from now, either way: replays older than this are refused.
pub const TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// Signatures looked at in one header; more are ignored so a huge header costs bounded work. A sender
/// signs with one key, or two while rotating; each signed timestamp costs one MAC per key.
const MAX_SIGNATURES: usize = 4;

/// Timestamps with fewer digits than this are seconds, not milliseconds (13 digits until the year 2286).
const MILLISECOND_DIGITS: usize = 12;

/// The signature headers of a request, trimmed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    /// `openphone-signature` (legacy scheme).
    pub openphone_signature: Option<&'a str>,
    /// `webhook-id` (Standard Webhooks).
    pub webhook_id: Option<&'a str>,
    /// `webhook-timestamp`, seconds (Standard Webhooks).
    pub webhook_timestamp: Option<&'a str>,
    /// `webhook-signature` (Standard Webhooks).
    pub webhook_signature: Option<&'a str>,
}

impl<'a> SignatureHeaders<'a> {
    /// The signature headers of `request`.
    pub fn of(request: &'a Request) -> Self {
        let header = |name| request.header(name).map(str::trim);
        Self {
            openphone_signature: header("openphone-signature"),
            webhook_id: header("webhook-id"),
            webhook_timestamp: header("webhook-timestamp"),
            webhook_signature: header("webhook-signature"),
        }
    }
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The legacy `openphone-signature` scheme.
    Legacy,
    /// Standard Webhooks; its `webhook-id` is signed, so it may serve as the event id.
    Standard {
        /// The `webhook-id` header.
        webhook_id: String,
    },
}

/// Why a request's signature was refused. Each is a `401`; the message tells the sender which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header at all.
    #[error("missing signature: expected an openphone-signature header or webhook-id, webhook-timestamp and webhook-signature headers")]
    Missing,
    /// A header is there but not in the expected format.
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    /// Well formed, but signed too long ago (or in the future): a replay, or a badly wrong clock.
    #[error("stale signature: its timestamp is more than 5 minutes from the current time")]
    Stale,
    /// Well formed and recent, but no signature matches the body with any configured key.
    #[error("invalid signature: it does not match the request body")]
    Mismatch,
    /// No signing key is configured, so nothing can verify.
    #[error("no webhook signing key is configured (openphone_webhook_secret)")]
    NoKey,
}

impl SignatureError {
    /// How close a candidate got: when several signatures fail, the closest failure is reported.
    fn rank(&self) -> u8 {
        match self {
            SignatureError::NoKey => 4,
            SignatureError::Mismatch => 3,
            SignatureError::Stale => 2,
            SignatureError::Malformed(_) => 1,
            SignatureError::Missing => 0,
        }
    }

    fn closest(a: Option<Self>, b: Self) -> Self {
        match a {
            Some(a) if a.rank() >= b.rank() => a,
            _ => b,
        }
    }
}

/// Verifies `body` against the signature headers with any of `keys`, at `now_ms`. When both schemes'
/// headers are present, either may verify.
pub fn verify(
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    keys: &[Vec<u8>],
    now_ms: i64,
) -> Result<Verified, SignatureError> {
    let standard = headers.webhook_signature.map(|signature| {
        verify_standard(
            headers.webhook_id,
            headers.webhook_timestamp,
            signature,
            body,
            keys,
            now_ms,
        )
    });
    let legacy = headers
        .openphone_signature
        .map(|header| verify_legacy(header, body, keys, now_ms).map(|()| Verified::Legacy));
    match (standard, legacy) {
        (Some(Ok(v)), _) | (_, Some(Ok(v))) => Ok(v),
        (Some(Err(a)), Some(Err(b))) => Err(SignatureError::closest(Some(a), b)),
        (Some(Err(e)), None) | (None, Some(Err(e))) => Err(e),
        (None, None) => Err(SignatureError::Missing),
    }
}

/// The legacy scheme: `hmac;1;<timestamp>;<base64>`, comma-separated.
pub fn verify_legacy(
    header: &str,
    body: &[u8],
    keys: &[Vec<u8>],
    now_ms: i64,
) -> Result<(), SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::NoKey);
    }
    let mut closest = None;
    // The MACs of each signed timestamp, computed once whatever the number of signatures with it.
    let mut expected: Vec<(&str, Expected)> = Vec::new();
    for part in header.split(',').take(MAX_SIGNATURES) {
        let outcome = parse_legacy(part.trim()).and_then(|(timestamp, signature)| {
            check_window(timestamp_ms(timestamp)?, now_ms)?;
            let index = match expected.iter().position(|(t, _)| *t == timestamp) {
                Some(index) => index,
                None => {
                    let macs = Expected::of(keys, &[timestamp.as_bytes(), b".", body]);
                    expected.push((timestamp, macs));
                    expected.len() - 1
                }
            };
            expected[index].1.check(&signature)
        });
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => closest = Some(SignatureError::closest(closest, e)),
        }
    }
    Err(closest.unwrap_or(SignatureError::Malformed(
        "empty openphone-signature header",
    )))
}

/// `hmac;1;<timestamp>;<base64>` → timestamp text and signature bytes.
fn parse_legacy(part: &str) -> Result<(&str, Vec<u8>), SignatureError> {
    let mut fields = part.split(';');
    let (Some(scheme), Some(version), Some(timestamp), Some(signature), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(SignatureError::Malformed(
            "openphone-signature must be hmac;1;<timestamp>;<base64 signature>",
        ));
    };
    if scheme != "hmac" || version != "1" {
        return Err(SignatureError::Malformed(
            "openphone-signature scheme must be hmac, version 1",
        ));
    }
    let signature = STANDARD
        .decode(signature)
        .map_err(|_| SignatureError::Malformed("openphone-signature digest is not base64"))?;
    Ok((timestamp, signature))
}

/// A legacy timestamp in milliseconds. OpenPhone sends milliseconds; a seconds value is accepted too,
/// because the unit is only inferred from OpenPhone's example.
fn timestamp_ms(timestamp: &str) -> Result<i64, SignatureError> {
    let value = parse_digits(timestamp).ok_or(SignatureError::Malformed(
        "signature timestamp is not a number",
    ))?;
    if timestamp.len() >= MILLISECOND_DIGITS {
        Ok(value)
    } else {
        Ok(value.saturating_mul(1000))
    }
}

/// Standard Webhooks: `v1,<base64>`, space-separated, over `<id>.<timestamp>.<body>`.
pub fn verify_standard(
    webhook_id: Option<&str>,
    webhook_timestamp: Option<&str>,
    webhook_signature: &str,
    body: &[u8],
    keys: &[Vec<u8>],
    now_ms: i64,
) -> Result<Verified, SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::NoKey);
    }
    let (Some(id), Some(timestamp)) = (webhook_id, webhook_timestamp) else {
        return Err(SignatureError::Malformed(
            "webhook-signature needs webhook-id and webhook-timestamp headers",
        ));
    };
    if id.is_empty() {
        return Err(SignatureError::Malformed("webhook-id is empty"));
    }
    let seconds = parse_digits(timestamp).ok_or(SignatureError::Malformed(
        "webhook-timestamp is not a number of seconds",
    ))?;
    check_window(seconds.saturating_mul(1000), now_ms)?;
    let mut closest = None;
    // Every candidate signs the same id, timestamp and body: one MAC per key serves them all.
    let mut expected = None;
    for candidate in webhook_signature
        .split(' ')
        .filter(|s| !s.is_empty())
        .take(MAX_SIGNATURES)
    {
        let outcome = match candidate.split_once(',') {
            // Other versions (e.g. `v1a` asymmetric signatures) are not ours to check.
            Some(("v1", encoded)) => STANDARD
                .decode(encoded)
                .map_err(|_| SignatureError::Malformed("webhook-signature is not base64"))
                .and_then(|signature| {
                    expected
                        .get_or_insert_with(|| {
                            Expected::of(
                                keys,
                                &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
                            )
                        })
                        .check(&signature)
                }),
            _ => Err(SignatureError::Malformed(
                "webhook-signature must be v1,<base64 signature>",
            )),
        };
        match outcome {
            Ok(()) => {
                return Ok(Verified::Standard {
                    webhook_id: id.to_owned(),
                })
            }
            Err(e) => closest = Some(SignatureError::closest(closest, e)),
        }
    }
    Err(closest.unwrap_or(SignatureError::Malformed("empty webhook-signature header")))
}

/// ASCII digits only (no sign, no spaces), at most 18 of them so the value fits an `i64`.
fn parse_digits(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn check_window(signed_at_ms: i64, now_ms: i64) -> Result<(), SignatureError> {
    if now_ms.abs_diff(signed_at_ms) > TOLERANCE_MS.unsigned_abs() {
        Err(SignatureError::Stale)
    } else {
        Ok(())
    }
}

/// The HMAC-SHA256 of one signed message under each key, to compare candidate signatures with.
struct Expected(Vec<[u8; 32]>);

impl Expected {
    fn of(keys: &[Vec<u8>], parts: &[&[u8]]) -> Self {
        Self(
            keys.iter()
                .map(|key| {
                    let mut mac = Hmac::<Sha256>::new_from_slice(key)
                        .expect("HMAC accepts keys of any length");
                    for part in parts {
                        mac.update(part);
                    }
                    mac.finalize().into_bytes().into()
                })
                .collect(),
        )
    }

    /// Whether `signature` is the MAC under any key, compared in constant time. Every key's MAC is
    /// compared even after a match, so timing does not tell which key matched.
    fn check(&self, signature: &[u8]) -> Result<(), SignatureError> {
        let matched = self.0.iter().fold(Choice::from(0), |matched, mac| {
            matched | mac.as_slice().ct_eq(signature)
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The base64 HMAC-SHA256 of the concatenated `parts` under `key`: what a sender puts in its header.
/// Used by tests and by tools that send signed requests.
pub fn sign(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// An `openphone-signature` header value for `body` signed at `timestamp_ms`.
pub fn legacy_header(key: &[u8], timestamp_ms: i64, body: &[u8]) -> String {
    let timestamp = timestamp_ms.to_string();
    format!(
        "hmac;1;{timestamp};{}",
        sign(key, &[timestamp.as_bytes(), b".", body])
    )
}

/// A `webhook-signature` header value for `body` with `webhook_id`, signed at `timestamp_s` (seconds).
pub fn standard_header(key: &[u8], webhook_id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let timestamp = timestamp_s.to_string();
    format!(
        "v1,{}",
        sign(
            key,
            &[
                webhook_id.as_bytes(),
                b".",
                timestamp.as_bytes(),
                b".",
                body
            ]
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_760_988_145_427;
    const BODY: &[u8] = br#"{"id":"EV1","type":"call.completed"}"#;

    fn key() -> Vec<u8> {
        b"secret-key".to_vec()
    }

    fn legacy(header: &str) -> SignatureHeaders<'_> {
        SignatureHeaders {
            openphone_signature: Some(header),
            ..Default::default()
        }
    }

    fn standard<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> SignatureHeaders<'a> {
        SignatureHeaders {
            webhook_id: Some(id),
            webhook_timestamp: Some(ts),
            webhook_signature: Some(sig),
            ..Default::default()
        }
    }

    #[test]
    fn legacy_signature_over_timestamp_and_raw_body_verifies() {
        let header = legacy_header(&key(), NOW - 1_000, BODY);
        assert_eq!(
            verify(&legacy(&header), BODY, &[key()], NOW),
            Ok(Verified::Legacy)
        );
    }

    #[test]
    fn legacy_signature_matches_openphones_documented_construction() {
        // HMAC-SHA256(key, "<ts>.<body>") in standard base64, computed independently of `sign`.
        let key = STANDARD.decode("c2VjcmV0LWtleQ==").unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{NOW}.").as_bytes());
        mac.update(BODY);
        let digest = STANDARD.encode(mac.finalize().into_bytes());
        let header = format!("hmac;1;{NOW};{digest}");
        assert!(verify_legacy(&header, BODY, &[key], NOW).is_ok());
    }

    #[test]
    fn any_of_several_legacy_signatures_and_any_key_may_match() {
        let good = legacy_header(&key(), NOW, BODY);
        let other = legacy_header(b"other", NOW, BODY);
        let header = format!("{other}, {good}");
        assert!(verify(&legacy(&header), BODY, &[key()], NOW).is_ok());
        // The right key second in the configured list.
        assert!(verify(&legacy(&other), BODY, &[key(), b"other".to_vec()], NOW).is_ok());
    }

    #[test]
    fn legacy_signature_refuses_a_changed_body_or_wrong_key() {
        let header = legacy_header(&key(), NOW, BODY);
        let mut changed = BODY.to_vec();
        changed[3] ^= 1;
        assert_eq!(
            verify(&legacy(&header), &changed, &[key()], NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&legacy(&header), BODY, &[b"wrong".to_vec()], NOW),
            Err(SignatureError::Mismatch)
        );
        // Re-serialized JSON (spaces added) is a different body: the raw bytes are what is signed.
        let spaced = br#"{"id": "EV1", "type": "call.completed"}"#;
        assert_eq!(
            verify(&legacy(&header), spaced, &[key()], NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn only_the_first_few_signatures_of_a_header_are_looked_at() {
        let wrong = legacy_header(b"other", NOW, BODY);
        let good = legacy_header(&key(), NOW, BODY);
        let within = [vec![wrong.as_str(); 3], vec![good.as_str()]].concat();
        assert!(verify(&legacy(&within.join(",")), BODY, &[key()], NOW).is_ok());
        // Four are looked at (one key, or two while rotating): a header of many signatures costs the
        // work of a few, and the one past the limit is not checked.
        let past = [vec![wrong.as_str(); 4], vec![good.as_str()]].concat();
        assert_eq!(
            verify(&legacy(&past.join(",")), BODY, &[key()], NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_replayed_signature_outside_the_window_is_stale() {
        let old = legacy_header(&key(), NOW - TOLERANCE_MS - 1, BODY);
        assert_eq!(
            verify(&legacy(&old), BODY, &[key()], NOW),
            Err(SignatureError::Stale)
        );
        let future = legacy_header(&key(), NOW + TOLERANCE_MS + 1, BODY);
        assert_eq!(
            verify(&legacy(&future), BODY, &[key()], NOW),
            Err(SignatureError::Stale)
        );
        // The edge of the window is still inside.
        let edge = legacy_header(&key(), NOW - TOLERANCE_MS, BODY);
        assert!(verify(&legacy(&edge), BODY, &[key()], NOW).is_ok());
    }

    #[test]
    fn legacy_timestamps_in_seconds_are_understood() {
        let seconds = NOW / 1000;
        let signature = sign(&key(), &[seconds.to_string().as_bytes(), b".", BODY]);
        let header = format!("hmac;1;{seconds};{signature}");
        assert!(verify(&legacy(&header), BODY, &[key()], NOW).is_ok());
    }

    #[test]
    fn malformed_legacy_headers_say_what_is_wrong() {
        for header in [
            "",
            "hmac;1;123",
            "hmac;2;1760988145427;AAAA",
            "sha1;1;1760988145427;AAAA",
            "hmac;1;17609881x5427;AAAA",
            "hmac;1;-1760988145427;AAAA",
            "hmac;1;1760988145427;not base64!",
            "hmac;1;1760988145427;AAAA;extra",
        ] {
            assert!(
                matches!(
                    verify(&legacy(header), BODY, &[key()], NOW),
                    Err(SignatureError::Malformed(_))
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn no_header_or_no_key_is_refused() {
        assert_eq!(
            verify(&SignatureHeaders::default(), BODY, &[key()], NOW),
            Err(SignatureError::Missing)
        );
        let header = legacy_header(&key(), NOW, BODY);
        assert_eq!(
            verify(&legacy(&header), BODY, &[], NOW),
            Err(SignatureError::NoKey)
        );
    }

    #[test]
    fn standard_webhooks_signature_verifies_with_the_signed_id() {
        let ts = (NOW / 1000).to_string();
        let sig = standard_header(&key(), "msg_2Lh9KRb0", NOW / 1000, BODY);
        let both = format!("v1,AAAA {sig}");
        assert_eq!(
            verify(&standard("msg_2Lh9KRb0", &ts, &both), BODY, &[key()], NOW),
            Ok(Verified::Standard {
                webhook_id: "msg_2Lh9KRb0".into()
            })
        );
        // The id is part of what is signed: another id does not verify.
        assert_eq!(
            verify(&standard("msg_other", &ts, &sig), BODY, &[key()], NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn standard_webhooks_refuses_stale_and_incomplete_headers() {
        let old = NOW / 1000 - 301;
        let sig = standard_header(&key(), "msg_1", old, BODY);
        assert_eq!(
            verify(
                &standard("msg_1", &old.to_string(), &sig),
                BODY,
                &[key()],
                NOW
            ),
            Err(SignatureError::Stale)
        );
        let headers = SignatureHeaders {
            webhook_signature: Some(&sig),
            ..Default::default()
        };
        assert!(matches!(
            verify(&headers, BODY, &[key()], NOW),
            Err(SignatureError::Malformed(_))
        ));
        let ts = (NOW / 1000).to_string();
        assert!(matches!(
            verify(&standard("msg_1", &ts, "v2,AAAA"), BODY, &[key()], NOW),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn the_closest_failure_is_reported_when_both_schemes_fail() {
        let ts = (NOW / 1000).to_string();
        let headers = SignatureHeaders {
            openphone_signature: Some("garbage"),
            webhook_id: Some("msg_1"),
            webhook_timestamp: Some(&ts),
            webhook_signature: Some("v1,AAAA"),
        };
        assert_eq!(
            verify(&headers, BODY, &[key()], NOW),
            Err(SignatureError::Mismatch)
        );
    }

    fn arbitrary_header() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            any::<String>().prop_map(Some),
            "(hmac|v1)?[;,. 0-9a-zA-Z+/=]{0,80}".prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_headers_and_bodies_never_panic_or_verify(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            openphone in arbitrary_header(),
            id in arbitrary_header(),
            ts in prop_oneof![Just(None), (0i64..4_000_000_000).prop_map(|t| Some(t.to_string())), arbitrary_header()],
            sig in arbitrary_header(),
            now in any::<i64>(),
        ) {
            let headers = SignatureHeaders {
                openphone_signature: openphone.as_deref(),
                webhook_id: id.as_deref(),
                webhook_timestamp: ts.as_deref(),
                webhook_signature: sig.as_deref(),
            };
            prop_assert!(verify(&headers, &body, &[key()], now).is_err());
        }

        #[test]
        fn valid_signatures_over_arbitrary_bodies_verify(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            signing_key in proptest::collection::vec(any::<u8>(), 1..64),
            skew in -TOLERANCE_MS..=TOLERANCE_MS,
            webhook_id in "msg_[A-Za-z0-9]{1,30}",
        ) {
            let keys = [b"unrelated".to_vec(), signing_key.clone()];
            let signed_at = NOW + skew;
            let header = legacy_header(&signing_key, signed_at, &body);
            prop_assert_eq!(verify(&legacy(&header), &body, &keys, NOW), Ok(Verified::Legacy));

            // Standard Webhooks timestamps are whole seconds; half the skew stays inside the window.
            let seconds = (NOW + skew / 2) / 1000;
            let sig = standard_header(&signing_key, &webhook_id, seconds, &body);
            let ts = seconds.to_string();
            let verified = verify(&standard(&webhook_id, &ts, &sig), &body, &keys, NOW);
            prop_assert_eq!(verified, Ok(Verified::Standard { webhook_id: webhook_id.clone() }));
        }
    }
}
