use crate::harness::*;

#[tokio::test]
async fn discovery_document_matches_issuer_and_endpoints() {
    let app = TestApp::new().await;
    let res = app.get("/.well-known/openid-configuration").await;
    assert_eq!(res.status, 200);
    let d = res.json();
    assert_eq!(d["issuer"], ISSUER);
    for (k, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("revocation_endpoint", "/revoke"),
        ("introspection_endpoint", "/introspect"),
        ("end_session_endpoint", "/logout"),
    ] {
        assert_eq!(d[k], format!("{ISSUER}{path}"), "{k}");
    }
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(d["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    let algs = d["id_token_signing_alg_values_supported"].as_array().unwrap();
    assert!(algs.contains(&"RS256".into()) && algs.contains(&"ES256".into()));
}

#[tokio::test]
async fn jwks_publishes_one_rsa_and_one_ec_key_with_kids() {
    let app = TestApp::new().await;
    let jwks = app.get("/jwks").await.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k["kty"] == "RSA" && k["alg"] == "RS256" && k["kid"].is_string()));
    assert!(keys.iter().any(|k| k["kty"] == "EC" && k["crv"] == "P-256" && k["kid"].is_string()));
    // Never the private parts.
    assert!(keys.iter().all(|k| k.get("d").is_none() && k.get("p").is_none()));
}

#[tokio::test]
async fn issuer_with_a_path_serves_everything_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    let toml = config_toml(db.to_str().unwrap())
        .replace(&format!("issuer = \"{ISSUER}\""), &format!("issuer = \"{ISSUER}/auth\""));
    let app = TestApp::with_toml(dir, &toml).await;
    let d = app.get("/auth/.well-known/openid-configuration").await.json();
    assert_eq!(d["issuer"], format!("{ISSUER}/auth"));
    assert_eq!(d["token_endpoint"], format!("{ISSUER}/auth/token"));
    assert_eq!(app.get("/.well-known/openid-configuration").await.status, 404);
}

/// `/healthz` is for probes: it answers 200 only while the database answers, and 503 (with the
/// reason in the log, not in the unauthenticated answer) once it does not.
#[tokio::test]
async fn healthz_follows_the_database() {
    let app = TestApp::new().await;
    let ok = app.get("/healthz").await;
    assert_eq!(ok.status, axum::http::StatusCode::OK);
    assert_eq!(ok.text(), "ok");

    // Someone breaks the database under the running server.
    app.sql_execute("DROP TABLE signing_keys").await;
    let broken = app.get("/healthz").await;
    assert_eq!(broken.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(broken.text(), "storage unavailable", "no database detail for an unauthenticated caller");
}
