//! Password hashing with bcrypt (what Nacos stores, so its users tables carry over). Hashing
//! and verification are deliberately slow, so they run on the blocking pool; clients that send
//! `username`+`password` on every request (npm's client) hit a small cache of recent
//! successful verifications, keyed by a SHA-256 digest of (user, password, stored hash): a
//! changed password or hash misses it.

use std::collections::HashSet;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// bcrypt cost, Nacos' (`BCryptPasswordEncoder` default).
pub const COST: u32 = 10;
/// Verified credentials remembered at most (the set is cleared when full).
const CACHE_CAPACITY: usize = 4_096;

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// A bcrypt hash of `password`.
pub async fn hash(password: &str) -> Result<String, HashError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || bcrypt::hash(password, COST))
        .await
        .map_err(|e| HashError(e.to_string()))?
        .map_err(|e| HashError(e.to_string()))
}

/// Verifies passwords against stored hashes, remembering recent successes.
#[derive(Debug, Default)]
pub struct Verifier {
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Verifier {
    /// Whether `password` matches `stored` (a bcrypt hash) for `username`.
    pub async fn verify(&self, username: &str, password: &str, stored: &str) -> bool {
        let digest = digest(username, password, stored);
        if self.verified.lock().contains(&digest) {
            return true;
        }
        let (password, stored_hash) = (password.to_owned(), stored.to_owned());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &stored_hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock();
            if verified.len() >= CACHE_CAPACITY {
                verified.clear();
            }
            verified.insert(digest);
        }
        ok
    }
}

fn digest(username: &str, password: &str, stored: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [username, password, stored] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("s3cret").await.unwrap();
        assert!(stored.starts_with("$2"));
        let v = Verifier::default();
        assert!(v.verify("u", "s3cret", &stored).await);
        assert!(v.verify("u", "s3cret", &stored).await, "cached");
        assert!(!v.verify("u", "wrong", &stored).await);
        assert!(!v.verify("u", "s3cret", "not a hash").await);
    }

    #[tokio::test]
    async fn a_hash_made_by_nacos_verifies() {
        // Nacos' documented bcrypt hash of the default password `nacos`.
        let nacos = "$2a$10$EuWPZHzz32dJN7jexM34MOeYirDdFAZm2kuWj7VEOJhhZkDrxfvUu";
        assert!(Verifier::default().verify("nacos", "nacos", nacos).await);
    }
}
