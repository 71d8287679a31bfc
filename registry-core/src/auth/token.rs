//! Access tokens: JWTs signed with HMAC-SHA2 under the configured secret, as Nacos issues
//! them (subject = user name, `exp` in seconds). The algorithm follows the key length as in
//! Nacos' `JwtTokenManager`: HS512 from 64 bytes, HS384 from 48, else HS256 (at least 32).
//! Verification compares signatures in constant time (`Mac::verify_slice`).

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Sha256, Sha384, Sha512};

/// Standard base64 that accepts missing padding and trailing bits.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Shortest accepted secret (bytes after base64 decoding): HS256 needs 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a secret was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Not base64.
    #[error("the token secret is not base64: {0}")]
    NotBase64(String),
    /// Too short.
    #[error("the token secret decodes to {0} bytes; at least {MIN_SECRET_BYTES} are required")]
    TooShort(usize),
}

/// Why a token was refused; the messages are Nacos'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, another algorithm or another key.
    #[error("token invalid!")]
    Invalid,
    /// Past its `exp`.
    #[error("token expired!")]
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Hs256,
    Hs384,
    Hs512,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Issues and verifies tokens under one secret.
pub struct Signer {
    key: Vec<u8>,
    alg: Alg,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer over a base64 secret (Nacos' `token.secret.key` format), decoded as leniently
    /// as Nacos' decoder: padding optional, a dangling last character (less than a byte)
    /// ignored, as in the secret Nacos' own documentation shows.
    pub fn from_base64(secret: &str) -> Result<Self, SecretError> {
        let mut text = secret.trim().trim_end_matches('=');
        if text.len() % 4 == 1 {
            text = &text[..text.len() - 1];
        }
        let key = LENIENT.decode(text).map_err(|e| SecretError::NotBase64(e.to_string()))?;
        Self::from_bytes(key)
    }

    /// A signer over raw key bytes.
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, SecretError> {
        let alg = match key.len() {
            n if n >= 64 => Alg::Hs512,
            n if n >= 48 => Alg::Hs384,
            n if n >= MIN_SECRET_BYTES => Alg::Hs256,
            n => return Err(SecretError::TooShort(n)),
        };
        Ok(Self { key, alg })
    }

    /// A token for `username` valid until `now_s + ttl_s` (seconds since the epoch).
    pub fn issue(&self, username: &str, now_s: u64, ttl_s: u64) -> String {
        let header = serde_json::json!({ "alg": self.alg.name() }).to_string();
        let claims = serde_json::json!({ "sub": username, "exp": now_s.saturating_add(ttl_s) }).to_string();
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = URL_SAFE_NO_PAD.encode(self.sign(input.as_bytes()));
        format!("{input}.{signature}")
    }

    /// The user name a valid, unexpired token was issued for.
    pub fn verify(&self, token: &str, now_s: u64) -> Result<String, TokenError> {
        let (input, signature) = token.trim().rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (header, claims) = input.split_once('.').ok_or(TokenError::Invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Invalid)?;
        if !self.verify_signature(input.as_bytes(), &signature) {
            return Err(TokenError::Invalid);
        }
        let header: Header = decode_part(header)?;
        if header.alg != self.alg.name() {
            return Err(TokenError::Invalid);
        }
        let claims: Claims = decode_part(claims)?;
        if claims.exp <= now_s {
            return Err(TokenError::Expired);
        }
        Ok(claims.sub)
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        macro_rules! mac {
            ($h:ty) => {{
                // HMAC accepts keys of any length.
                let mut mac = <Hmac<$h>>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
                mac.update(input);
                mac.finalize().into_bytes().to_vec()
            }};
        }
        match self.alg {
            Alg::Hs256 => mac!(Sha256),
            Alg::Hs384 => mac!(Sha384),
            Alg::Hs512 => mac!(Sha512),
        }
    }

    fn verify_signature(&self, input: &[u8], signature: &[u8]) -> bool {
        macro_rules! check {
            ($h:ty) => {{
                let Ok(mut mac) = <Hmac<$h>>::new_from_slice(&self.key) else { return false };
                mac.update(input);
                mac.verify_slice(signature).is_ok()
            }};
        }
        match self.alg {
            Alg::Hs256 => check!(Sha256),
            Alg::Hs384 => check!(Sha384),
            Alg::Hs512 => check!(Sha512),
        }
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Invalid)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(byte: u8, len: usize) -> Signer {
        Signer::from_bytes(vec![byte; len]).unwrap()
    }

    #[test]
    fn a_token_verifies_under_its_key_until_it_expires() {
        let s = signer(1, 32);
        let token = s.issue("nacos", 1_000, 18_000);
        assert_eq!(s.verify(&token, 1_000).as_deref(), Ok("nacos"));
        assert_eq!(s.verify(&token, 19_000), Err(TokenError::Expired));
    }

    #[test]
    fn another_key_a_tampered_claim_or_alg_none_is_invalid() {
        let token = signer(1, 32).issue("nacos", 0, 100);
        assert_eq!(signer(2, 32).verify(&token, 0), Err(TokenError::Invalid));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","exp":100}"#);
        parts[1] = &forged;
        assert_eq!(signer(1, 32).verify(&parts.join("."), 0), Err(TokenError::Invalid));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), forged);
        assert_eq!(signer(1, 32).verify(&none, 0), Err(TokenError::Invalid));
        assert_eq!(signer(1, 32).verify("garbage", 0), Err(TokenError::Invalid));
    }

    #[test]
    fn the_algorithm_follows_the_key_length_and_short_keys_are_refused() {
        assert!(matches!(Signer::from_bytes(vec![0; 31]), Err(SecretError::TooShort(31))));
        for (len, alg) in [(32, "HS256"), (48, "HS384"), (64, "HS512")] {
            let token = signer(7, len).issue("u", 0, 10);
            let header: Header = decode_part(token.split('.').next().unwrap()).unwrap();
            assert_eq!(header.alg, alg);
            assert_eq!(signer(7, len).verify(&token, 0).as_deref(), Ok("u"));
        }
    }

    #[test]
    fn a_nacos_base64_secret_is_accepted() {
        // The example secret from Nacos' application.properties documentation.
        let s = Signer::from_base64("SecretKey012345678901234567890123456789012345678901234567890123456789").unwrap();
        assert_eq!(s.alg, Alg::Hs384, "68 characters decode to 51 bytes");
        assert!(Signer::from_base64("not base64!").is_err());
    }
}
