//! Card schemes and the PAN prefixes that belong to each.

use std::fmt;
use std::str::FromStr;

/// A card scheme (network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Jcb,
    UnionPay,
}

impl Scheme {
    pub const ALL: [Scheme; 6] =
        [Scheme::Visa, Scheme::Mastercard, Scheme::Amex, Scheme::Discover, Scheme::Jcb, Scheme::UnionPay];

    /// The wire name (`VISA`, `MASTERCARD`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Visa => "VISA",
            Scheme::Mastercard => "MASTERCARD",
            Scheme::Amex => "AMEX",
            Scheme::Discover => "DISCOVER",
            Scheme::Jcb => "JCB",
            Scheme::UnionPay => "UNIONPAY",
        }
    }

    /// The scheme a PAN (or a BIN, any prefix of at least 6 digits) belongs to, from the published
    /// IIN ranges. `None` for a prefix no supported scheme owns.
    pub fn of_pan(digits: &str) -> Option<Scheme> {
        if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Six digits identify the scheme; the ranges below never need more.
        let prefix = |n: usize| digits[..n].parse::<u32>().expect("checked digits");
        let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
        match () {
            _ if p1 == 4 => Some(Scheme::Visa),
            _ if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) => Some(Scheme::Mastercard),
            _ if p2 == 34 || p2 == 37 => Some(Scheme::Amex),
            _ if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 => Some(Scheme::Discover),
            _ if (3528..=3589).contains(&p4) => Some(Scheme::Jcb),
            _ if p2 == 62 || (810_000..=817_199).contains(&p6) => Some(Scheme::UnionPay),
            _ => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Scheme::ALL.into_iter().find(|scheme| scheme.as_str() == s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_prefixes() {
        assert_eq!(Scheme::of_pan("4111111111111111"), Some(Scheme::Visa));
        assert_eq!(Scheme::of_pan("5500000000000004"), Some(Scheme::Mastercard));
        assert_eq!(Scheme::of_pan("2221000000000009"), Some(Scheme::Mastercard));
        assert_eq!(Scheme::of_pan("378282246310005"), Some(Scheme::Amex));
        assert_eq!(Scheme::of_pan("6011111111111117"), Some(Scheme::Discover));
        assert_eq!(Scheme::of_pan("3530111333300000"), Some(Scheme::Jcb));
        assert_eq!(Scheme::of_pan("6212345678901232"), Some(Scheme::UnionPay));
        assert_eq!(Scheme::of_pan("9999999999999995"), None);
        assert_eq!(Scheme::of_pan("41111"), None);
    }

    #[test]
    fn wire_names_round_trip() {
        for scheme in Scheme::ALL {
            assert_eq!(scheme.as_str().parse::<Scheme>(), Ok(scheme));
        }
    }
}
