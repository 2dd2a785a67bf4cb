-- One active (signing) key per algorithm, enforced by the database: replicas starting together
-- or two rotations at once cannot leave two signers behind. Should an older race have left
-- several, the newest keeps signing and the others retire now, published for a day more and
-- trusted for logout hints for thirty days (as a rotation with the default lifetimes would).
UPDATE signing_keys
SET rotated_at = CAST(strftime('%s', 'now') AS INTEGER),
    expires_at = CAST(strftime('%s', 'now') AS INTEGER) + 86400,
    verify_until = CAST(strftime('%s', 'now') AS INTEGER) + 30 * 86400
WHERE rotated_at IS NULL
  AND kid <> (
    SELECT newest.kid FROM signing_keys AS newest
    WHERE newest.alg = signing_keys.alg AND newest.rotated_at IS NULL
    ORDER BY newest.created_at DESC, newest.kid DESC LIMIT 1
  );
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE rotated_at IS NULL;
