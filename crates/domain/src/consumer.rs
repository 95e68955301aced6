//! Consumers (end users) and their personal information (inbound.md §3).

use crate::FieldError;
use crate::ids::ConsumerId;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerState {
    Active,
    /// Final: a deleted consumerId can never be registered again [D1].
    Deleted,
}

impl ConsumerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerState::Active => "ACTIVE",
            ConsumerState::Deleted => "DELETED",
        }
    }

    pub fn parse(s: &str) -> Option<ConsumerState> {
        match s {
            "ACTIVE" => Some(ConsumerState::Active),
            "DELETED" => Some(ConsumerState::Deleted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub line3: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip_code: Option<String>,
    pub country_code: Option<String>,
}

/// What an issuer may tell D1 about a consumer; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalInformation {
    pub title: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub mobile_phone_number: Option<String>,
    pub language: Option<String>,
    pub date_of_birth: Option<String>,
    pub address: Option<Address>,
}

impl PersonalInformation {
    /// Checks every field given against [`rules`], wherever the information came from (an issuer's
    /// request, or its answer to Get Consumer Information). Refusals name the field.
    pub fn validated(self) -> Result<PersonalInformation, FieldError> {
        fn opt(
            value: Option<String>,
            check: impl Fn(&str) -> Result<String, FieldError>,
        ) -> Result<Option<String>, FieldError> {
            value.as_deref().map(check).transpose()
        }
        let address = match self.address {
            None => None,
            Some(a) => Some(
                (|| {
                    Ok(Address {
                        line1: opt(a.line1, |v| rules::address_text("line1", v))?,
                        line2: opt(a.line2, |v| rules::address_text("line2", v))?,
                        line3: opt(a.line3, |v| rules::address_text("line3", v))?,
                        city: opt(a.city, |v| rules::address_text("city", v))?,
                        state: opt(a.state, |v| rules::address_text("state", v))?,
                        zip_code: opt(a.zip_code, |v| rules::address_text("zipCode", v))?,
                        country_code: opt(a.country_code, |v| rules::country_code("countryCode", v))?,
                    })
                })()
                .map_err(|e: FieldError| e.within("address"))?,
            ),
        };
        Ok(PersonalInformation {
            title: opt(self.title, rules::title)?,
            first_name: opt(self.first_name, |v| rules::name("firstName", v))?,
            middle_name: opt(self.middle_name, |v| rules::name("middleName", v))?,
            last_name: opt(self.last_name, |v| rules::name("lastName", v))?,
            email: opt(self.email, rules::email)?,
            mobile_phone_number: opt(self.mobile_phone_number, |v| rules::phone("mobilePhoneNumber", v))?,
            language: opt(self.language, rules::language)?,
            date_of_birth: opt(self.date_of_birth, rules::date_of_birth)?,
            address,
        })
    }

    /// Merges `update` into `self` field by field: a field given in the update wins, one absent
    /// keeps its stored value (the Update consumer semantics).
    pub fn merge(&self, update: &PersonalInformation) -> PersonalInformation {
        fn pick(new: &Option<String>, old: &Option<String>) -> Option<String> {
            new.clone().or_else(|| old.clone())
        }
        let address = match (&update.address, &self.address) {
            (Some(new), Some(old)) => Some(Address {
                line1: pick(&new.line1, &old.line1),
                line2: pick(&new.line2, &old.line2),
                line3: pick(&new.line3, &old.line3),
                city: pick(&new.city, &old.city),
                state: pick(&new.state, &old.state),
                zip_code: pick(&new.zip_code, &old.zip_code),
                country_code: pick(&new.country_code, &old.country_code),
            }),
            (new, old) => new.clone().or_else(|| old.clone()),
        };
        PersonalInformation {
            title: pick(&update.title, &self.title),
            first_name: pick(&update.first_name, &self.first_name),
            middle_name: pick(&update.middle_name, &self.middle_name),
            last_name: pick(&update.last_name, &self.last_name),
            email: pick(&update.email, &self.email),
            mobile_phone_number: pick(&update.mobile_phone_number, &self.mobile_phone_number),
            language: pick(&update.language, &self.language),
            date_of_birth: pick(&update.date_of_birth, &self.date_of_birth),
            address,
        }
    }
}

/// Field rules of personal information [D1 where known, ours otherwise].
pub mod rules {
    use super::*;

    fn check(ok: bool, field: &str, expected: &str, value: &str) -> Result<String, FieldError> {
        ok.then(|| value.to_owned()).ok_or_else(|| FieldError::invalid(field, expected))
    }

    pub fn title(v: &str) -> Result<String, FieldError> {
        check(
            (1..=40).contains(&v.chars().count()) && !v.chars().any(char::is_control),
            "title",
            "must be 1 to 40 characters",
            v,
        )
    }

    /// `firstName`, `middleName`, `lastName`: 1–128 letters, digits, spaces and `,.'_#;:/-`.
    pub fn name(field: &str, v: &str) -> Result<String, FieldError> {
        let ok = (1..=128).contains(&v.chars().count())
            && v.chars().all(|c| c.is_alphanumeric() || c == ' ' || ",.'_#;:/-".contains(c));
        check(ok, field, "must be 1 to 128 letters, digits, spaces and ,.'_#;:/-", v)
    }

    pub fn email(v: &str) -> Result<String, FieldError> {
        let ok = v.len() <= 254
            && v.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
            })
            && !v.chars().any(|c| c.is_whitespace() || c.is_control())
            && v.matches('@').count() == 1;
        check(ok, "email", "must be an e-mail address of at most 254 characters", v)
    }

    /// E.164: `+` and 8 to 15 digits, the first not 0.
    pub fn phone(field: &str, v: &str) -> Result<String, FieldError> {
        let digits = v.strip_prefix('+').unwrap_or("");
        let ok =
            (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        check(ok, field, "must be an E.164 number such as +12125550123", v)
    }

    /// `^[a-z]{2}-[a-zA-Z]{2}$` [D1].
    pub fn language(v: &str) -> Result<String, FieldError> {
        let b = v.as_bytes();
        let ok = b.len() == 5
            && b[..2].iter().all(u8::is_ascii_lowercase)
            && b[2] == b'-'
            && b[3..].iter().all(u8::is_ascii_alphabetic);
        check(ok, "language", "must be a language and country such as en-US", v)
    }

    pub fn date_of_birth(v: &str) -> Result<String, FieldError> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        check(time::Date::parse(v, format).is_ok(), "dateOfBirth", "must be a date YYYY-MM-DD", v)
    }

    /// ISO 3166-1 alpha-2 shape: two upper-case letters.
    pub fn country_code(field: &str, v: &str) -> Result<String, FieldError> {
        check(
            v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()),
            field,
            "must be an ISO 3166-1 alpha-2 code such as US",
            v,
        )
    }

    /// Address lines, city, state, zip code: 1–128 characters without control characters [ours].
    pub fn address_text(field: &str, v: &str) -> Result<String, FieldError> {
        check(
            (1..=128).contains(&v.chars().count()) && !v.chars().any(char::is_control),
            field,
            "must be 1 to 128 characters",
            v,
        )
    }
}

