//! AES-256-GCM for group and channel messages: `nonce (12) || ciphertext || tag (16)`,
//! with the message id as associated data (CONTRACT.md "Encryption").

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::{CryptoError, random_bytes};

/// A 32-byte epoch key.
pub type EpochKey = [u8; 32];

/// Encrypts `plaintext` under `key` with a fresh random nonce, binding `aad`.
pub fn seal(key: &EpochKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Encrypt)?;
    let nonce_bytes = random_bytes::<12>();
    let nonce = Nonce::from(nonce_bytes);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt)?;
    let mut out = Vec::with_capacity(12 + sealed.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts what [`seal`] produced; fails on a wrong key, wrong `aad` or any tampering.
pub fn open(key: &EpochKey, aad: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if data.len() < 12 + 16 {
        return Err(CryptoError::Decrypt);
    }
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Decrypt)?;
    let (nonce_bytes, sealed) = data.split_at(12);
    let nonce_array: [u8; 12] = nonce_bytes.try_into().map_err(|_| CryptoError::Decrypt)?;
    let nonce = Nonce::from(nonce_array);
    cipher
        .decrypt(&nonce, Payload { msg: sealed, aad })
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aad_binding() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"id-1", b"hi").expect("seal");
        assert_eq!(sealed.len(), 12 + 2 + 16);
        assert_eq!(open(&key, b"id-1", &sealed).expect("open"), b"hi");
        assert!(open(&key, b"id-2", &sealed).is_err());
        assert!(open(&[8u8; 32], b"id-1", &sealed).is_err());
    }
}
