//! `S3Server` is a real S3 server that checks SigV4: signed requests work, everything else is refused.
//!
//! The signer below is a minimal SigV4 (header and presigned forms) written for this test only; the
//! positive cases prove it right, so the negative cases prove the server checks.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use test_servers::s3::StoredObject;
use test_servers::S3Server;

const REGION: &str = "auto";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// RFC 3986 encoding as SigV4 wants it (`/` kept in paths only).
fn encode(value: &str, keep_slash: bool) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b'/' if keep_slash => "/".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Signer<'a> {
    host: String,
    access_key: &'a str,
    secret_key: &'a str,
    now: DateTime<Utc>,
}

impl Signer<'_> {
    fn new<'a>(server: &S3Server, access_key: &'a str, secret_key: &'a str) -> Signer<'a> {
        Signer {
            host: server.endpoint().trim_start_matches("http://").to_owned(),
            access_key,
            secret_key,
            now: Utc::now(),
        }
    }

    fn scope(&self) -> String {
        format!("{}/{REGION}/s3/aws4_request", self.now.format("%Y%m%d"))
    }

    fn amz_date(&self) -> String {
        self.now.format("%Y%m%dT%H%M%SZ").to_string()
    }

    fn signature(&self, canonical_request: &str) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.amz_date(),
            self.scope(),
            sha256_hex(canonical_request.as_bytes())
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            &self.now.format("%Y%m%d").to_string(),
        );
        for part in [REGION, "s3", "aws4_request"] {
            key = hmac(&key, part);
        }
        hex(&hmac(&key, &to_sign))
    }

    /// Headers (name, value) for a header-signed request of `path` with `body`.
    fn headers(&self, method: &str, path: &str, body: &[u8]) -> Vec<(String, String)> {
        let payload = sha256_hex(body);
        let date = self.amz_date();
        let canonical = format!(
            "{method}\n{}\n\nhost:{}\nx-amz-content-sha256:{payload}\nx-amz-date:{date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}",
            encode(path, true),
            self.host
        );
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
            self.access_key,
            self.scope(),
            self.signature(&canonical)
        );
        vec![
            ("x-amz-content-sha256".into(), payload),
            ("x-amz-date".into(), date),
            ("authorization".into(), authorization),
        ]
    }

    /// A presigned URL for `method path`, valid for `expires` seconds.
    fn presign(&self, method: &str, path: &str, expires: u32) -> String {
        let mut query = [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_owned()),
            (
                "X-Amz-Credential",
                format!("{}/{}", self.access_key, self.scope()),
            ),
            ("X-Amz-Date", self.amz_date()),
            ("X-Amz-Expires", expires.to_string()),
            ("X-Amz-SignedHeaders", "host".to_owned()),
        ]
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
        .collect::<Vec<_>>();
        query.sort();
        let query = query.join("&");
        let canonical = format!(
            "{method}\n{}\n{query}\nhost:{}\n\nhost\nUNSIGNED-PAYLOAD",
            encode(path, true),
            self.host
        );
        format!(
            "http://{}{}?{query}&X-Amz-Signature={}",
            self.host,
            encode(path, true),
            self.signature(&canonical)
        )
    }
}

async fn send(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = reqwest::Client::new().request(method, url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("request sent");
    (
        response.status().as_u16(),
        response.bytes().await.expect("body").to_vec(),
    )
}

#[tokio::test]
async fn signed_requests_are_stored_and_bad_signatures_refused() {
    let server = S3Server::start().expect("s3s-fs starts (run scripts/install-test-deps)");
    let key = "recordings/2025/10/20/ACone-1.mp3";
    let path = format!("/{}/{key}", server.bucket());
    let url = format!("{}{path}", server.endpoint());
    let body = b"ID3 recording bytes".to_vec();

    let signer = Signer::new(&server, server.access_key(), server.secret_key());
    let (status, response) = send(
        "PUT",
        &url,
        &signer.headers("PUT", &path, &body),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
    assert_eq!(
        server.objects().expect("listing"),
        [StoredObject {
            key: key.into(),
            size: body.len() as u64
        }]
    );
    assert_eq!(server.object_bytes(key).expect("read"), body);
    let (status, fetched) = send("GET", &url, &signer.headers("GET", &path, b""), Vec::new()).await;
    assert_eq!((status, fetched), (200, body.clone()));
    let presigned = signer.presign("GET", &path, 600);
    let (status, fetched) = send("GET", &presigned, &[], Vec::new()).await;
    assert_eq!(
        (status, fetched),
        (200, body.clone()),
        "a presigned GET works"
    );

    let (status, _) = send("GET", &url, &[], Vec::new()).await;
    assert_eq!(status, 403, "unsigned");
    let (status, _) = send("PUT", &format!("{url}.copy"), &[], body.clone()).await;
    assert_eq!(status, 403, "unsigned write");
    let wrong_secret = Signer::new(
        &server,
        server.access_key(),
        "not-the-secret-key-at-all-0000000000000",
    );
    let (status, _) = send(
        "GET",
        &url,
        &wrong_secret.headers("GET", &path, b""),
        Vec::new(),
    )
    .await;
    assert_eq!(status, 403, "wrong secret");
    let (status, _) = send(
        "GET",
        &wrong_secret.presign("GET", &path, 600),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(status, 403, "presigned with a wrong secret");
    let wrong_key = Signer::new(&server, "AKIAWRONGWRONGWRONG1", server.secret_key());
    let (status, _) = send(
        "GET",
        &url,
        &wrong_key.headers("GET", &path, b""),
        Vec::new(),
    )
    .await;
    assert_eq!(status, 403, "unknown access key");
    let tampered = presigned.replace("ACone-1", "ACone-2");
    let (status, _) = send("GET", &tampered, &[], Vec::new()).await;
    assert_eq!(status, 403, "a presigned URL for another key");
    let tampered = presigned.replace("X-Amz-Expires=600", "X-Amz-Expires=700");
    let (status, _) = send("GET", &tampered, &[], Vec::new()).await;
    assert_eq!(status, 403, "a presigned URL with a changed expiry");
    let other_body = b"tampered".to_vec();
    let (status, _) = send(
        "PUT",
        &url,
        &signer.headers("PUT", &path, &body),
        other_body,
    )
    .await;
    // Real S3 answers 400 XAmzContentSHA256Mismatch; s3s-fs 0.14.1 answers 500. Either way it is refused.
    assert!(
        !(200..300).contains(&status),
        "a body that does not match the signed hash: {status}"
    );
    assert_eq!(
        server.object_bytes(key).expect("read"),
        body,
        "nothing was overwritten"
    );
    assert_eq!(server.objects().expect("listing").len(), 1);
}

#[test]
fn dropping_the_server_stops_it() {
    let server = S3Server::start().expect("starts");
    let address = server.endpoint().trim_start_matches("http://").to_owned();
    let root = server.root().to_owned();
    assert!(
        root.join(server.bucket()).is_dir(),
        "the bucket is a directory of the root"
    );
    drop(server);
    assert!(std::net::TcpStream::connect(&address).is_err());
    assert!(!root.exists());
}
