//! Kubernetes resource quantities (`10Gi`, `500M`, `1.5e9`): the grammar the API server accepts,
//! so `validate` can refuse a bad `spec.storage.size` with a clear error instead of letting the
//! StatefulSet apply fail. Only syntax and sign are checked; nothing here does arithmetic.

use snafu::{Snafu, ensure};

/// The API server's own pattern for a quantity; also put into the CRD schema.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// Why a string is not a quantity.
#[derive(Debug, Snafu, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing to parse.
    #[snafu(display("the quantity is empty"))]
    Empty,
    /// No digits where the number should be.
    #[snafu(display("{input:?} does not start with a number"))]
    NoNumber {
        /// The refused text.
        input: String,
    },
    /// Text after the number that is no unit Kubernetes knows.
    #[snafu(display(
        "{input:?} has the unknown suffix {suffix:?} (use Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or an exponent)"
    ))]
    UnknownSuffix {
        /// The refused text.
        input: String,
        /// What follows the number.
        suffix: String,
    },
}

/// A syntactically valid quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    nonzero: bool,
}

impl Quantity {
    /// True when the quantity is greater than zero.
    pub fn is_positive(self) -> bool {
        self.nonzero && !self.negative
    }
}

/// Parses `input` with the grammar of Kubernetes' `resource.Quantity`.
pub fn parse(input: &str) -> Result<Quantity, ParseError> {
    ensure!(!input.is_empty(), EmptySnafu);
    let (negative, number, rest) = signed_number(input).ok_or_else(|| NoNumberSnafu { input }.build())?;
    let suffix_ok = match rest {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        _ => rest
            .strip_prefix(['e', 'E'])
            .and_then(signed_number)
            .is_some_and(|(_, _, after_exponent)| after_exponent.is_empty()),
    };
    ensure!(suffix_ok, UnknownSuffixSnafu { input, suffix: rest });
    Ok(Quantity { negative, nonzero: number.bytes().any(|b| matches!(b, b'1'..=b'9')) })
}

/// Splits `[+-]digits[.digits]` (or `.digits`) off the front: (negative, number, rest).
fn signed_number(s: &str) -> Option<(bool, &str, &str)> {
    let (negative, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let int_len = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    let mut len = int_len;
    let mut frac_len = 0;
    if unsigned.as_bytes().get(len) == Some(&b'.') {
        frac_len = unsigned[len + 1..].bytes().take_while(u8::is_ascii_digit).count();
        len += 1 + frac_len;
    }
    if int_len == 0 && frac_len == 0 {
        return None;
    }
    Some((negative, &unsigned[..len], &unsigned[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_api_server_accepts() {
        for q in ["10Gi", "1", "0.5Gi", "1.", ".5", "+3Mi", "500M", "1e9", "1.5E+3", "2e-2", "100m", "7n", "1Ei"] {
            assert!(parse(q).is_ok(), "{q} should parse");
        }
    }

    #[test]
    fn refuses_what_the_api_server_refuses() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        for q in ["Gi", "ten", ".", "-", "10 Gi", "10GB", "10gi", "10Gi ", "1e", "1e+", "1.2.3", "0x10"] {
            assert!(parse(q).is_err(), "{q} should be refused");
        }
        assert_eq!(parse("10GB"), Err(ParseError::UnknownSuffix { input: "10GB".into(), suffix: "GB".into() }));
    }

    #[test]
    fn sign_and_zero_decide_positivity() {
        assert!(parse("10Gi").unwrap().is_positive());
        assert!(parse("0.001").unwrap().is_positive());
        assert!(!parse("0Gi").unwrap().is_positive());
        assert!(!parse("0.000").unwrap().is_positive());
        assert!(!parse("-1Gi").unwrap().is_positive());
    }
}
