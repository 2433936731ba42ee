//! Object storage: the S3 protocol and client ([`s3`]) and the copy of call recordings and voicemails
//! from OpenPhone's media host into it ([`media`]).

pub mod media;
pub mod s3;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod testing;