/// A consumer of an issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub id: ConsumerId,
    pub state: ConsumerState,
    /// `None` when the issuer keeps personal data to itself (or registered the consumer implicitly).
    pub personal_information: Option<PersonalInformation>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_what_the_update_leaves_out() {
        let stored = PersonalInformation {
            first_name: Some("Jane".into()),
            email: Some("jane@example.com".into()),
            address: Some(Address { city: Some("Paris".into()), zip_code: Some("75001".into()), ..Address::default() }),
            ..PersonalInformation::default()
        };
        let update = PersonalInformation {
            email: Some("j@example.org".into()),
            address: Some(Address { city: Some("Lyon".into()), ..Address::default() }),
            ..PersonalInformation::default()
        };
        let merged = stored.merge(&update);
        assert_eq!(merged.first_name.as_deref(), Some("Jane"));
        assert_eq!(merged.email.as_deref(), Some("j@example.org"));
        let address = merged.address.unwrap();
        assert_eq!((address.city.as_deref(), address.zip_code.as_deref()), (Some("Lyon"), Some("75001")));
    }

    #[test]
    fn field_rules() {
        assert!(rules::email("a@b.co").is_ok());
        assert!(rules::email("a@b").is_err());
        assert!(rules::phone("mobilePhoneNumber", "+12125550123").is_ok());
        assert!(rules::phone("mobilePhoneNumber", "12125550123").is_err());
        assert!(rules::language("en-US").is_ok());
        assert!(rules::language("EN-US").is_err());
        assert!(rules::date_of_birth("1990-02-28").is_ok());
        assert!(rules::date_of_birth("1990-02-30").is_err());
        assert!(rules::name("firstName", "O'Brien-Smith Jr.").is_ok());
        assert!(rules::name("firstName", "<script>").is_err());
    }
}
