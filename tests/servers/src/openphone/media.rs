//! The media host: recording and voicemail files at registered paths, like the storage bucket the real
//! OpenPhone links to (no auth, `HEAD` supported, `404` for anything unknown).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;

/// What a media path serves.
#[derive(Clone, Debug)]
pub(crate) enum MediaBody {
    Bytes(Bytes),
    /// This many bytes of [`media_pattern`], generated chunk by chunk while streaming.
    Generated(u64),
}

impl MediaBody {
    fn len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::Generated(len) => *len,
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    files: BTreeMap<String, (String, MediaBody)>,
    downloads: BTreeMap<String, u64>,
}

/// Registered files and download counts.
#[derive(Debug, Default)]
pub(crate) struct MediaStore {
    entries: Mutex<Entries>,
}

impl MediaStore {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, path: &str, content_type: &str, body: MediaBody) {
        self.lock().files.insert(
            format!("/{}", path.trim_start_matches('/')),
            (content_type.to_owned(), body),
        );
    }

    pub(crate) fn downloads(&self, path: &str) -> u64 {
        let path = format!("/{}", path.trim_start_matches('/'));
        self.lock().downloads.get(&path).copied().unwrap_or(0)
    }
}

/// Byte `offset..offset+len` of the deterministic pattern that generated media consists of.
///
/// Every byte depends on its absolute offset (a multiplicative hash, not a short cycle), so a copy that
/// drops, repeats or reorders a chunk anywhere in a large file differs from the pattern.
pub fn media_pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect()
}

pub(crate) fn router(store: Arc<MediaStore>) -> Router {
    Router::new().fallback(serve).with_state(store)
}

async fn serve(State(store): State<Arc<MediaStore>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let head = request.method() == Method::HEAD;
    if !head && request.method() != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let entry = {
        let mut entries = store.lock();
        let entry = entries.files.get(&path).cloned();
        if entry.is_some() && !head {
            *entries.downloads.entry(path).or_default() += 1;
        }
        entry
    };
    let Some((content_type, body)) = entry else {
        return (StatusCode::NOT_FOUND, "No such object").into_response();
    };
    let len = body.len();
    let body = if head {
        Body::empty()
    } else {
        match body {
            MediaBody::Bytes(bytes) => Body::from(bytes),
            MediaBody::Generated(len) => Body::from_stream(generate(len)),
        }
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn generate(
    len: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    const CHUNK: u64 = 64 * 1024;
    futures_util::stream::unfold(0u64, move |offset| async move {
        (offset < len).then(|| {
            let n = CHUNK.min(len - offset);
            (
                Ok(Bytes::from(media_pattern(offset, n as usize))),
                offset + n,
            )
        })
    })
}
