//! Object storage: the S3 protocol and client ([`s3`], signed by [`sigv4`]), the copy of call
//! recordings and voicemails from OpenPhone's media host into it ([`media`]), and of the pictures and
//! files of MMS messages ([`message_media`]).

pub mod media;
pub mod message_media;
pub mod s3;
pub mod sigv4;

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod testing;
