//! The node's Ed25519 signing key: 32 random bytes in a file only its owner may read, created
//! at first start. The public half identifies the node's clips; its id is the first 16 hex
//! digits of the SHA-256 of the public key.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::EvidenceError;

/// The node's key pair.
pub struct NodeKey {
    signing: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// Loads the key at `path`, or creates it (and its folder) when there is none. A file that
    /// is not a key is an error, never replaced: clips signed with it must stay checkable.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), EvidenceError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok((Self::from_file_bytes(path, &bytes)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::rng().fill_bytes(&mut seed);
                let key = Self {
                    signing: SigningKey::from_bytes(&seed),
                };
                key.write(path)?;
                Ok((key, true))
            }
            Err(e) => Err(EvidenceError::io(path, e)),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, EvidenceError> {
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        let seed = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                EvidenceError::invalid(
                    path.display(),
                    "not a pantau evidence key (base64 of 32 bytes); restore the node's key from \
                     its backup, or point evidence.key_file at a new file to start a new key",
                )
            })?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    fn write(&self, path: &Path) -> Result<(), EvidenceError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| EvidenceError::io(dir, e))?;
        }
        let text = base64::engine::general_purpose::STANDARD.encode(self.signing.to_bytes());
        // Written whole beside it, then linked into place: a crash or a full disk never leaves
        // an empty key file, and a key that appeared meanwhile is never overwritten.
        let part = path.with_extension("key.part");
        let _ = std::fs::remove_file(&part);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let written = options.open(&part).and_then(|mut file| {
            file.write_all(format!("{text}\n").as_bytes())?;
            file.sync_all()
        });
        let linked = written.and_then(|()| std::fs::hard_link(&part, path));
        let _ = std::fs::remove_file(&part);
        linked.map_err(|e| EvidenceError::io(path, e))
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as base64 (what `/api/v1/evidence/key` serves and exports carry).
    pub fn public_base64(&self) -> String {
        public_base64(&self.public())
    }

    /// The key's id: first 16 hex digits of SHA-256 of the public key.
    pub fn id(&self) -> String {
        key_id(&self.public())
    }

    pub fn sign(&self, message: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.signing.sign(message).to_bytes())
    }
}

pub fn public_base64(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.to_bytes())
}

pub fn key_id(key: &VerifyingKey) -> String {
    crate::hex(&Sha256::digest(key.to_bytes())[..8])
}

/// A public key from base64 text (a `node-key.pub` file or what the API served).
pub fn parse_public(text: &str) -> Option<VerifyingKey> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    VerifyingKey::from_bytes(&<[u8; 32]>::try_from(bytes.as_slice()).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/evidence.key");
        let (a, created) = NodeKey::load_or_create(&path).expect("create");
        assert!(created);
        let (b, created) = NodeKey::load_or_create(&path).expect("load");
        assert!(!created);
        assert_eq!(a.public_base64(), b.public_base64());
        assert_eq!(a.id().len(), 16);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            parse_public(&a.public_base64()).map(|k| key_id(&k)),
            Some(a.id())
        );
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("evidence.key");
        std::fs::write(&path, "not a key").expect("write");
        let err = NodeKey::load_or_create(&path).expect_err("bad key");
        assert!(
            err.to_string().contains("not a pantau evidence key"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "not a key");
    }
}
