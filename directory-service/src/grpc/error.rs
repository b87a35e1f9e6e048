//! The gRPC layer's error type and its one mapping to `tonic::Status`.
//!
//! Client errors carry rich details (AIP-193): `BadRequest` naming the field for
//! INVALID_ARGUMENT and ALREADY_EXISTS, `ErrorInfo` with a machine-readable reason
//! and `PreconditionFailure` naming the blocking resources for FAILED_PRECONDITION.
//! Internal errors are logged with their cause and returned opaque.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::ValidationError;
use crate::feed::{FeedError, Refused};
use crate::storage::StoreError;

/// The `ErrorInfo` domain of this service's errors.
const ERROR_DOMAIN: &str = "directory.cohort";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// A feed stream refused a place.
    #[error(transparent)]
    Refused(#[from] Refused),
}

pub type ApiResult<T> = Result<tonic::Response<T>, Status>;

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        match err {
            ApiError::Invalid(ValidationError { field, message }) => {
                bad_request(Code::InvalidArgument, field, message)
            }
            ApiError::Store(err) | ApiError::Feed(FeedError::Store(err)) => store_status(err),
            ApiError::Feed(err @ FeedError::TooSlow(_)) => {
                exhausted("SUBSCRIBER_TOO_SLOW", err.to_string())
            }
            ApiError::Refused(refused) => {
                let reason = match refused {
                    Refused::Full => "FEED_STREAMS_EXHAUSTED",
                    Refused::Quota { .. } => "FEED_STREAM_QUOTA_EXCEEDED",
                };
                exhausted(reason, refused.to_string())
            }
        }
    }
}

/// RESOURCE_EXHAUSTED with a machine-readable reason.
fn exhausted(reason: &str, message: String) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []);
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

fn bad_request(code: Code, field: String, message: String) -> Status {
    let text = format!("{field}: {message}");
    Status::with_error_details(
        code,
        text,
        ErrorDetails::with_bad_request_violation(field, message),
    )
}

fn store_status(err: StoreError) -> Status {
    match err {
        StoreError::NotFound { kind, id } => {
            let mut details = ErrorDetails::new();
            details.set_resource_info(
                kind,
                id.clone(),
                "",
                format!("no {kind} {id} in this tenant"),
            );
            Status::with_error_details(Code::NotFound, format!("{kind} {id} not found"), details)
        }
        StoreError::AlreadyExists { field, message } => {
            bad_request(Code::AlreadyExists, field, message)
        }
        StoreError::InvalidArgument { field, message } => {
            bad_request(Code::InvalidArgument, field, message)
        }
        StoreError::Rule(violation) => {
            let (reason, message, subjects) = (
                violation.reason(),
                violation.to_string(),
                violation.subjects(),
            );
            let mut details = ErrorDetails::with_error_info(
                reason,
                ERROR_DOMAIN,
                [("subjects".to_owned(), subjects.join(","))],
            );
            for subject in &subjects {
                details.add_precondition_failure_violation(
                    reason,
                    subject.clone(),
                    message.clone(),
                );
            }
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        StoreError::EtagMismatch {
            kind,
            expected,
            current,
        } => {
            let details = ErrorDetails::with_error_info(
                "ETAG_MISMATCH",
                ERROR_DOMAIN,
                [("current_etag".to_owned(), current.to_string())],
            );
            let message =
                format!("the {kind} changed since etag {expected} (now {current}); read it again");
            Status::with_error_details(Code::Aborted, message, details)
        }
        StoreError::Database(sqlx::Error::PoolTimedOut) => {
            tracing::warn!("database pool exhausted");
            Status::unavailable("the service is overloaded; retry later")
        }
        StoreError::Database(err) => {
            tracing::error!(error = %err, cause = ?err, "database error");
            Status::internal("internal error")
        }
        StoreError::Corrupt(detail) => {
            tracing::error!(%detail, "corrupt row");
            Status::internal("internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_name_the_field() {
        let status = Status::from(ApiError::Invalid(ValidationError::new(
            "email",
            "is required",
        )));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "email");
    }

    #[test]
    fn database_errors_are_opaque() {
        let status = Status::from(ApiError::Store(StoreError::Database(
            sqlx::Error::Protocol("secret table name".into()),
        )));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn preconditions_carry_reason_and_subjects() {
        use crate::domain::rules::RuleViolation;
        use crate::domain::{GroupId, UserId};
        let status = Status::from(ApiError::Store(StoreError::Rule(
            RuleViolation::StillAdministersGroups {
                user: UserId::generate(),
                groups: vec![GroupId::generate(), GroupId::generate()],
            },
        )));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().unwrap().reason,
            "STILL_ADMINISTERS_GROUPS"
        );
        assert_eq!(details.precondition_failure().unwrap().violations.len(), 2);
    }
}
