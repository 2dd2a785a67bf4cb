-- The private half of a signing key is sealed with HUBAUTH_CRYPT_KEY (`private_sealed`, text as
-- crypto::seal writes it). `private_pkcs8` (PKCS#8 DER in the clear) remains for keys written
-- before sealing existed or with no keyring set; a start with the keyring seals them.
CREATE TABLE signing_keys_sealed (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    private_pkcs8  BLOB,
    private_sealed TEXT,
    created_at     INTEGER NOT NULL,
    rotated_at     INTEGER,                -- no longer signs
    expires_at     INTEGER,                -- no longer published after this
    CHECK ((private_pkcs8 IS NULL) <> (private_sealed IS NULL))
);
INSERT INTO signing_keys_sealed (kid, alg, private_pkcs8, created_at, rotated_at, expires_at)
    SELECT kid, alg, private_pkcs8, created_at, rotated_at, expires_at FROM signing_keys;
DROP TABLE signing_keys;
ALTER TABLE signing_keys_sealed RENAME TO signing_keys;
