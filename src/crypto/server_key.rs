//! The server's own secp256k1 key pair, kept outside the database.
//!
//! From `BRIGHTCHAT_SERVER_KEY`, or the file `server.key` in the data dir (hex, created
//! with mode 0600 on first start). All nodes of one deployment share it.

use std::path::Path;

use super::{CryptoError, random_bytes};

/// The server key pair.
#[derive(Clone)]
pub struct ServerKey {
    secret: [u8; 32],
    public: [u8; 33],
}

/// The secret is wiped when the key is dropped (k256's own `SecretKey` does the same).
impl Drop for ServerKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// From 32 secret bytes.
    pub fn from_bytes(secret: [u8; 32]) -> Result<Self, CryptoError> {
        let key =
            k256::SecretKey::from_slice(&secret).map_err(|_| CryptoError::InvalidSecretKey)?;
        let public = super::compress_public_key(&key.public_key().to_sec1_bytes())?;
        Ok(Self { secret, public })
    }

    /// From 64 hex digits.
    pub fn from_hex(hex_secret: &str) -> Result<Self, CryptoError> {
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_secret, secret.as_mut_slice())
            .map_err(|_| CryptoError::InvalidSecretKey)?;
        Self::from_bytes(*secret)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        loop {
            if let Ok(key) = Self::from_bytes(random_bytes::<32>()) {
                return key;
            }
        }
    }

    /// Reads `server.key` from `data_dir`, creating it (mode 0600) when absent.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("server.key");
        match std::fs::read_to_string(&path).map(zeroize::Zeroizing::new) {
            Ok(text) => Self::from_hex(text.trim())
                .map_err(|_| anyhow::anyhow!("{}: not a valid server key", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private(&path, &zeroize::Zeroizing::new(hex::encode(key.secret)))?;
                tracing::info!(path = %path.display(), "created a new server key");
                Ok(key)
            }
            Err(err) => Err(anyhow::anyhow!("{}: {err}", path.display())),
        }
    }

    /// The compressed public key.
    pub fn public_key(&self) -> &[u8; 33] {
        &self.public
    }

    /// The secret bytes, for decrypting the server's copies.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// A key for another purpose derived from this one (HMAC-SHA256 of `label`).
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret)
            .expect("HMAC takes a key of any length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ServerKey::load_or_create(dir.path()).expect("create");
        let second = ServerKey::load_or_create(dir.path()).expect("load");
        assert_eq!(first.public_key(), second.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("server.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
