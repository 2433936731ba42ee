//! Object keys: what a copy is called in the bucket, its extension and content type, and which call or
//! message a key belongs to.

use chrono::{DateTime, Utc};

use super::MediaError;
use crate::platform::Value;

/// What a media file is to its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MediaKind {
    /// A segment of the call's recording.
    Recording,
    /// The call's voicemail.
    Voicemail,
}

impl MediaKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MediaKind::Recording => "recording",
            MediaKind::Voicemail => "voicemail",
        }
    }
}

/// The extension of an object key for `content_type`: `mp3`, `m4a`, `wav`, `ogg`, `webm`, else `bin`.
pub fn extension_for(content_type: &str) -> &'static str {
    match essence(content_type).as_str() {
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/ogg" => "ogg",
        "audio/webm" => "webm",
        _ => "bin",
    }
}

/// `type/subtype` in lower case, without parameters.
pub(in crate::storage) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// OpenPhone's declared type, else the one the media host served; a type `extension` knows wins over an
/// unknown one (hosts often serve `application/octet-stream`).
pub(super) fn choose_content_type(
    declared: Option<&str>,
    served: Option<&str>,
    extension: fn(&str) -> &'static str,
) -> String {
    let candidates: Vec<String> = [declared, served]
        .into_iter()
        .flatten()
        .map(essence)
        .filter(|c| !c.is_empty())
        .collect();
    candidates
        .iter()
        .find(|c| extension(c) != "bin")
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// `url` without its query or fragment, which may hold a signature: what errors and logs show.
pub(super) fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_owned()
}

/// What an object key is a copy of, as `retired_media` names it: `(owner id, kind, segment)` for
/// `recordings/…/<callId>-<n>.<ext>`, `voicemails/…/<callId>.<ext>` and `media/…/<messageId>-<n>.<ext>`;
/// `None` for a key the copiers do not make.
pub fn retirement_of(key: &str) -> Option<(String, &'static str, u32)> {
    let (prefix, rest) = key.split_once('/')?;
    // `YYYY/MM/DD/` then the file name.
    let name = rest.get(11..).filter(|_| rest.get(10..11) == Some("/"))?;
    let (stem, _extension) = name.rsplit_once('.')?;
    let numbered = || {
        let (owner, n) = stem.rsplit_once('-')?;
        let n = n.parse::<u32>().ok().filter(|n| *n > 0)?;
        Some((owner.to_owned(), n))
    };
    let (owner, kind, segment) = match prefix {
        "recordings" => numbered().map(|(owner, n)| (owner, "recording", n))?,
        "voicemails" => (stem.to_owned(), "voicemail", 1),
        "media" => numbered().map(|(owner, n)| (owner, "media", n))?,
        _ => return None,
    };
    (!owner.is_empty() && !owner.contains('/')).then_some((owner, kind, segment))
}

/// One media file of one call.
pub(super) struct Target<'a> {
    pub(super) call_id: &'a str,
    pub(super) created_at: DateTime<Utc>,
    pub(super) kind: MediaKind,
    pub(super) segment: u32,
}

impl Target<'_> {
    pub(super) fn validate(&self) -> Result<(), MediaError> {
        let id_ok = !self.call_id.is_empty()
            && self.call_id.len() <= 128
            && self
                .call_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            return Err(MediaError::InvalidTarget(format!(
                "call id {:?} cannot be part of an object key",
                self.call_id
            )));
        }
        if self.segment == 0 {
            return Err(MediaError::InvalidTarget(
                "recording segments are numbered from 1".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn key(&self, extension: &str) -> String {
        let date = self.created_at.format("%Y/%m/%d");
        match self.kind {
            MediaKind::Recording => format!(
                "recordings/{date}/{}-{}.{extension}",
                self.call_id, self.segment
            ),
            MediaKind::Voicemail => format!("voicemails/{date}/{}.{extension}", self.call_id),
        }
    }

    pub(super) fn metadata(&self, duration: Option<f64>) -> Vec<(String, String)> {
        let mut metadata = vec![
            ("call-id".to_owned(), self.call_id.to_owned()),
            ("segment".to_owned(), self.segment.to_string()),
        ];
        if let Some(seconds) = duration.filter(|d| d.is_finite()) {
            metadata.push(("duration".to_owned(), seconds.to_string()));
        }
        metadata
    }

    pub(super) fn params(&self) -> [Value; 3] {
        [
            self.call_id.into(),
            self.kind.as_str().into(),
            self.segment.into(),
        ]
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{created_at, CALL};
    use super::*;

    #[test]
    fn extensions_follow_the_content_type() {
        for (content_type, extension) in [
            ("audio/mpeg", "mp3"),
            ("Audio/MPEG; charset=binary", "mp3"),
            ("audio/mp4", "m4a"),
            ("audio/m4a", "m4a"),
            ("audio/x-m4a", "m4a"),
            ("audio/wav", "wav"),
            ("audio/x-wav", "wav"),
            ("audio/ogg", "ogg"),
            ("audio/webm", "webm"),
            ("application/octet-stream", "bin"),
            ("", "bin"),
        ] {
            assert_eq!(extension_for(content_type), extension, "{content_type}");
        }
        assert_eq!(
            choose_content_type(
                Some("audio/mpeg"),
                Some("application/octet-stream"),
                extension_for
            ),
            "audio/mpeg"
        );
        assert_eq!(
            choose_content_type(
                Some("application/octet-stream"),
                Some("audio/ogg"),
                extension_for
            ),
            "audio/ogg"
        );
        assert_eq!(
            choose_content_type(None, Some("video/mp4"), extension_for),
            "video/mp4"
        );
        assert_eq!(
            choose_content_type(None, None, extension_for),
            "application/octet-stream"
        );
    }

    #[test]
    fn keys_are_dated_in_utc_and_numbered_from_one() {
        let target = |kind, segment| Target {
            call_id: CALL,
            created_at: created_at(),
            kind,
            segment,
        };
        assert_eq!(
            target(MediaKind::Recording, 2).key("m4a"),
            format!("recordings/2025/10/21/{CALL}-2.m4a")
        );
        assert_eq!(
            target(MediaKind::Voicemail, 1).key("mp3"),
            format!("voicemails/2025/10/21/{CALL}.mp3")
        );
        assert!(target(MediaKind::Recording, 0).validate().is_err());
        for bad in ["", "AC1/../x", "AC 1", "AC1?x"] {
            let t = Target {
                call_id: bad,
                ..target(MediaKind::Recording, 1)
            };
            assert!(t.validate().is_err(), "{bad:?}");
        }
    }
}
