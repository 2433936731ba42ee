//! The simulation's in-memory bucket refuses what S3 refuses: a request without credentials, a header
//! signature without `x-amz-content-sha256`, a presigned request past its expiry, a body shorter than its
//! `Content-Length`, and a multipart upload whose parts but the last are under 5 MiB.

use axum::body::Body;
use axum::http::Request;
use test_servers::s3_memory::{Change, MIN_PART_SIZE};
use test_servers::MemoryS3;
use tower::ServiceExt;

const KEY: &str = "AKIASIMULATED0000001";
/// 2026-03-02T09:00:00Z.
const NOW: i64 = 1_772_442_000_000;

/// The query of a presigned request signed at `NOW` for `expires` seconds (the signature itself is
/// the real server's to check).
fn presigned(extra: &str, expires: u32) -> String {
    format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={KEY}%2F20260302%2Fauto%2Fs3%2Faws4_request\
         &X-Amz-Date=20260302T090000Z&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=00{extra}"
    )
}

async fn send(bucket: &MemoryS3, request: Request<Body>) -> (u16, String) {
    let response = bucket.router().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn put(uri: &str) -> axum::http::request::Builder {
    Request::builder().method("PUT").uri(uri)
}

#[tokio::test]
async fn requests_without_valid_credentials_are_refused() {
    let bucket = MemoryS3::new("recordings", KEY, NOW);
    let unsigned = put("/recordings/a.mp3")
        .header("content-length", "1")
        .body(Body::from(vec![1u8]))
        .unwrap();
    assert_eq!(send(&bucket, unsigned).await.0, 403);

    let no_sha = put("/recordings/a.mp3")
        .header("content-length", "1")
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={KEY}/20260302/auto/s3/aws4_request, SignedHeaders=host, Signature=00"),
        )
        .header("x-amz-date", "20260302T090000Z")
        .body(Body::from(vec![1u8]))
        .unwrap();
    let (status, body) = send(&bucket, no_sha).await;
    assert_eq!(status, 400);
    assert!(body.contains("x-amz-content-sha256"), "{body}");

    let stranger = Request::builder()
        .method("HEAD")
        .uri(format!(
            "/recordings/a.mp3?{}",
            presigned("", 60).replace(KEY, "AKIASOMEBODYELSE0001")
        ))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&bucket, stranger).await.0, 403);

    bucket.set_now_ms(NOW + 61_000);
    let expired = Request::builder()
        .method("GET")
        .uri(format!("/recordings/a.mp3?{}", presigned("", 60)))
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&bucket, expired).await;
    assert_eq!((status, body.contains("expired")), (403, true), "{body}");
    assert!(bucket.objects().is_empty());
}

#[tokio::test]
async fn a_body_must_match_its_length_and_parts_but_the_last_be_5_mib() {
    let bucket = MemoryS3::new("recordings", KEY, NOW);
    let short = put(&format!("/recordings/a.mp3?{}", presigned("", 900)))
        .header("content-length", "10")
        .body(Body::from(vec![1u8; 4]))
        .unwrap();
    assert_eq!(send(&bucket, short).await.0, 400);
    let unknown_length = put(&format!("/recordings/a.mp3?{}", presigned("", 900)))
        .body(Body::from(vec![1u8; 4]))
        .unwrap();
    assert_eq!(send(&bucket, unknown_length).await.0, 411);

    let create = Request::builder()
        .method("POST")
        .uri(format!(
            "/recordings/big.mp3?uploads&{}",
            presigned("", 900)
        ))
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&bucket, create).await;
    assert_eq!(status, 200, "{body}");
    let upload_id = body
        .split("<UploadId>")
        .nth(1)
        .and_then(|rest| rest.split("</UploadId>").next())
        .unwrap()
        .to_owned();
    let mut etags = Vec::new();
    for (n, size) in [(1, 1024usize), (2, 10)] {
        let part = put(&format!(
            "/recordings/big.mp3?partNumber={n}&uploadId={upload_id}&{}",
            presigned("", 900)
        ))
        .header("content-length", size.to_string())
        .body(Body::from(vec![7u8; size]))
        .unwrap();
        let response = bucket.router().oneshot(part).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        etags.push(response.headers()["etag"].to_str().unwrap().to_owned());
    }
    let complete = |etags: &[String]| {
        let parts: String = etags
            .iter()
            .enumerate()
            .map(|(i, e)| {
                format!(
                    "<Part><ETag>{e}</ETag><PartNumber>{}</PartNumber></Part>",
                    i + 1
                )
            })
            .collect();
        Request::builder()
            .method("POST")
            .uri(format!(
                "/recordings/big.mp3?uploadId={upload_id}&{}",
                presigned("", 900)
            ))
            .body(Body::from(format!(
                "<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>"
            )))
            .unwrap()
    };
    let (status, body) = send(&bucket, complete(&etags)).await;
    assert_eq!(status, 400);
    assert!(body.contains("EntityTooSmall"), "{body}");
    assert!(!bucket.contains("big.mp3"));

    // A first part of 5 MiB makes the same upload valid.
    let part = put(&format!(
        "/recordings/big.mp3?partNumber=1&uploadId={upload_id}&{}",
        presigned("", 900)
    ))
    .header("content-length", MIN_PART_SIZE.to_string())
    .body(Body::from(vec![7u8; MIN_PART_SIZE]))
    .unwrap();
    let response = bucket.router().oneshot(part).await.unwrap();
    etags[0] = response.headers()["etag"].to_str().unwrap().to_owned();
    let (status, body) = send(&bucket, complete(&etags)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(bucket.objects()[0].size, MIN_PART_SIZE as u64 + 10);
    assert_eq!(bucket.open_uploads(), 0);
    assert_eq!(
        bucket.history(),
        [(NOW, "big.mp3".to_owned(), Change::Written)]
    );
}
