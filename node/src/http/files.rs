//! File attachments: multipart upload into a channel, download by members only.

use actors::model::{now_millis, ErrorCode};
use axum::extract::multipart::MultipartError;
use axum::extract::{Multipart, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use uuid::Uuid;

use super::types::OneFile;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiPath, ApiResult};
use crate::store::AttachmentRow;

fn multipart_error(err: MultipartError) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, "file too large")
    } else {
        ApiError::invalid(format!("bad multipart body: {}", err.body_text()))
    }
}

/// Keeps a file name printable and header-safe.
fn clean_filename(name: &str) -> String {
    let cleaned: String =
        name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\' && *c != '/').take(200).collect();
    if cleaned.trim().is_empty() {
        "file".to_owned()
    } else {
        cleaned
    }
}

/// `POST /v1/files` (multipart: `channel_id`, then `file`): stores a file for one channel.
pub async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    mut multipart: Multipart,
) -> ApiResult<(StatusCode, Json<OneFile>)> {
    let mut channel_id: Option<Uuid> = None;
    let mut file: Option<(String, String, Vec<u8>)> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("channel_id") => {
                let text = field.text().await.map_err(multipart_error)?;
                channel_id = Some(text.trim().parse().map_err(|_| ApiError::invalid("channel_id must be a UUID"))?);
            }
            Some("file") => {
                let filename = clean_filename(field.file_name().unwrap_or("file"));
                let content_type = field.content_type().unwrap_or("application/octet-stream").to_owned();
                let bytes = field.bytes().await.map_err(multipart_error)?;
                file = Some((filename, content_type, bytes.to_vec()));
            }
            _ => {}
        }
    }
    let channel_id = channel_id.ok_or_else(|| ApiError::invalid("missing field channel_id"))?;
    let (filename, content_type, data) = file.ok_or_else(|| ApiError::invalid("missing field file"))?;
    if data.len() > state.config.max_upload_bytes {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, "file too large"));
    }
    let caller = auth.caller;
    state.db.channel(caller.company_id, channel_id).await?.ok_or_else(|| ApiError::not_found("channel"))?;
    if !state.db.is_member(channel_id, caller.user_id).await? {
        return Err(ApiError::not_found("channel"));
    }
    let row = AttachmentRow {
        id: Uuid::now_v7(),
        channel_id,
        uploader_id: caller.user_id,
        filename,
        content_type,
        size: data.len() as i64,
        created_at: now_millis(),
        data,
    };
    state.db.insert_attachment(caller.company_id, &row).await?;
    Ok((StatusCode::CREATED, Json(OneFile { file: row })))
}

/// `GET /v1/files/{id}/meta`: name, type and size of a file, for members of its channel.
pub async fn meta(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(file_id): ApiPath<Uuid>,
) -> ApiResult<Json<OneFile>> {
    let caller = auth.caller;
    let file = state.db.attachment(caller.company_id, file_id).await?.ok_or_else(|| ApiError::not_found("file"))?;
    if !state.db.is_member(file.channel_id, caller.user_id).await? {
        return Err(ApiError::not_found("file"));
    }
    Ok(Json(OneFile { file }))
}

/// `GET /v1/files/{id}`: the bytes, for members of the file's channel.
pub async fn download(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(file_id): ApiPath<Uuid>,
) -> ApiResult<Response> {
    let caller = auth.caller;
    let file = state.db.attachment(caller.company_id, file_id).await?.ok_or_else(|| ApiError::not_found("file"))?;
    if !state.db.is_member(file.channel_id, caller.user_id).await? {
        return Err(ApiError::not_found("file"));
    }
    let disposition = format!("attachment; filename=\"{}\"", file.filename);
    Ok((
        [
            (CONTENT_TYPE, file.content_type.clone()),
            (CONTENT_DISPOSITION, disposition),
            (X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        file.data,
    )
        .into_response())
}
