//! AWS Signature Version 4, query-string form (presigned URLs), with no I/O.
//!
//! [`presign`] turns a request (method, path, query, headers) into a URL that carries its own signature,
//! as <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html> describes: the
//! payload is not signed (`UNSIGNED-PAYLOAD`), so a body can be streamed and retried as is. Written for
//! the object store ([`super::s3`]) in place of a general S3 crate, whose XML, URL and time machinery
//! made every component that links the store about 0.3 MB larger.

use std::fmt::Write;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// An access key: the id is sent in every URL, the secret only ever enters the signature.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl Credentials {
    /// The key `access_key_id` with its secret.
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
        }
    }

    /// The access key id (public: it is part of every presigned URL).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// One request to presign.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `PUT`, … as sent.
    pub method: &'a str,
    /// `scheme://authority`, without a path, e.g. `https://host:9000`.
    pub origin: &'a str,
    /// The `Host` header the request is sent with: the authority, without a default port.
    pub host: &'a str,
    /// The path, already percent-encoded as AWS canonicalises it (see [`encode`]).
    pub path: &'a str,
    /// Query parameters, not encoded, in any order.
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign besides `host`, lower-case names; the request must be sent with exactly these.
    pub headers: &'a [(&'a str, &'a str)],
}

/// The scope a signature is valid for.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The region (`auto` for R2).
    pub region: &'a str,
    /// The service (`s3`).
    pub service: &'a str,
}

/// The URL of `request`, signed with `credentials` at `now_ms` (Unix milliseconds) and valid for
/// `expires_secs` seconds (S3 accepts 1 to 604800).
pub fn presign(
    request: &Request<'_>,
    credentials: &Credentials,
    scope: Scope<'_>,
    now_ms: i64,
    expires_secs: u64,
) -> String {
    let (date, timestamp) = amz_date(now_ms);
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);

    let mut headers: Vec<(String, String)> = Vec::with_capacity(request.headers.len() + 1);
    if !request.headers.iter().any(|(name, _)| *name == "host") {
        headers.push(("host".to_owned(), request.host.to_owned()));
    }
    for (name, value) in request.headers {
        let name = name.to_ascii_lowercase();
        let value = value.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
        match headers.iter_mut().find(|(n, _)| *n == name) {
            // Repeated headers are signed as one, their values joined in order.
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let expires = expires_secs.to_string();
    let credential = format!("{}/{credential_scope}", credentials.access_key_id);
    let auth = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", timestamp.as_str()),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", signed_headers.as_str()),
    ];
    // Sorted after encoding, as the specification says (servers compare the encoded form).
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .chain(auth.iter())
        .map(|(name, value)| (encode(name, false), encode(value, false)))
        .collect();
    query.sort();
    let mut canonical_query = String::new();
    for (i, (name, value)) in query.iter().enumerate() {
        if i > 0 {
            canonical_query.push('&');
        }
        let _ = write!(canonical_query, "{name}={value}");
    }

    let mut canonical_request =
        format!("{}\n{}\n{canonical_query}\n", request.method, request.path);
    for (name, value) in &headers {
        let _ = writeln!(canonical_request, "{name}:{value}");
    }
    let _ = write!(canonical_request, "\n{signed_headers}\n{UNSIGNED_PAYLOAD}");

    let string_to_sign = format!(
        "{ALGORITHM}\n{timestamp}\n{credential_scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [scope.region, scope.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    format!(
        "{}{}?{canonical_query}&X-Amz-Signature={signature}",
        request.origin, request.path
    )
}

