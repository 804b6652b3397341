//! The one error type the gateway maps to protocol codes.

use crate::store::StoreError;
use std::borrow::Cow;
use tern_proto::ErrorCode;

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CoreError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
}

impl CoreError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> CoreError {
        CoreError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<Cow<'static, str>>) -> CoreError {
        CoreError::new(ErrorCode::Invalid, message)
    }

    pub fn unavailable() -> CoreError {
        CoreError::new(ErrorCode::Unavailable, "service unavailable, try again")
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> CoreError {
        match e {
            StoreError::Invalid(m) => CoreError::invalid(m),
            StoreError::Forbidden(m) => CoreError::new(ErrorCode::Forbidden, m),
            StoreError::NotMember => {
                CoreError::new(ErrorCode::NotMember, "not a member of this conversation")
            }
            StoreError::NoSuchGroup => CoreError::new(ErrorCode::NoSuchGroup, "no such group"),
            StoreError::NoSuchUser => CoreError::new(ErrorCode::NoSuchUser, "no such user"),
            StoreError::Muted => CoreError::new(ErrorCode::Muted, "muted in this group"),
            StoreError::NotFound => CoreError::invalid("not found"),
            StoreError::Conflict => CoreError::invalid("conflict"),
            StoreError::Backend(source) => {
                // The client learns only that storage is unavailable; the
                // operator gets the cause.
                tracing::error!(error = %source, "storage backend failed");
                CoreError::unavailable()
            }
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

impl From<crate::bus::PlumbingError> for CoreError {
    fn from(e: crate::bus::PlumbingError) -> CoreError {
        tracing::error!(error = %e, "cluster plumbing failed");
        CoreError::unavailable()
    }
}
