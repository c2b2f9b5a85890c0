//! Companies, login, tokens, users and device tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use uuid::Uuid;

use super::types::{CompanyCreated, Devices, LoggedIn, Me, OneUser, Refreshed, Users};
use super::{check_name, check_text};
use crate::app::AppState;
use crate::auth::{hash_password, verify_password, AuthUser, TokenKind};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::store::NewUser;

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 256;

#[derive(Deserialize)]
pub struct NewUserBody {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Deserialize)]
pub struct NewCompanyBody {
    pub name: String,
    pub slug: String,
    pub admin: NewUserBody,
}

fn check_user(body: &NewUserBody) -> Result<(), ApiError> {
    check_name("username", &body.username, 40)?;
    if body.password.chars().count() < MIN_PASSWORD || body.password.len() > MAX_PASSWORD {
        return Err(ApiError::invalid(format!("password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")));
    }
    if let Some(display) = &body.display_name {
        check_text("display_name", display, 100)?;
    }
    Ok(())
}

/// Hashes a password off the async threads, within the node's hashing budget.
async fn hash(state: &AppState, password: String) -> ApiResult<String> {
    let slot = state.limits.hashing_slot().await?;
    let hashed = tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(ApiError::internal)?;
    drop(slot);
    hashed
}

/// `POST /v1/companies`: a new tenant with its first (admin) user. Open, like a sign-up.
pub async fn create_company(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewCompanyBody>,
) -> ApiResult<(StatusCode, Json<CompanyCreated>)> {
    check_text("name", &body.name, 100)?;
    let slug_ok = (2..=40).contains(&body.slug.len())
        && body.slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !slug_ok {
        return Err(ApiError::invalid("slug must be 2 to 40 lowercase letters, digits or '-'"));
    }
    check_user(&body.admin)?;
    let password_hash = hash(&state, body.admin.password.clone()).await?;
    let display_name = body.admin.display_name.as_deref().unwrap_or(&body.admin.username);
    let admin = NewUser { username: &body.admin.username, display_name, password_hash: &password_hash, is_admin: true };
    let (company, user) = state.db.create_company(&body.name, &body.slug, admin).await.map_err(|err| match err {
        actors::ports::StoreError::Conflict(_) => {
            ApiError::new(actors::model::ErrorCode::Conflict, "slug already taken")
        }
        other => other.into(),
    })?;
    let tokens = state.tokens.pair(user.id, company.id, true)?;
    Ok((StatusCode::CREATED, Json(CompanyCreated { company, user, tokens })))
}

#[derive(Deserialize)]
pub struct LoginBody {
    pub company: String,
    pub username: String,
    pub password: String,
}

/// `POST /v1/auth/login`: company slug, username and password for a token pair.
pub async fn login(State(state): State<AppState>, ApiJson(body): ApiJson<LoginBody>) -> ApiResult<Json<LoggedIn>> {
    if body.password.len() > MAX_PASSWORD {
        return Err(ApiError::unauthorized("invalid credentials"));
    }
    let user = state.db.user_by_login(&body.company, &body.username).await?;
    let Some(user) = user else {
        return Err(ApiError::unauthorized("invalid credentials"));
    };
    let hash = user.password_hash.clone();
    let password = body.password;
    let slot = state.limits.hashing_slot().await?;
    let valid =
        tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.map_err(ApiError::internal)?;
    drop(slot);
    if !valid {
        return Err(ApiError::unauthorized("invalid credentials"));
    }
    let tokens = state.tokens.pair(user.id, user.company_id, user.is_admin)?;
    Ok(Json(LoggedIn { user, tokens }))
}

#[derive(Deserialize)]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// `POST /v1/auth/refresh`: a refresh token for a new pair, if the user still exists.
pub async fn refresh(State(state): State<AppState>, ApiJson(body): ApiJson<RefreshBody>) -> ApiResult<Json<Refreshed>> {
    let claims = state.tokens.verify(&body.refresh_token, TokenKind::Refresh)?;
    let user =
        state.db.user(claims.cid, claims.sub).await?.ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    let tokens = state.tokens.pair(user.id, user.company_id, user.is_admin)?;
    Ok(Json(Refreshed { tokens }))
}

pub async fn me(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Me>> {
    let user =
        state.db.user(auth.caller.company_id, auth.caller.user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    let company = state.db.company(auth.caller.company_id).await?.ok_or_else(|| ApiError::not_found("company"))?;
    Ok(Json(Me { user, company }))
}

/// `POST /v1/users`: an admin adds a user to their company.
pub async fn create_user(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<NewUserBody>,
) -> ApiResult<(StatusCode, Json<OneUser>)> {
    if !auth.is_admin {
        return Err(ApiError::forbidden("only company admins add users"));
    }
    check_user(&body)?;
    let password_hash = hash(&state, body.password.clone()).await?;
    let display_name = body.display_name.as_deref().unwrap_or(&body.username);
    let new = NewUser { username: &body.username, display_name, password_hash: &password_hash, is_admin: false };
    let user = state.db.create_user(auth.caller.company_id, new).await.map_err(|err| match err {
        actors::ports::StoreError::Conflict(_) => {
            ApiError::new(actors::model::ErrorCode::Conflict, "username already taken")
        }
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(OneUser { user })))
}

pub async fn list_users(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Users>> {
    let users = state.db.users(auth.caller.company_id).await?;
    Ok(Json(Users { users }))
}

pub async fn get_user(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(user_id): ApiPath<Uuid>,
) -> ApiResult<Json<OneUser>> {
    let user = state.db.user(auth.caller.company_id, user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(OneUser { user }))
}

#[derive(Deserialize)]
pub struct DeviceBody {
    pub token: String,
    pub platform: String,
}

/// `POST /v1/devices`: registers a push token (FCM registration token) for the caller.
pub async fn register_device(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<DeviceBody>,
) -> ApiResult<StatusCode> {
    if !matches!(body.platform.as_str(), "android" | "ios" | "web") {
        return Err(ApiError::invalid("platform must be android, ios or web"));
    }
    if body.token.is_empty()
        || body.token.len() > 4096
        || body.token.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::invalid("token must be 1 to 4096 bytes without spaces"));
    }
    state.db.upsert_device(auth.caller.company_id, auth.caller.user_id, &body.token, &body.platform).await?;
    Ok(StatusCode::CREATED)
}

pub async fn list_devices(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Devices>> {
    let devices = state.db.devices(auth.caller.user_id).await?;
    Ok(Json(Devices { devices }))
}

pub async fn delete_device(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(token): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if state.db.delete_device(auth.caller.user_id, &token).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("device"))
    }
}
