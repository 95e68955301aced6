//! Card credentials: the PAN, its expiry and CVV, and the cardholder name, as carried in
//! `encryptedData`. These values are secret: their `Debug` shows at most the last four digits, and
//! they have no `Display`, so that no log line or error message can print them by accident.

use crate::FieldError;
use std::fmt;

/// A primary account number: 12–19 digits passing the Luhn check.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

/// Whether `digits` passes the Luhn (mod 10) check.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// The Luhn check digit that completes `partial` (all digits but the last).
pub fn luhn_check_digit(partial: &str) -> u8 {
    (0..=9).find(|d| luhn_valid(&format!("{partial}{d}"))).expect("one digit always completes a Luhn sum")
}

impl Pan {
    pub fn parse(field: &str, digits: &str) -> Result<Self, FieldError> {
        let shape = (12..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        if !shape {
            return Err(FieldError::invalid(field, "pan must be 12 to 19 digits"));
        }
        if !luhn_valid(digits) {
            return Err(FieldError::invalid(field, "pan fails the Luhn check"));
        }
        Ok(Self(digits.to_owned()))
    }

    /// The digits. Call only to encrypt or fingerprint them.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last four digits: the only part of a PAN ever shown.
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan(****{})", self.last4())
    }
}

/// A card's expiry month, as `MMYY` on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry {
    /// Two-digit year first so that the derived order is chronological.
    year: u8,
    month: u8,
}

impl Expiry {
    pub fn parse(field: &str, mmyy: &str) -> Result<Self, FieldError> {
        let refuse = || FieldError::invalid(field, "exp must be MMYY with a month from 01 to 12");
        if mmyy.len() != 4 || !mmyy.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse());
        }
        let month: u8 = mmyy[..2].parse().map_err(|_| refuse())?;
        let year: u8 = mmyy[2..].parse().map_err(|_| refuse())?;
        if !(1..=12).contains(&month) {
            return Err(refuse());
        }
        Ok(Self { year, month })
    }

    pub fn new(month: u8, year_of_century: u8) -> Option<Self> {
        ((1..=12).contains(&month) && year_of_century < 100).then_some(Self { year: year_of_century, month })
    }

    pub fn month(self) -> u8 {
        self.month
    }

    pub fn year_of_century(self) -> u8 {
        self.year
    }

    /// `MMYY`.
    pub fn mmyy(self) -> String {
        format!("{:02}{:02}", self.month, self.year)
    }
}

impl fmt::Debug for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Expiry(**)")
    }
}

/// A card verification value: 3 or 4 digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Cvv(String);

impl Cvv {
    pub fn parse(field: &str, digits: &str) -> Result<Self, FieldError> {
        if (3..=4).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits.to_owned()))
        } else {
            Err(FieldError::invalid(field, "cvv must be 3 or 4 digits"))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cvv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvv(***)")
    }
}

/// What `encryptedData` carries.
#[derive(Clone, PartialEq, Eq)]
pub struct CardCredentials {
    pub pan: Pan,
    pub expiry: Expiry,
    pub cvv: Option<Cvv>,
    /// The embossed name, at most 128 characters.
    pub name: Option<String>,
}

impl CardCredentials {
    pub fn name(field: &str, name: &str) -> Result<String, FieldError> {
        if name.chars().count() <= 128 && !name.chars().any(char::is_control) {
            Ok(name.to_owned())
        } else {
            Err(FieldError::invalid(field, "name must be at most 128 characters without control characters"))
        }
    }
}

impl fmt::Debug for CardCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardCredentials").field("pan", &self.pan).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn luhn_and_shape() {
        assert!(Pan::parse("encryptedData", "4111111111111111").is_ok());
        assert!(Pan::parse("encryptedData", "4111111111111112").is_err());
        assert!(Pan::parse("encryptedData", "41111111111").is_err());
        assert!(Pan::parse("encryptedData", "4111 1111 1111 1111").is_err());
        assert_eq!(luhn_check_digit("411111111111111"), 1);
    }

    #[test]
    fn secrets_do_not_print() {
        let pan = Pan::parse("encryptedData", "4111111111111111").unwrap();
        let credentials = CardCredentials {
            pan,
            expiry: Expiry::parse("encryptedData", "1229").unwrap(),
            cvv: Some(Cvv::parse("encryptedData", "123").unwrap()),
            name: Some("Jane Doe".into()),
        };
        let printed = format!("{credentials:?} {:?} {:?}", credentials.expiry, credentials.cvv);
        assert!(printed.contains("****1111"));
        for secret in ["4111111111111111", "1229", "123", "Jane"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn expiries() {
        assert_eq!(Expiry::parse("f", "0130").unwrap().mmyy(), "0130");
        assert!(Expiry::parse("f", "1330").is_err());
        assert!(Expiry::parse("f", "0030").is_err());
        assert!(Expiry::parse("f", "130").is_err());
        assert!(Expiry::parse("f", "1229").unwrap() < Expiry::parse("f", "0130").unwrap());
    }

    proptest! {
        #[test]
        fn a_check_digit_always_completes_a_valid_pan(partial in "[0-9]{11,18}") {
            let pan = format!("{partial}{}", luhn_check_digit(&partial));
            prop_assert!(Pan::parse("f", &pan).is_ok());
        }

        #[test]
        fn changing_one_digit_breaks_the_check(partial in "[0-9]{15}", position in 0usize..16, delta in 1u8..10) {
            let pan = format!("{partial}{}", luhn_check_digit(&partial));
            let mut bytes = pan.into_bytes();
            bytes[position] = b'0' + (bytes[position] - b'0' + delta) % 10;
            prop_assert!(!luhn_valid(std::str::from_utf8(&bytes).unwrap()));
        }
    }
}
