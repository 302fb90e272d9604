//! API errors: every failure is `{"error": {"code", "message"}}` with a fitting status.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use peers_core::wire::{ErrorBody, ErrorCode, ErrorDetail};

use peers_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// A recipient (name, `name@host` or id) that names no peer.
    pub fn unknown_peer(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::UnknownPeer, message)
    }

    /// A POST whose body is not declared JSON (`Content-Type: application/json`).
    pub fn not_json() -> ApiError {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "POST bodies must be JSON with `Content-Type: application/json`",
        )
    }

    /// A path the API has, asked with a method it does not take (HEAD included).
    pub fn method_not_allowed() -> ApiError {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "this path does not take that method; see docs/PROTOCOL.md",
        )
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Lost { location } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StorageLost,
                format!(
                    "the broker's database file {location} was deleted or replaced while the broker \
                     ran, so nothing can be stored safely and nothing was stored for this \
                     request. Restart the broker (`peers broker stop`; clients start it again): \
                     it starts with an empty database unless you put a copy of peers.db back \
                     first",
                ),
            ),
            StoreError::Full { location, detail } => {
                tracing::warn!(db = %location, detail, "refused: storage full");
                let db = std::path::Path::new(&location);
                let dir = db.parent().unwrap_or(db);
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    ErrorCode::StorageFull,
                    format!(
                        "the disk holding the broker's state dir {} is full or failing \
                         (writing {}); nothing of this request was stored. Free some space \
                         there: the broker takes writes again by itself, no restart needed",
                        dir.display(),
                        db.display()
                    ),
                )
            }
            StoreError::BadQuery(why) => ApiError::bad_request(why),
            StoreError::Unavailable { location, detail } => {
                tracing::warn!(db = %location, detail, "refused: database unreachable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StorageUnavailable,
                    format!(
                        "the broker cannot reach its database {location}, so nothing of this \
                         request was stored. Retry in a moment; if it lasts, check that the \
                         database server runs and accepts connections (or use another broker \
                         of the hub)"
                    ),
                )
            }
            e => {
                // The details stay in the log; the caller gets an id to find them by.
                let id = peers_core::paths::random_hex(4);
                tracing::error!(error_id = %id, error = %e, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    format!(
                        "the broker hit an internal error (error id {id}); its log \
                         (logs/broker.log in the state dir) has the details under that id"
                    ),
                )
            }
        }
    }
}

/// A body that is not the JSON the call takes (see `api::extract::ApiJson`).
impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        match e {
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large(
                    "request body too large; messages are limited to max_message_bytes \
                     (64 KiB by default): send a shorter message or a file path instead",
                )
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::not_json(),
            e => ApiError::bad_request(format!("malformed JSON body: {}", e.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::bad_request(format!("bad query string: {}", e.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        ApiError::bad_request(format!("bad path: {}", e.body_text()))
    }
}

pub type ApiResult<T> = Result<Json<T>, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_name_an_id_never_the_database_text() {
        let e = StoreError::Internal("SQLITE_CORRUPT: secret table layout".into());
        let api = ApiError::from(e);
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(api.code, ErrorCode::Internal);
        assert!(api.message.contains("error id"), "{}", api.message);
        assert!(!api.message.contains("SQLITE"), "{}", api.message);
        assert!(!api.message.contains("secret"), "{}", api.message);
    }

    #[test]
    fn an_unreachable_database_is_503_storage_unavailable_naming_it_without_internals() {
        let api = ApiError::from(StoreError::Unavailable {
            location: "postgres://peers:***@db.example/peers".into(),
            detail: "connection refused (os error 111)".into(),
        });
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(api.code, ErrorCode::StorageUnavailable);
        assert!(
            api.message
                .contains("postgres://peers:***@db.example/peers"),
            "{}",
            api.message
        );
        assert!(!api.message.contains("os error"), "{}", api.message);
    }
}
