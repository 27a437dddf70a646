//! Extractors whose rejections use the API's error shape (axum's own answer in plain
//! text, with statuses the API does not document).

use axum::extract::rejection::JsonRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// Query parameters, parsed but not yet judged: a malformed query becomes a
/// `400 invalid_request` only when the handler takes the value (`q?`), after it has
/// authorized the caller. A caller without access learns nothing from the answer,
/// not even whether its query would have been valid.
#[derive(Debug)]
pub struct Query<T>(pub Result<T, ApiError>);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Query(
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map(|axum::extract::Query(v)| v)
                .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text()))),
        ))
    }
}

/// Unwraps a JSON body, turning extractor rejections into our error shape: `413`
/// over `limit`, `400` for anything else.
pub fn body<T>(b: Result<Json<T>, JsonRejection>, limit: usize) -> ApiResult<T> {
    b.map(|Json(v)| v).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(limit),
        _ => ApiError::BadRequest(format!("invalid JSON body: {}", e.body_text())),
    })
}

/// Path parameters, with the API's error shape: a segment that does not parse as the
/// parameter's type names nothing here, so it is a `404 not_found` in JSON (axum's own
/// rejection is plain text).
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::NotFound("resource".into())),
            // A route whose handler expects parameters its path does not have: a bug.
            Err(other) => Err(ApiError::Internal(Box::new(std::io::Error::other(other.body_text())))),
        }
    }
}
