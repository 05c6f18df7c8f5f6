//! What a masked value becomes: `****`, or a hash that keeps equal values joinable.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sift_config::HashFunction;

/// Replaces a secret with its masked form.
pub(super) enum Masker {
    Stars,
    Sha256,
    HmacSha256(Vec<u8>),
}

impl Masker {
    pub(super) fn new(function: HashFunction, key: Option<&str>) -> Masker {
        match function {
            HashFunction::None => Masker::Stars,
            HashFunction::Sha256 => Masker::Sha256,
            HashFunction::HmacSha256 => Masker::HmacSha256(key.unwrap_or_default().as_bytes().to_vec()),
        }
    }

    pub(super) fn mask(&self, secret: &str) -> String {
        match self {
            Masker::Stars => "****".to_owned(),
            Masker::Sha256 => hex::encode(Sha256::digest(secret.as_bytes())),
            Masker::HmacSha256(key) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                    return "****".to_owned();
                };
                mac.update(secret.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            }
        }
    }
}
