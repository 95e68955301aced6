//! Card products: what an issuer agreed at onboarding about a family of cards.

use crate::FieldError;
use crate::ids::CardProductId;
use crate::scheme::Scheme;
use std::str::FromStr;

/// How much of the authorisation D1 takes part in for a product [D1]. Register card is only
/// allowed for `None` and `Light`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorisationMode {
    None,
    Light,
    Full,
}

impl AuthorisationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorisationMode::None => "NONE",
            AuthorisationMode::Light => "LIGHT",
            AuthorisationMode::Full => "FULL",
        }
    }
}

impl FromStr for AuthorisationMode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "NONE" => Ok(AuthorisationMode::None),
            "LIGHT" => Ok(AuthorisationMode::Light),
            "FULL" => Ok(AuthorisationMode::Full),
            _ => Err(()),
        }
    }
}

/// The PAN range cards of a product are issued from by Create card: two digit strings of one
/// length (6–19), `from <= to`, both inside the product's scheme. A PAN is in the range when its
/// first `len` digits are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinRange {
    from: String,
    to: String,
}

impl BinRange {
    pub fn parse(from: &str, to: &str, scheme: Scheme) -> Result<Self, FieldError> {
        for (field, value) in [("from", from), ("to", to)] {
            if !(6..=19).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FieldError::invalid(field, "must be 6 to 19 digits"));
            }
            if Scheme::of_pan(value) != Some(scheme) {
                return Err(FieldError::invalid(field, format!("must lie in the {scheme} ranges")));
            }
        }
        if from.len() != to.len() {
            return Err(FieldError::invalid("to", "must have as many digits as from"));
        }
        // Equal-length digit strings compare as their numbers do.
        if from > to {
            return Err(FieldError::invalid("to", "must not be below from"));
        }
        Ok(Self { from: from.to_owned(), to: to.to_owned() })
    }

    pub fn from(&self) -> &str {
        &self.from
    }

    pub fn to(&self) -> &str {
        &self.to
    }

    /// A PAN of this range for `scheme`, Luhn-valid, from the random bits given: a prefix inside
    /// the range, random digits, and the check digit. 16 digits (15 for AMEX), longer when the range
    /// itself is that long. The caller makes sure it was never issued before.
    pub fn issue_pan(&self, scheme: Scheme, random: u128) -> String {
        let from: u128 = self.from.parse().expect("digits");
        let to: u128 = self.to.parse().expect("digits");
        let span = to - from + 1;
        let prefix = format!("{:0width$}", from + random % span, width = self.from.len());
        let length = (if scheme == Scheme::Amex { 15 } else { 16 }).max(self.from.len() + 1).min(19);
        let mut body = prefix;
        let mut bits = random / span;
        while body.len() < length - 1 {
            body.push(char::from(b'0' + (bits % 10) as u8));
            bits /= 10;
        }
        body.truncate(length - 1);
        let check = crate::credentials::luhn_check_digit(&body);
        format!("{body}{check}")
    }

    /// Whether a PAN falls inside the range.
    pub fn contains(&self, pan: &str) -> bool {
        pan.len() >= self.from.len() && {
            let prefix = &pan[..self.from.len()];
            self.from.as_str() <= prefix && prefix <= self.to.as_str()
        }
    }
}

/// How many years a newly issued card of a product is valid: 1 to 10 [ours].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidityYears(u8);

impl ValidityYears {
    pub const DEFAULT: ValidityYears = ValidityYears(3);

    pub fn parse(years: i64) -> Result<Self, FieldError> {
        match u8::try_from(years) {
            Ok(y @ 1..=10) => Ok(Self(y)),
            _ => Err(FieldError::invalid("validityYears", "must be a whole number from 1 to 10")),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// A card product of an issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardProduct {
    pub id: CardProductId,
    pub scheme: Scheme,
    pub authorisation_mode: AuthorisationMode,
    /// Needed to create cards of this product; register works without it.
    pub bin_range: Option<BinRange>,
    /// Cards of this product are also made physically (Create opens a production order).
    pub physical: bool,
    pub validity: ValidityYears,
    /// A cardId of a product used for transactions can never be reused [D1].
    pub used_for_transactions: bool,
}

impl CardProduct {
    /// Whether Register card is allowed for this product [D1: only NONE and LIGHT].
    pub fn allows_registration(&self) -> bool {
        matches!(self.authorisation_mode, AuthorisationMode::None | AuthorisationMode::Light)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_range_checks_digits_scheme_and_order() {
        let range = BinRange::parse("411111", "411199", Scheme::Visa).unwrap();
        assert!(range.contains("4111501234567890"));
        assert!(!range.contains("4112001234567890"));
        assert_eq!(BinRange::parse("41111a", "411199", Scheme::Visa).unwrap_err().field, "from");
        assert_eq!(BinRange::parse("511111", "511199", Scheme::Visa).unwrap_err().field, "from");
        assert_eq!(BinRange::parse("411199", "411111", Scheme::Visa).unwrap_err().field, "to");
        assert_eq!(BinRange::parse("411111", "4111999", Scheme::Visa).unwrap_err().field, "to");
    }

    #[test]
    fn issued_pans_are_in_range_luhn_valid_and_of_the_scheme() {
        let visa = BinRange::parse("411111", "411199", Scheme::Visa).unwrap();
        let amex = BinRange::parse("371449", "371449", Scheme::Amex).unwrap();
        for seed in [0u128, 1, 7_777_777, u128::MAX / 3, u128::MAX] {
            let pan = visa.issue_pan(Scheme::Visa, seed);
            assert_eq!(pan.len(), 16);
            assert!(visa.contains(&pan) && crate::credentials::luhn_valid(&pan), "{pan}");
            assert_eq!(Scheme::of_pan(&pan), Some(Scheme::Visa));
            let pan = amex.issue_pan(Scheme::Amex, seed);
            assert_eq!(pan.len(), 15);
            assert!(amex.contains(&pan) && crate::credentials::luhn_valid(&pan), "{pan}");
        }
        assert_ne!(visa.issue_pan(Scheme::Visa, 1), visa.issue_pan(Scheme::Visa, 2));
    }

    #[test]
    fn validity_is_one_to_ten_years() {
        assert!(ValidityYears::parse(0).is_err());
        assert_eq!(ValidityYears::parse(10).unwrap().get(), 10);
        assert!(ValidityYears::parse(11).is_err());
    }
}