/// `value` percent-encoded as SigV4 canonicalises it: everything but `A-Z a-z 0-9 - . _ ~` (and `/`
/// when `keep_slash`, for an object key in a path), as UTF-8 bytes with upper-case hex.
pub fn encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Reverses percent-encoding (for keys that a listing with `encoding-type=url` returns); `None` when the
/// result is not UTF-8 or an escape is malformed.
pub fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `(YYYYMMDD, YYYYMMDD'T'HHMMSS'Z')` of `ms` in UTC; times before 1970 are clamped to it (a clock that
/// reads them is broken, and the store refuses the signature either way).
fn amz_date(ms: i64) -> (String, String) {
    let secs = ms.max(0) / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_EXAMPLE_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 2013-05-24T00:00:00Z, the time of AWS's S3 examples.
    const AWS_EXAMPLE_MS: i64 = 1_369_353_600_000;

    fn query_param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
        url.split_once('?')?
            .1
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    /// AWS's published example of a presigned `GET` ("Authenticating Requests: Using Query Parameters",
    /// Amazon S3 API reference): the URL, signature included, must match byte for byte.
    #[test]
    fn the_aws_documented_presigned_get_matches() {
        let url = presign(
            &Request {
                method: "GET",
                origin: "https://examplebucket.s3.amazonaws.com",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                headers: &[],
            },
            &Credentials::new(AWS_EXAMPLE_KEY, AWS_EXAMPLE_SECRET),
            Scope {
                region: "us-east-1",
                service: "s3",
            },
            AWS_EXAMPLE_MS,
            86_400,
        );
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    /// Signatures computed independently with botocore 1.44.8 (`S3SigV4QueryAuth`, the presigner of the
    /// AWS SDK for Python) for the same requests, at 2025-10-20T20:00:00Z, region `auto`:
    /// query parameters that need encoding, signed headers with metadata, a key with spaces, `+` and
    /// non-ASCII characters, and a non-default port.
    #[test]
    fn signatures_match_botocore() {
        let credentials = Credentials::new("AKID", "SECRET");
        let scope = Scope {
            region: "auto",
            service: "s3",
        };
        let at = 1_760_990_400_000;
        let cases: [(Request<'_>, &str); 3] = [
            (
                Request {
                    method: "GET",
                    origin: "http://127.0.0.1:9000",
                    host: "127.0.0.1:9000",
                    path: "/recordings/",
                    query: &[
                        ("list-type", "2"),
                        ("prefix", "r/2025 10/"),
                        ("continuation-token", "1/ab+c=="),
                        ("max-keys", "1000"),
                        ("encoding-type", "url"),
                    ],
                    headers: &[],
                },
                BOTOCORE_LIST,
            ),
            (
                Request {
                    method: "PUT",
                    origin: "https://0123abcd.r2.cloudflarestorage.com",
                    host: "0123abcd.r2.cloudflarestorage.com",
                    path: &encoded_key_path(),
                    query: &[],
                    headers: &[
                        ("content-type", "audio/mpeg"),
                        ("x-amz-meta-call-id", "AC1"),
                    ],
                },
                BOTOCORE_PUT,
            ),
            (
                Request {
                    method: "POST",
                    origin: "https://0123abcd.r2.cloudflarestorage.com",
                    host: "0123abcd.r2.cloudflarestorage.com",
                    path: "/recordings/r/a.mp3",
                    query: &[("uploadId", "2~x/y+z"), ("partNumber", "7")],
                    headers: &[],
                },
                BOTOCORE_UPLOAD_ID,
            ),
        ];
        for (request, expected) in cases {
            let url = presign(&request, &credentials, scope, at, 900);
            assert_eq!(
                query_param(&url, "X-Amz-Signature"),
                Some(expected),
                "{url}"
            );
        }
    }

    const BOTOCORE_LIST: &str = "bbf4a330986c0221d84eb7b72a4e38e5789656ff3bfc43731a50c0de9c1c3faa";
    const BOTOCORE_PUT: &str = "af709c574ff34e591e98cdda2c6b81adf7c5c23f14244b3eecef60fdb2b06697";
    const BOTOCORE_UPLOAD_ID: &str =
        "526201eed88b0ef56aff3607e3354e9ef016bb947f00191264a31f8c334c1877";

    fn encoded_key_path() -> String {
        format!(
            "/{}/{}",
            encode("recordings", false),
            encode("r/2025/a b+c ü.mp3", true)
        )
    }

    #[test]
    fn every_signed_part_changes_the_signature() {
        let credentials = Credentials::new("AKID", "SECRET");
        let scope = Scope {
            region: "auto",
            service: "s3",
        };
        let base = Request {
            method: "PUT",
            origin: "https://h",
            host: "h",
            path: "/b/k",
            query: &[("partNumber", "1")],
            headers: &[("content-type", "audio/mpeg")],
        };
        let sign = |r: &Request<'_>| presign(r, &credentials, scope, AWS_EXAMPLE_MS, 900);
        let reference = sign(&base);
        let variants = [
            Request {
                method: "POST",
                ..base
            },
            Request {
                host: "h:8443",
                ..base
            },
            Request {
                path: "/b/k2",
                ..base
            },
            Request {
                query: &[("partNumber", "2")],
                ..base
            },
            Request {
                headers: &[("content-type", "audio/mp4")],
                ..base
            },
        ];
        for variant in &variants {
            assert_ne!(
                query_param(&sign(variant), "X-Amz-Signature"),
                query_param(&reference, "X-Amz-Signature"),
                "{variant:?}"
            );
        }
        let other_secret = presign(
            &base,
            &Credentials::new("AKID", "OTHER"),
            scope,
            AWS_EXAMPLE_MS,
            900,
        );
        assert_ne!(
            query_param(&other_secret, "X-Amz-Signature"),
            query_param(&reference, "X-Amz-Signature")
        );
        assert_eq!(
            query_param(&reference, "X-Amz-SignedHeaders"),
            Some("content-type%3Bhost")
        );
    }

    #[test]
    fn dates_match_chrono_across_the_calendar() {
        let samples = [
            0,
            951_782_400_000,     // 2000-02-29
            1_709_208_000_000,   // 2024-02-29T12:00:00Z
            1_735_689_599_999,   // 2024-12-31T23:59:59.999Z
            4_107_542_399_000,   // 2100-02-28T23:59:59Z
            253_402_300_799_000, // 9999-12-31T23:59:59Z
            AWS_EXAMPLE_MS + 3_723_000,
        ];
        for ms in samples {
            let expected = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            assert_eq!(
                amz_date(ms),
                (
                    expected.format("%Y%m%d").to_string(),
                    expected.format("%Y%m%dT%H%M%SZ").to_string()
                ),
                "{ms}"
            );
        }
    }

    #[test]
    fn encoding_round_trips_and_keeps_only_unreserved_characters() {
        assert_eq!(encode("a-b._~/c d+é", false), "a-b._~%2Fc%20d%2B%C3%A9");
        assert_eq!(encode("a-b._~/c d+é", true), "a-b._~/c%20d%2B%C3%A9");
        assert_eq!(
            decode("r/a%2Bb%20%C3%A9.mp3").as_deref(),
            Some("r/a+b é.mp3")
        );
        assert_eq!(decode("bad%2"), None);
        assert_eq!(decode("bad%zz"), None);
        assert_eq!(decode("%FF"), None);
    }

    #[test]
    fn the_secret_is_never_shown() {
        let shown = format!("{:?}", Credentials::new("AKID", "SECRET-VALUE"));
        assert!(shown.contains("AKID"), "{shown}");
        assert!(!shown.contains("SECRET-VALUE"), "{shown}");
    }
}
