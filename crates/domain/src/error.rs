use thiserror::Error;

/// A value that breaks one of the domain's rules.
///
/// `field` names the input that was wrong, so the HTTP layer can report it in the
/// `errors` list of a 422 response without knowing the rules itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct DomainError {
    pub field: &'static str,
    pub message: String,
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}
