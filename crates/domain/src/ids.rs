//! Identifier newtypes. Each one can only be built from a string that matches D1's pattern for it, so
//! a function that takes a [`CardId`] never has to check it again.

use crate::FieldError;
use std::fmt;

/// Declares a string identifier: a newtype, its length bounds, its allowed characters, and the
/// D1 field name used when refusing it.
macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, field = $field:literal, len = $min:literal..=$max:literal, extra = $extra:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The D1 field name this identifier travels under.
            pub const FIELD: &'static str = $field;

            pub fn parse(value: impl Into<String>) -> Result<Self, FieldError> {
                let value = value.into();
                let len = value.chars().count();
                let chars_ok = value.chars().all(|c| c.is_ascii_alphanumeric() || $extra.contains(c));
                if (($min)..=($max)).contains(&len) && chars_ok {
                    Ok(Self(value))
                } else {
                    Err(FieldError::invalid(
                        $field,
                        format!(
                            "must be {} character(s) of A-Z, a-z, 0-9 and {:?}",
                            if $min == $max { format!("{}", $max) } else { format!("{}-{}", $min, $max) },
                            $extra
                        ),
                    ))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// `issuerId`: exactly 10 characters `[A-Za-z0-9_-]` [D1].
    IssuerId, field = "issuerId", len = 10..=10, extra = "_-"
);
identifier!(
    /// `consumerId`: 1–64 characters `[A-Za-z0-9_-]` [D1]. Issuer-defined, never personal data.
    ConsumerId, field = "consumerId", len = 1..=64, extra = "_-"
);
identifier!(
    /// `cardId`: 1–48 characters `[A-Za-z0-9_-]` [D1]. Never the PAN nor derived from it.
    CardId, field = "cardId", len = 1..=48, extra = "_-"
);
identifier!(
    /// `cardProductId`: 1–48 characters `[A-Za-z0-9_-]` [D1], agreed at onboarding.
    CardProductId, field = "cardProductId", len = 1..=48, extra = "_-"
);
identifier!(
    /// `accountId` (v1): 1–64 characters `[A-Za-z0-9_-]` [D1].
    AccountId, field = "accountId", len = 1..=64, extra = "_-"
);
identifier!(
    /// A JOSE key id (`kid`): 1–128 characters `[A-Za-z0-9_.:-]` [ours: wide enough for thumbprints,
    /// UUIDs and the dotted names IdPs such as Keycloak use].
    KeyId, field = "kid", len = 1..=128, extra = "_-.:"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn issuer_id_is_exactly_ten_characters() {
        assert!(IssuerId::parse("VOLCA_PA-1").is_ok());
        assert!(IssuerId::parse("SHORT").is_err());
        assert!(IssuerId::parse("ELEVENCHARS").is_err());
        assert!(IssuerId::parse("BAD ISSUER").is_err());
        assert_eq!(IssuerId::parse("x").unwrap_err().field, "issuerId");
    }

    #[test]
    fn card_id_bounds() {
        assert!(CardId::parse("c").is_ok());
        assert!(CardId::parse("c".repeat(48)).is_ok());
        assert!(CardId::parse("c".repeat(49)).is_err());
        assert!(CardId::parse("").is_err());
        assert!(CardId::parse("card/1").is_err());
    }

    proptest! {
        #[test]
        fn consumer_id_accepts_exactly_its_pattern(s in "\\PC{0,70}") {
            let expected = (1..=64).contains(&s.chars().count())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            prop_assert_eq!(ConsumerId::parse(s.clone()).is_ok(), expected);
        }

        #[test]
        fn valid_consumer_ids_round_trip(s in "[A-Za-z0-9_-]{1,64}") {
            let id = ConsumerId::parse(s.clone()).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }
    }
}
