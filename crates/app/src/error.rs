//! How a use case fails.

use crate::ports::StoreError;
use cardplane_domain::FieldError;
use cardplane_domain::auth::AssertionRefusal;
use cardplane_domain::ids::IssuerId;

/// The failure of a use case. The API maps each variant to one status and error code; the
/// `Unexpected` variant is a fault of ours and is answered with a bare 500.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The caller sent a value the domain refuses (400).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// No issuer is onboarded under this id (404 on the admin API).
    #[error("issuer {0} is not onboarded")]
    IssuerNotFound(IssuerId),
    /// A token request's assertion was refused (400 `invalid_grant` / `invalid_request`).
    #[error("the assertion was refused: {0}")]
    AssertionRefused(AssertionRefusal),
    /// Anything that is not the caller's fault: storage down, a bug, corrupt data (500).
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        AppError::Unexpected(anyhow::Error::new(error))
    }
}
