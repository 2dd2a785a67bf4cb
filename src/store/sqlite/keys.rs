//! ID-token signing keys: one active per algorithm, rotated in one step.

use super::*;

#[async_trait]
impl KeyStore for SqliteStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kid, alg, private_pkcs8, private_sealed, created_at, rotated_at, expires_at, verify_until \
                 FROM signing_keys",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            })
            .map_err(backend)?;
        rows.map(|row| signing_key_from_row(row.map_err(backend)?)).collect()
    }

    async fn create_first_signing_key(&self, k: &StoredSigningKey, now: UnixTime) -> StoreResult<bool> {
        let k = k.clone();
        self.write(move |conn| {
            let (plain, sealed) = private_columns(&k.private_key);
            // The check and the insert are one statement in the writer's transaction; the partial
            // unique index (migration 6) backs it for any other writer.
            let n = conn
                .execute(
                    "INSERT INTO signing_keys (kid, alg, private_pkcs8, private_sealed, created_at, rotated_at, \
                     expires_at, verify_until) SELECT ?1, ?2, ?3, ?4, ?5, NULL, NULL, NULL WHERE NOT EXISTS \
                     (SELECT 1 FROM signing_keys WHERE alg = ?2 AND rotated_at IS NULL \
                      AND (expires_at IS NULL OR expires_at > ?6)) \
                     ON CONFLICT DO NOTHING",
                    params![k.kid, k.alg.as_str(), plain, sealed, k.created_at, now],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn rotate_signing_key(
        &self,
        k: &StoredSigningKey,
        rotated_at: UnixTime,
        expires_at: UnixTime,
        verify_until: UnixTime,
    ) -> StoreResult<()> {
        let k = k.clone();
        self.write(move |conn| {
            conn.execute(
                "UPDATE signing_keys SET rotated_at = ?, expires_at = ?, verify_until = ? WHERE alg = ? AND rotated_at IS NULL",
                params![rotated_at, expires_at, verify_until, k.alg.as_str()],
            )
            .map_err(backend)?;
            let (plain, sealed) = private_columns(&k.private_key);
            conn.execute(
                "INSERT INTO signing_keys (kid, alg, private_pkcs8, private_sealed, created_at, rotated_at, expires_at, \
                 verify_until) VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL)",
                params![k.kid, k.alg.as_str(), plain, sealed, k.created_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn replace_signing_key_private(&self, kid: &str, private_key: &StoredPrivateKey) -> StoreResult<()> {
        let (kid, private_key) = (kid.to_owned(), private_key.clone());
        self.write(move |conn| {
            let (plain, sealed) = private_columns(&private_key);
            conn.execute(
                "UPDATE signing_keys SET private_pkcs8 = ?, private_sealed = ? WHERE kid = ?",
                params![plain, sealed, kid],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}
