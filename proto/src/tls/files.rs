//! Reading PEM files into what rustls takes.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{TlsError, rustls_error};

/// A file's bytes.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn pem_error(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.to_owned(), what: what.to_string() }
}

/// Every certificate in a PEM file (at least one).
pub(super) fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The certificate chain at `cert` with the key at `key`, checked to belong together.
pub(super) fn certified_key(
    cert: (&Path, &[u8]),
    key: (&Path, &[u8]),
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert.0, cert.1)?;
    let private = PrivateKeyDer::from_pem_slice(key.1).map_err(|e| pem_error(key.0, e))?;
    CertifiedKey::from_der(chain, private, provider).map_err(rustls_error)
}

/// The trust anchors in a CA bundle (`path` names it in errors).
pub(super) fn roots(path: &Path, pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path, pem)? {
        store.add(cert).map_err(|e| pem_error(path, e))?;
    }
    Ok(Arc::new(store))
}

/// The end of a certificate's validity (`notAfter`) in seconds since the Unix epoch, read from
/// its DER: `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... }`
/// (RFC 5280 §4.1). `None` when the bytes do not have that shape.
pub(super) fn not_after(der: &[u8]) -> Option<i64> {
    let (cert, _) = der_element(der, 0x30)?;
    let (mut tbs, _) = der_element(cert, 0x30)?;
    if tbs.first() == Some(&0xA0) {
        tbs = der_element(tbs, 0xA0)?.1;
    }
    let tbs = der_element(tbs, 0x02)?.1; // serialNumber
    let tbs = der_element(tbs, 0x30)?.1; // signature algorithm
    let tbs = der_element(tbs, 0x30)?.1; // issuer
    let (validity, _) = der_element(tbs, 0x30)?;
    let after = match validity.first()? {
        0x17 => der_element(validity, 0x17)?.1,
        0x18 => der_element(validity, 0x18)?.1,
        _ => return None,
    };
    match after.first()? {
        0x17 => der_time(der_element(after, 0x17)?.0, 2),
        0x18 => der_time(der_element(after, 0x18)?.0, 4),
        _ => None,
    }
}

/// The content of the DER element at the start of `input` if its tag is `tag`, and what follows.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// `UTCTime` (`YYMMDDHHMMSSZ`, `year_digits` 2: 50..99 are 19xx) or `GeneralizedTime`
/// (`YYYYMMDDHHMMSSZ`, 4) as seconds since the Unix epoch.
fn der_time(text: &[u8], year_digits: usize) -> Option<i64> {
    if text.len() != year_digits + 11 || text.last() != Some(&b'Z') {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        text.get(range)?.iter().try_fold(0i64, |acc, d| d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0')))
    };
    let mut year = number(0..year_digits)?;
    if year_digits == 2 {
        year += if year >= 50 { 1900 } else { 2000 };
    }
    let at = year_digits;
    let (month, day) = (number(at..at + 2)?, number(at + 2..at + 4)?);
    let (hour, minute, second) = (number(at + 4..at + 6)?, number(at + 6..at + 8)?, number(at + 8..at + 10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate valid until midnight UTC starting the given day, as DER.
    fn valid_until(year: i32, month: u8, day: u8) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn not_after_reads_utc_and_generalized_times() {
        // UTCTime (before 2050) and GeneralizedTime (from 2050 on), values from `date -u -d`.
        assert_eq!(not_after(&valid_until(2040, 1, 1)), Some(2_208_988_800));
        assert_eq!(not_after(&valid_until(2041, 3, 1)), Some(2_245_708_800));
        assert_eq!(not_after(&valid_until(2100, 12, 31)), Some(4_133_894_400));
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01]), None);
        assert_eq!(not_after(&[]), None);
    }
}
