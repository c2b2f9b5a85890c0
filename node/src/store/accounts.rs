//! Companies (tenants), users and device tokens.

use actors::model::now_millis;
use actors::ports::StoreError;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::{classify, uuid_col, Db};

#[derive(Debug, Clone, Serialize)]
pub struct CompanyRow {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub id: Uuid,
    pub company_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub is_admin: bool,
    pub created_at: i64,
    #[serde(skip)]
    pub password_hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceToken {
    pub token: String,
    pub platform: String,
    pub created_at: i64,
}

fn user_row(row: &AnyRow) -> Result<UserRow, sqlx::Error> {
    let is_admin: i64 = row.try_get("is_admin")?;
    Ok(UserRow {
        id: uuid_col(row, "id")?,
        company_id: uuid_col(row, "company_id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        is_admin: is_admin != 0,
        created_at: row.try_get("created_at")?,
        password_hash: row.try_get("password_hash")?,
    })
}

/// A new user's fields; the password is already hashed.
pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub is_admin: bool,
}

impl Db {
    /// Creates a company and its first (admin) user in one transaction.
    pub async fn create_company(
        &self,
        name: &str,
        slug: &str,
        admin: NewUser<'_>,
    ) -> Result<(CompanyRow, UserRow), StoreError> {
        let company =
            CompanyRow { id: Uuid::now_v7(), name: name.to_owned(), slug: slug.to_owned(), created_at: now_millis() };
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("INSERT INTO companies (id, name, slug, created_at) VALUES ($1, $2, $3, $4)")
            .bind(company.id.to_string())
            .bind(&company.name)
            .bind(&company.slug)
            .bind(company.created_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let user = Self::insert_user(&mut tx, company.id, admin).await?;
        tx.commit().await.map_err(classify)?;
        Ok((company, user))
    }

    pub async fn create_user(&self, company_id: Uuid, new: NewUser<'_>) -> Result<UserRow, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let user = Self::insert_user(&mut tx, company_id, new).await?;
        tx.commit().await.map_err(classify)?;
        Ok(user)
    }

    async fn insert_user(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        company_id: Uuid,
        new: NewUser<'_>,
    ) -> Result<UserRow, StoreError> {
        let user = UserRow {
            id: Uuid::now_v7(),
            company_id,
            username: new.username.to_owned(),
            display_name: new.display_name.to_owned(),
            is_admin: new.is_admin,
            created_at: now_millis(),
            password_hash: new.password_hash.to_owned(),
        };
        sqlx::query(
            "INSERT INTO users (id, company_id, username, display_name, password_hash, is_admin, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user.id.to_string())
        .bind(company_id.to_string())
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(i64::from(user.is_admin))
        .bind(user.created_at)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
        Ok(user)
    }

    /// The user named `username` in the company with `slug`, for login.
    pub async fn user_by_login(&self, slug: &str, username: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(
            "SELECT u.* FROM users u JOIN companies c ON c.id = u.company_id WHERE c.slug = $1 AND u.username = $2",
        )
        .bind(slug)
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.map(|row| user_row(&row)).transpose().map_err(classify)
    }

    /// The user if they belong to `company_id`.
    pub async fn user(&self, company_id: Uuid, user_id: Uuid) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1 AND company_id = $2")
            .bind(user_id.to_string())
            .bind(company_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| user_row(&row)).transpose().map_err(classify)
    }

    pub async fn users(&self, company_id: Uuid) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users WHERE company_id = $1 ORDER BY username")
            .bind(company_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(user_row).collect::<Result<_, _>>().map_err(classify)
    }

    pub async fn company(&self, company_id: Uuid) -> Result<Option<CompanyRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM companies WHERE id = $1")
            .bind(company_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| {
            Ok(CompanyRow {
                id: uuid_col(&row, "id")?,
                name: row.try_get("name")?,
                slug: row.try_get("slug")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
        .map_err(classify)
    }

    /// Registers a push token for the user in their company. Within a company a token moves to
    /// the user who registers it last; other companies' registrations of it stay untouched.
    pub async fn upsert_device(
        &self,
        company_id: Uuid,
        user_id: Uuid,
        token: &str,
        platform: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO device_tokens (token, user_id, company_id, platform, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (token, company_id) DO UPDATE SET user_id = excluded.user_id, \
             platform = excluded.platform, created_at = excluded.created_at",
        )
        .bind(token)
        .bind(user_id.to_string())
        .bind(company_id.to_string())
        .bind(platform)
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    /// Deletes the user's token; `false` if the user had no such token.
    pub async fn delete_device(&self, user_id: Uuid, token: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM device_tokens WHERE token = $1 AND user_id = $2")
            .bind(token)
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(result.rows_affected() > 0)
    }

    pub async fn devices(&self, user_id: Uuid) -> Result<Vec<DeviceToken>, StoreError> {
        let rows =
            sqlx::query("SELECT token, platform, created_at FROM device_tokens WHERE user_id = $1 ORDER BY created_at")
                .bind(user_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok(DeviceToken {
                    token: row.try_get("token")?,
                    platform: row.try_get("platform")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }
}
