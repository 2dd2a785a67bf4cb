//! ID-token signing keys: one active per algorithm, rotated in one step.

use super::*;

#[async_trait]
impl KeyStore for PostgresStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows: Vec<SigningKeyRow> = sqlx::query_as(
            "SELECT kid, alg, private_pkcs8, private_sealed, created_at, rotated_at, expires_at, verify_until \
             FROM signing_keys",
        )
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.into_iter().map(signing_key_from_row).collect()
    }

    async fn create_first_signing_key(&self, k: &StoredSigningKey, now: UnixTime) -> StoreResult<bool> {
        let (plain, sealed) = private_columns(&k.private_key);
        // Check and insert in one statement; of replicas starting together, the partial unique
        // index lets one insert and the others' ON CONFLICT do nothing.
        let n = self
            .execute(
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_pkcs8, private_sealed, created_at) \
                     SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS \
                     (SELECT 1 FROM signing_keys WHERE alg = $2 AND rotated_at IS NULL \
                      AND (expires_at IS NULL OR expires_at > $6)) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&k.kid)
                .bind(k.alg.as_str())
                .bind(plain)
                .bind(sealed)
                .bind(k.created_at)
                .bind(now),
            )
            .await?;
        Ok(n == 1)
    }

    async fn replace_signing_key_private(&self, kid: &str, private_key: &StoredPrivateKey) -> StoreResult<()> {
        let (plain, sealed) = private_columns(private_key);
        self.execute(
            sqlx::query("UPDATE signing_keys SET private_pkcs8 = $1, private_sealed = $2 WHERE kid = $3")
                .bind(plain)
                .bind(sealed)
                .bind(kid),
        )
        .await?;
        Ok(())
    }

    async fn rotate_signing_key(
        &self,
        k: &StoredSigningKey,
        rotated_at: UnixTime,
        expires_at: UnixTime,
        verify_until: UnixTime,
    ) -> StoreResult<()> {
        let (plain, sealed) = private_columns(&k.private_key);
        let mut lease = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *lease).await.map_err(backend)?;
        sqlx::query(
            "UPDATE signing_keys SET rotated_at = $1, expires_at = $2, verify_until = $3 WHERE alg = $4 AND rotated_at IS NULL",
        )
        .bind(rotated_at)
        .bind(expires_at)
        .bind(verify_until)
        .bind(k.alg.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pkcs8, private_sealed, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&k.kid)
        .bind(k.alg.as_str())
        .bind(plain)
        .bind(sealed)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }
}
