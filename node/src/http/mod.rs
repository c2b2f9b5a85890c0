//! HTTP handlers, one module per resource.

pub mod accounts;
pub mod channels;
pub mod files;
pub mod meetings;
pub mod ops;
pub mod types;
pub mod web;

use crate::error::ApiError;

/// Checks a user-chosen name: 1..=max bytes of letters, digits, `_`, `-`, `.`, not ending in `.`.
pub(crate) fn check_name(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !value.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be 1 to {max} letters, digits, '_', '-' or '.', not ending in '.'"
        )))
    }
}

pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.len() > max {
        return Err(ApiError::invalid(format!("{field} must be 1 to {max} bytes")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::invalid(format!("{field} must not contain control characters")));
    }
    Ok(())
}
