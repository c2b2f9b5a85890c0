//! Passwords (argon2) and tokens (JWT, HS256). Access tokens authorize every request;
//! refresh tokens only buy new access tokens.

use std::time::Duration;

use actors::Caller;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The company (tenant) id.
    pub cid: Uuid,
    pub adm: bool,
    pub typ: TokenKind,
    pub iat: u64,
    pub exp: u64,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl Tokens {
    pub fn new(secret: &str, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            access_ttl,
            refresh_ttl,
        }
    }

    fn issue(
        &self,
        user_id: Uuid,
        company_id: Uuid,
        admin: bool,
        typ: TokenKind,
        ttl: Duration,
    ) -> Result<String, ApiError> {
        let iat = unix_now();
        let claims = Claims { sub: user_id, cid: company_id, adm: admin, typ, iat, exp: iat + ttl.as_secs() };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    pub fn pair(&self, user_id: Uuid, company_id: Uuid, admin: bool) -> Result<TokenPair, ApiError> {
        Ok(TokenPair {
            access_token: self.issue(user_id, company_id, admin, TokenKind::Access, self.access_ttl)?,
            refresh_token: self.issue(user_id, company_id, admin, TokenKind::Refresh, self.refresh_ttl)?,
            token_type: "Bearer",
            expires_in: self.access_ttl.as_secs(),
        })
    }

    /// Validates signature, expiry and kind.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, ApiError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            match err.kind() {
                ErrorKind::ExpiredSignature => ApiError::unauthorized("token expired"),
                _ => ApiError::unauthorized("invalid token"),
            }
        })?;
        if data.claims.typ != kind {
            return Err(ApiError::unauthorized("wrong kind of token"));
        }
        Ok(data.claims)
    }
}

/// Hashes a password with argon2id and a random salt. CPU-heavy: call off the async threads.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    crate::password::hash(password).map_err(ApiError::internal)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    crate::password::verify(password, hash)
}

/// The bearer token of a request, from the `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The authenticated user of a request.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub caller: Caller,
    pub is_admin: bool,
    pub expires_at: u64,
}

impl AuthUser {
    pub fn from_claims(claims: &Claims) -> Self {
        Self {
            caller: Caller { user_id: claims.sub, company_id: claims.cid },
            is_admin: claims.adm,
            expires_at: claims.exp,
        }
    }
}

impl AuthUser {
    /// Checks an access token and that its user still exists in the company it names: a
    /// signed token outlives its user (deleted) and a token's claims are only as good as the
    /// key, so both are checked against the database (one primary-key read).
    pub async fn authorize(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state.tokens.verify(token, TokenKind::Access)?;
        match actors::ports::UserDirectory::company_of(&state.db, claims.sub).await? {
            Some(company) if company == claims.cid => Ok(Self::from_claims(&claims)),
            Some(_) => Err(ApiError::unauthorized("token does not match its user's company")),
            None => Err(ApiError::unauthorized("user no longer exists")),
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        Self::authorize(state, token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_kinds_are_not_interchangeable() {
        let tokens = Tokens::new("secret", Duration::from_secs(60), Duration::from_secs(600));
        let (user, company) = (Uuid::new_v4(), Uuid::new_v4());
        let pair = tokens.pair(user, company, true).unwrap();
        let claims = tokens.verify(&pair.access_token, TokenKind::Access).unwrap();
        assert_eq!((claims.sub, claims.cid, claims.adm), (user, company, true));
        assert!(tokens.verify(&pair.refresh_token, TokenKind::Access).is_err());
        assert!(tokens.verify(&pair.access_token, TokenKind::Refresh).is_err());
        let other = Tokens::new("other", Duration::from_secs(60), Duration::from_secs(600));
        assert!(other.verify(&pair.access_token, TokenKind::Access).is_err(), "another secret");
    }

    #[test]
    fn expired_tokens_are_refused() {
        let tokens = Tokens::new("secret", Duration::from_secs(0), Duration::from_secs(0));
        let pair = tokens.pair(Uuid::new_v4(), Uuid::new_v4(), false).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let err = tokens.verify(&pair.access_token, TokenKind::Access).unwrap_err();
        assert_eq!(err.0.message, "token expired");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }
}
