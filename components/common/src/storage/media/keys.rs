//! Object keys: what a copy is called in the bucket, its extension and content type, and which call or
//! message a key belongs to.

use chrono::{DateTime, Utc};

use super::records::{Ledger, CALL_MEDIA, MESSAGE_MEDIA};
use super::MediaError;
use crate::platform::Value;

/// What a media file is to its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MediaKind {
    /// A segment of a call's recording.
    Recording,
    /// A call's voicemail.
    Voicemail,
    /// A picture or file of an MMS message.
    Message,
}

impl MediaKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MediaKind::Recording => "recording",
            MediaKind::Voicemail => "voicemail",
            MediaKind::Message => "media",
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

/// The extension of a message medium's key for `content_type`: the image, document, video and contact
/// types MMS carries, the audio types of recordings, else `bin`.
pub fn message_extension_for(content_type: &str) -> &'static str {
    match essence(content_type).as_str() {
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "image/heif" => "heif",
        "image/bmp" => "bmp",
        "image/tiff" => "tiff",
        "image/svg+xml" => "svg",
        "application/pdf" => "pdf",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "video/3gpp" => "3gp",
        "text/vcard" | "text/x-vcard" => "vcf",
        "text/plain" => "txt",
        other => extension_for(other),
    }
}

/// Whether Notion shows `content_type` in an image block: the image types its API documents for image
/// blocks. Anything else goes in a file block.
pub fn is_notion_image(content_type: &str) -> bool {
    matches!(
        essence(content_type).as_str(),
        "image/jpeg"
            | "image/jpg"
            | "image/pjpeg"
            | "image/png"
            | "image/gif"
            | "image/bmp"
            | "image/heic"
            | "image/tiff"
            | "image/svg+xml"
    )
}

/// `type/subtype` in lower case, without parameters.
fn essence(content_type: &str) -> String {
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

/// `YYYY/MM/DD` (UTC) of an object key; written out rather than with chrono's `format`, whose
/// format-string machinery is about 10 KB of every component.
fn key_date(at: DateTime<Utc>) -> String {
    use chrono::Datelike;
    format!("{:04}/{:02}/{:02}", at.year(), at.month(), at.day())
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

/// One media file of one owner: segment `segment` (from 1) of a call's recording, its voicemail
/// (segment 1), or medium `segment` of a message.
pub(super) struct Target<'a> {
    /// The call or message id.
    pub(super) owner: &'a str,
    /// When the owner was created: the date in the key.
    pub(super) created_at: DateTime<Utc>,
    pub(super) kind: MediaKind,
    pub(super) segment: u32,
}

impl Target<'_> {
    /// Refuses an owner id or number that cannot name an object.
    pub(super) fn validate(&self) -> Result<(), MediaError> {
        let id_ok = !self.owner.is_empty()
            && self.owner.len() <= 128
            && self
                .owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            let noun = match self.kind {
                MediaKind::Message => "message id",
                MediaKind::Recording | MediaKind::Voicemail => "call id",
            };
            return Err(MediaError::InvalidTarget(format!(
                "{noun} {:?} cannot be part of an object key",
                self.owner
            )));
        }
        if self.segment == 0 {
            return Err(MediaError::InvalidTarget(
                "segments and positions are numbered from 1".into(),
            ));
        }
        Ok(())
    }

    /// The object key, with `extension` for the content type.
    pub(super) fn key(&self, extension: &str) -> String {
        let date = key_date(self.created_at);
        let (owner, segment) = (self.owner, self.segment);
        match self.kind {
            MediaKind::Recording => format!("recordings/{date}/{owner}-{segment}.{extension}"),
            MediaKind::Voicemail => format!("voicemails/{date}/{owner}.{extension}"),
            MediaKind::Message => format!("media/{date}/{owner}-{segment}.{extension}"),
        }
    }

    /// The extension of the key for a content type.
    pub(super) fn extension(&self) -> fn(&str) -> &'static str {
        match self.kind {
            MediaKind::Recording | MediaKind::Voicemail => extension_for,
            MediaKind::Message => message_extension_for,
        }
    }

    /// The object's metadata: its owner and number, and a recording's duration; never a transcript.
    pub(super) fn metadata(&self, duration: Option<f64>) -> Vec<(String, String)> {
        let (owner, number) = match self.kind {
            MediaKind::Recording | MediaKind::Voicemail => ("call-id", "segment"),
            MediaKind::Message => ("message-id", "position"),
        };
        let mut metadata = vec![
            (owner.to_owned(), self.owner.to_owned()),
            (number.to_owned(), self.segment.to_string()),
        ];
        let duration = duration.filter(|d| d.is_finite() && self.kind != MediaKind::Message);
        if let Some(seconds) = duration {
            metadata.push(("duration".to_owned(), seconds.to_string()));
        }
        metadata
    }

    /// Where the copy is recorded.
    pub(super) fn ledger(&self) -> &'static Ledger {
        match self.kind {
            MediaKind::Recording | MediaKind::Voicemail => &CALL_MEDIA,
            MediaKind::Message => &MESSAGE_MEDIA,
        }
    }

    /// The parameters naming the file in its ledger.
    pub(super) fn params(&self) -> Vec<Value> {
        self.ledger()
            .params(self.owner, self.kind.as_str(), self.segment.into())
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
            owner: CALL,
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
                owner: bad,
                ..target(MediaKind::Recording, 1)
            };
            assert!(t.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extensions_follow_the_content_type_and_images_are_those_notion_shows() {
        for (content_type, extension) in [
            ("image/jpeg", "jpg"),
            ("IMAGE/JPEG; q=1", "jpg"),
            ("image/png", "png"),
            ("image/gif", "gif"),
            ("image/heic", "heic"),
            ("application/pdf", "pdf"),
            ("video/mp4", "mp4"),
            ("text/vcard", "vcf"),
            ("audio/mpeg", "mp3"),
            ("application/octet-stream", "bin"),
        ] {
            assert_eq!(
                message_extension_for(content_type),
                extension,
                "{content_type}"
            );
        }
        assert!(is_notion_image("image/png") && is_notion_image("image/jpeg; x=y"));
        assert!(!is_notion_image("application/pdf") && !is_notion_image("image/webp"));
        for bad in ["AC1/../x", ""] {
            let target = Target {
                owner: bad,
                created_at: created_at(),
                kind: MediaKind::Message,
                segment: 1,
            };
            assert!(target.validate().is_err(), "{bad:?}");
        }
    }
}
