//! [`FieldError`]: a value refused, with the path of the field that carried it.
//!
//! The path is the JSON path the caller used (`cardProducts[1].binRange.from`), so the API can name the
//! field in D1's error body without knowing how the domain checked it.

use std::fmt;

/// Why a field was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    /// A required field is absent (`FIELD_MISSING`).
    Missing,
    /// The field is present but malformed (`FIELD_INVALID_FORMAT`); the text says what is expected.
    /// It never repeats the offending value, which may be card data.
    Invalid(String),
}

/// A refused input value. `field` is a JSON-style path, e.g. `callback.maxBatchSize`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    pub field: String,
    pub problem: FieldProblem,
}

impl FieldError {
    pub fn missing(field: impl Into<String>) -> Self {
        Self { field: field.into(), problem: FieldProblem::Missing }
    }

    pub fn invalid(field: impl Into<String>, expected: impl Into<String>) -> Self {
        Self { field: field.into(), problem: FieldProblem::Invalid(expected.into()) }
    }

    /// Puts this error under a parent field: `binRange.from` inside `cardProducts[0]` becomes
    /// `cardProducts[0].binRange.from`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            FieldProblem::Missing => write!(f, "{} is required", self.field),
            FieldProblem::Invalid(expected) => write!(f, "{} is invalid: {expected}", self.field),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_paths_the_way_json_reads() {
        let e = FieldError::invalid("from", "digits").within("binRange").within("[2]").within("cardProducts");
        assert_eq!(e.field, "cardProducts[2].binRange.from");
        assert_eq!(e.to_string(), "cardProducts[2].binRange.from is invalid: digits");
    }
}
