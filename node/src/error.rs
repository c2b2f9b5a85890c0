//! The one error type of the HTTP API: `{code, message}` with the matching status.
//! Internal detail is logged here and never sent to clients.

use actors::model::{ErrorCode, RequestError};
use actors::ports::StoreError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{error, warn};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(pub RequestError);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(RequestError::new(code, message))
    }
    pub fn not_found(what: &str) -> Self {
        Self(RequestError::not_found(what))
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self(RequestError::invalid(message))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        error!(%detail, "internal error");
        Self(RequestError::internal())
    }

    pub fn status(&self) -> StatusCode {
        match self.0.code {
            ErrorCode::BadJson | ErrorCode::BadFrame | ErrorCode::UnknownType | ErrorCode::Invalid => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::NotMember => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict | ErrorCode::LimitExceeded => StatusCode::CONFLICT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(err: RequestError) -> Self {
        Self(err)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(detail) => {
                warn!(%detail, "conflict");
                Self::new(ErrorCode::Conflict, "already exists")
            }
            StoreError::Rejected(detail) => {
                warn!(%detail, "the database refused the request's data");
                Self::invalid("the request refers to something that does not exist or holds unstorable text")
            }
            other => {
                warn!(error = %other, "store failed");
                Self(RequestError::unavailable())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "code": self.0.code, "message": self.0.message }));
        (self.status(), body).into_response()
    }
}

/// JSON body extractor whose rejections are [`ApiError`]s. It refuses text that no store can
/// keep (NUL characters) and names the field a body fails on.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(value)) => value,
            Err(rejection) => return Err(json_rejection(rejection)),
        };
        if let Some(field) = actors::protocol::text_with_nul(&value) {
            return Err(ApiError::invalid(format!("{field} must not contain NUL characters (\\u0000)")));
        }
        serde_path_to_error::deserialize(value).map(Self).map_err(|err| {
            let path = err.path().to_string();
            if path == "." {
                ApiError::invalid(err.into_inner().to_string())
            } else {
                ApiError::invalid(format!("field `{path}`: {}", err.into_inner()))
            }
        })
    }
}

/// Refuses a percent-encoded NUL in a path or query: no store can keep it.
fn refuse_nul(raw: &str) -> Result<(), ApiError> {
    if raw.to_ascii_lowercase().contains("%00") {
        Err(ApiError::invalid("the request must not contain NUL characters (%00)"))
    } else {
        Ok(())
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let text = rejection.body_text();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::PayloadTooLarge, "request body too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::invalid("expected Content-Type: application/json"),
        _ if matches!(rejection, JsonRejection::JsonSyntaxError(_)) => ApiError::new(ErrorCode::BadJson, text),
        _ => ApiError::invalid(text),
    }
}

/// Path extractor whose rejections are [`ApiError`]s (a malformed id is a 400, not a 500).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        refuse_nul(parts.uri.path())?;
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| ApiError::invalid(rejection.body_text()))
    }
}

/// Query extractor whose rejections are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        refuse_nul(parts.uri.query().unwrap_or_default())?;
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| ApiError::invalid(rejection.body_text()))
    }
}
