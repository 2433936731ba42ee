//! Object storage: the S3 protocol and client ([`s3`], signed by [`sigv4`]), and the copy of call
//! recordings and voicemails and of the pictures and files of MMS messages from OpenPhone's media host
//! into it ([`media`]).

pub mod media;
pub mod s3;
pub mod sigv4;

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod testing;

/// Recordings, voicemails and message media, as `/stats` reports them.
#[derive(Debug, Default, serde::Serialize, PartialEq)]
pub struct MediaCounts {
    /// Objects stored.
    pub stored: i64,
    /// Bytes stored.
    pub bytes: i64,
    /// Media that was gone (404) when we went to copy it.
    pub gone: i64,
}

/// Counts the copies recorded in `media_objects` (recordings, voicemails) and `message_media` together.
pub fn media_counts(platform: &crate::platform::Platform) -> anyhow::Result<MediaCounts> {
    platform
        .sql
        .execute(
            "SELECT SUM(state = 'stored') AS stored, SUM(CASE WHEN state = 'stored' THEN COALESCE(size, 0) ELSE 0 END) AS bytes,
                    SUM(state = 'gone') AS gone
             FROM (SELECT state, size FROM media_objects UNION ALL SELECT state, size FROM message_media)",
            &[],
        )?
        .first()
        .map(|r| -> anyhow::Result<MediaCounts> {
            Ok(MediaCounts {
                stored: r.opt_i64("stored")?.unwrap_or(0),
                bytes: r.opt_i64("bytes")?.unwrap_or(0),
                gone: r.opt_i64("gone")?.unwrap_or(0),
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
}
