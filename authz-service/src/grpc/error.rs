//! The gRPC layer's error type and its one mapping to `tonic::Status`: a
//! `BadRequest` naming the field for INVALID_ARGUMENT, a `ResourceInfo` and an
//! `ErrorInfo` reason for NOT_FOUND, an `ErrorInfo` with the revisions for a
//! revision not reached.

use tonic::{Code, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::CheckError;
use crate::projection::NotReached;

/// The `ErrorInfo` domain of this service's errors.
const ERROR_DOMAIN: &str = "authz.cohort";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Nothing of this kind (`tenant`, `user`, `group`) with this id in the
    /// tenant.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("revision {} of the tenant was not reached in time (at {})", .0.wanted, .0.current)]
    NotReached(NotReached),
    #[error("the directory cannot be reached for its current revision: {0}")]
    DirectoryUnavailable(String),
    /// The caller's credential does not cover the tenant (already a status).
    #[error("{}", .0.message())]
    Denied(Status),
}

impl ApiError {
    pub(super) fn not_found(kind: &'static str, id: impl std::fmt::Display) -> Self {
        ApiError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<CheckError> for ApiError {
    fn from(err: CheckError) -> Self {
        match err {
            CheckError::UnknownPermission(_) => ApiError::invalid("permission", err.to_string()),
            CheckError::NotApplicable { .. } => ApiError::invalid("resource", err.to_string()),
            CheckError::UserNotFound(user) => ApiError::not_found("user", user),
            CheckError::GroupNotFound(group) => ApiError::not_found("group", group),
        }
    }
}

/// A lookup's errors: its resource is implied (groups), so a permission that
/// does not apply to groups is the `permission` field's fault.
pub(super) fn lookup_error(err: CheckError) -> ApiError {
    match err {
        CheckError::NotApplicable { .. } => ApiError::invalid("permission", err.to_string()),
        other => ApiError::from(other),
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        let message = err.to_string();
        match err {
            ApiError::Invalid {
                field,
                message: reason,
            } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            ApiError::NotFound { kind, id } => {
                // As the directory answers: which resource was not found, and
                // a reason a program can switch on.
                let mut details = ErrorDetails::with_error_info(
                    format!("{}_NOT_FOUND", kind.to_uppercase()),
                    ERROR_DOMAIN,
                    [(kind.to_owned(), id.clone())],
                );
                details.set_resource_info(kind, id, "", format!("no {kind} with this id"));
                Status::with_error_details(Code::NotFound, message, details)
            }
            ApiError::NotReached(NotReached { wanted, current }) => Status::with_error_details(
                Code::DeadlineExceeded,
                message,
                ErrorDetails::with_error_info(
                    "REVISION_NOT_REACHED",
                    ERROR_DOMAIN,
                    [
                        ("wanted".to_owned(), wanted.to_string()),
                        ("current".to_owned(), current.to_string()),
                    ],
                ),
            ),
            ApiError::DirectoryUnavailable(_) => Status::unavailable(message),
            ApiError::Denied(status) => status,
        }
    }
}

/// A handler's answer as tonic wants it.
pub(super) fn reply<T>(result: Result<T, ApiError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}
