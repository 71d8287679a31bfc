//! Syntax of the names and references a spec carries, as Kubernetes checks them, so a bad one
//! is refused by `validate` with the field's name rather than by the API server at apply time.

/// RFC 1035 label as Kubernetes checks Service names: lowercase alphanumerics and '-', starting
/// with a letter, ending with an alphanumeric, at most `max` long.
pub(super) fn is_dns1035_label(s: &str, max: usize) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// RFC 1123 subdomain as Kubernetes checks object names: dot-separated labels of lowercase
/// alphanumerics and '-', each starting and ending alphanumeric, at most 253 long.
pub(super) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        })
}

/// A key Secrets accept: letters, digits, '-', '_' and '.', at most 253 long.
pub(super) fn is_secret_key(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(super) fn is_image(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1035_labels() {
        for ok in ["nacos", "a", "nacos-2", "n0"] {
            assert!(is_dns1035_label(ok, 52), "{ok}");
        }
        for bad in ["", "2nacos", "nacos-", "Nacos", "na.cos", "na_cos", &"a".repeat(53)] {
            assert!(!is_dns1035_label(bad, 52), "{bad}");
        }
    }

    #[test]
    fn dns1123_subdomains() {
        for ok in ["auth", "nacos-auth", "a.b.c", "0secret"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "a..b", ".a", "a.", "-a", "A", "a_b", &"a".repeat(64)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn secret_keys_and_images() {
        assert!(is_secret_key("tls.crt") && is_secret_key("identity_key-2"));
        assert!(!is_secret_key("") && !is_secret_key("a/b") && !is_secret_key("a b"));
        assert!(is_image("ghcr.io/nacos-rs/registry:0.1.0@sha256:abc"));
        assert!(!is_image("") && !is_image("a b"));
    }
}
