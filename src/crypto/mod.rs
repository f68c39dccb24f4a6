//! Cryptography: ECIES for direct messages and key wrapping, AES-256-GCM for group and
//! channel messages, ECDSA for sign-in, the server key, and random values.
//!
//! Formats follow CONTRACT.md "Encryption"; `tests/api/crypto_vectors.rs` checks them
//! against values made by independent libraries (`shared/api/test-vectors.json`).

mod aead;
mod pool;
mod server_key;

pub use aead::{EpochKey, open, seal};
pub use pool::CryptoPool;
pub use server_key::ServerKey;

use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};

/// A cryptographic operation failed; the detail stays inside.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("not a valid secp256k1 public key")]
    InvalidPublicKey,
    #[error("not a valid secp256k1 secret key")]
    InvalidSecretKey,
    #[error("encryption failed")]
    Encrypt,
    #[error("decryption failed")]
    Decrypt,
}

/// Parses a SEC1 public key (33-byte compressed or 65-byte uncompressed) and returns it
/// compressed. Anything that is not a point on the curve is refused.
pub fn compress_public_key(sec1: &[u8]) -> Result<[u8; 33], CryptoError> {
    if sec1.len() != 33 && sec1.len() != 65 {
        return Err(CryptoError::InvalidPublicKey);
    }
    let key = k256::PublicKey::from_sec1_bytes(sec1).map_err(|_| CryptoError::InvalidPublicKey)?;
    let point = k256::elliptic_curve::sec1::ToSec1Point::to_sec1_point(key.as_affine(), true);
    point
        .as_bytes()
        .try_into()
        .map_err(|_| CryptoError::InvalidPublicKey)
}

/// ECIES-encrypts `plaintext` for a SEC1 public key, in the `ecies` crate's default format
/// (65-byte ephemeral key || 16-byte nonce || 16-byte tag || ciphertext).
pub fn ecies_encrypt(public_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    ecies::encrypt(public_key, plaintext).map_err(|_| CryptoError::Encrypt)
}

/// Decrypts an ECIES ciphertext with a 32-byte secret key.
pub fn ecies_decrypt(secret_key: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    ecies::decrypt(secret_key, ciphertext).map_err(|_| CryptoError::Decrypt)
}

/// Checks a sign-in signature: ECDSA/secp256k1 over SHA-256 of `message`, given as DER or
/// as 64-byte compact `r || s`. High-S signatures (which some libraries produce) are
/// accepted by normalising them first.
pub fn verify_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_sec1_bytes(public_key) else {
        return false;
    };
    let parsed = if signature.len() == 64 {
        Signature::from_slice(signature)
    } else {
        Signature::from_der(signature)
    };
    let Ok(signature) = parsed else {
        return false;
    };
    let signature = signature.normalize_s();
    key.verify(message, &signature).is_ok()
}

/// `N` bytes from the operating system's random source.
/// 32 secret bytes (a cached epoch key, a derived MAC key) that are wiped when dropped, so
/// a key evicted from a cache or a dropped codec leaves no copy in freed memory.
#[derive(Clone)]
pub struct Secret32(pub [u8; 32]);

impl Drop for Secret32 {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not something the server can run without.
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_points_off_the_curve() {
        let mut bogus = [0u8; 33];
        bogus[0] = 0x02;
        bogus[1..].copy_from_slice(&[0xff; 32]);
        assert!(compress_public_key(&bogus).is_err());
        assert!(compress_public_key(&[0x02; 10]).is_err());
    }

    #[test]
    fn ecies_round_trip() {
        let key = ServerKey::generate();
        let ct = ecies_encrypt(key.public_key(), b"hello").expect("encrypt");
        assert_eq!(
            ecies_decrypt(key.secret_bytes(), &ct).expect("decrypt"),
            b"hello"
        );
    }
}
