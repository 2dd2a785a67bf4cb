//! `check-config` must name the bad key and say why.

use std::path::Path;

use hubauth::config::Config;

use crate::harness::*;

fn error_of(toml: &str) -> String {
    Config::parse(toml, Path::new("/etc/hubauth/hubauth.toml")).expect_err("config should be refused").to_string()
}

fn base() -> String {
    config_toml("/tmp/x.db")
}

#[test]
fn the_test_config_is_valid() {
    Config::parse(&base(), Path::new("/tmp/hubauth.toml")).unwrap();
}

/// Plain http on loopback stays allowed (a hub on the same machine, the e2e setups); elsewhere only
/// with the client's explicit `allow_insecure_redirect`.
#[test]
fn plain_http_redirects_are_for_loopback_or_an_explicit_opt_in() {
    let ok = |toml: String| Config::parse(&toml, Path::new("/tmp/hubauth.toml")).unwrap();
    for uri in ["http://localhost/cb", "http://127.0.0.1:8000/hub/oauth_callback", "http://[::1]:9/cb"] {
        ok(base().replace("\"https://es.example.org/cb\"", &format!("{uri:?}")));
    }
    let opted_in = base().replace(
        "redirect_uris = [\"https://es.example.org/cb\"]",
        "redirect_uris = [\"http://hub.lan:8000/hub/oauth_callback\"]\nallow_insecure_redirect = true",
    );
    assert_eq!(ok(opted_in).client("es").unwrap().redirect_uris, ["http://hub.lan:8000/hub/oauth_callback"]);
}

#[test]
fn errors_name_the_key_and_the_reason() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            base().replace("issuer = \"http://127.0.0.1:5556\"", "issuer = \"http://auth.example.org\""),
            "`issuer`",
            "https",
        ),
        (
            base().replace("issuer = \"http://127.0.0.1:5556\"", "issuer = \"http://127.0.0.1:5556/\""),
            "`issuer`",
            "must not end with '/'",
        ),
        (base().replace("issuer = \"http://127.0.0.1:5556\"", "issuer = \"not a url\""), "`issuer`", "absolute URL"),
        (
            base().replace("name = \"Test Hub\"", "name = \"Test Hub\"\ncolour = \"red\""),
            "clients[0]",
            "unknown field `colour`",
        ),
        (
            base().replace("secret = \"hub-secret-0123456789\"", "secret = \"short\""),
            "clients[0].secret",
            "16 characters",
        ),
        (
            base().replace("secret = \"hub-secret-0123456789\"", "secret = { env = \"HUBAUTH_TEST_UNSET_VAR\" }"),
            "clients[0].secret",
            "HUBAUTH_TEST_UNSET_VAR is not set",
        ),
        (
            base().replace("\"https://es.example.org/cb\"", "\"https://es.example.org/cb#x\""),
            "clients[1].redirect_uris[0]",
            "fragment",
        ),
        (
            base().replace("\"https://es.example.org/cb\"", "\"/relative\""),
            "clients[1].redirect_uris[0]",
            "absolute URL",
        ),
        (
            base().replace("\"https://es.example.org/cb\"", "\"https://*.example.org/cb\""),
            "clients[1].redirect_uris[0]",
            "wildcard",
        ),
        (
            base().replace("\"https://es.example.org/cb\"", "\"https://es.example.org/*\""),
            "clients[1].redirect_uris[0]",
            "wildcard",
        ),
        (
            base().replace("\"https://es.example.org/cb\"", "\"http://es.example.org/cb\""),
            "clients[1].redirect_uris[0]",
            "allow_insecure_redirect",
        ),
        (
            base().replace("\"http://127.0.0.1:8000/hub/\"", "\"http://hub.example.org/hub/\""),
            "clients[0].post_logout_redirect_uris[0]",
            "plain http",
        ),
        (base().replace("id = \"es\"", "id = \"hub\""), "clients[1].id", "used twice"),
        (
            base().replace("id_token_signed_response_alg = \"ES256\"", "id_token_signed_response_alg = \"HS256\""),
            "clients[1].id_token_signed_response_alg",
            "not supported",
        ),
        (
            base().replace("public = true", "public = true\nsecret = \"0123456789abcdef0\""),
            "clients[2].secret",
            "public client",
        ),
        (base().replace("type = \"dev\"", "type = \"ldap\""), "connectors[0]", "unknown connector type \"ldap\""),
        (
            base().replace("username = \"sam\"\npassword_hash", "username = \"sam\"\npassword_hash = \"plain\"\n#"),
            "connectors[0].users[1].password_hash",
            "hash-password",
        ),
        (base().replace("url = \"sqlite:///tmp/x.db\"", "url = \"mysql://x\""), "storage.url", "sqlite://"),
        (
            format!("{}\n[tokens]\nauthorization_code_lifetime = \"5m\"\n", base()),
            "tokens.authorization_code_lifetime",
            "60s",
        ),
        (
            format!("{}\n[tokens]\naccess_token_lifetime = \"ten minutes\"\n", base()),
            "tokens.access_token_lifetime",
            "",
        ),
        ("issuer = ".to_string(), "(syntax)", ""),
    ];
    for (toml, key, why) in cases {
        let e = error_of(&toml);
        assert!(e.contains(key), "expected key {key} in: {e}");
        assert!(e.contains(why), "expected reason {why:?} in: {e}");
        assert!(e.starts_with("/etc/hubauth/hubauth.toml"), "names the file: {e}");
    }
}

#[test]
fn secrets_can_come_from_env_and_files_and_never_print() {
    std::env::set_var("HUBAUTH_TEST_SECRET_VAR", "from-env-0123456789");
    let c = Config::parse(
        &base().replace("secret = \"hub-secret-0123456789\"", "secret = { env = \"HUBAUTH_TEST_SECRET_VAR\" }"),
        Path::new("/tmp/hubauth.toml"),
    )
    .unwrap();
    let hub = c.client("hub").unwrap();
    assert!(hub.secret.as_ref().unwrap().matches("from-env-0123456789"));
    assert!(!format!("{c:?}").contains("from-env-0123456789"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s"), "from-file-0123456789\n").unwrap();
    let c = Config::parse(
        &base().replace("secret = \"hub-secret-0123456789\"", "secret = { file = \"s\" }"),
        &dir.path().join("hubauth.toml"),
    )
    .unwrap();
    assert!(c.client("hub").unwrap().secret.as_ref().unwrap().matches("from-file-0123456789"));
}

#[test]
fn token_exchange_rules_must_say_which_subject_tokens_were_meant_for_exchange() {
    let rule = |body: &str| {
        format!(
            "{}\n[[clients]]\nid = \"spawner\"\nsecret = \"spawner-secret-0123456789\"\ngrant_types = [\"token_exchange\"]\nredirect_uris = []\n[clients.token_exchange]\naudiences = [\"dev\"]\n{body}\n",
            base()
        )
    };
    let key = "clients[3].token_exchange";
    for (body, field, why) in [
        ("subject_token_types = [\"access_token\"]", "subject_clients", "name the clients whose access tokens"),
        (
            "subject_token_types = [\"access_token\"]\nsubject_clients = [\"nope\"]",
            "subject_clients[0]",
            "no client \"nope\"",
        ),
        (
            "subject_token_types = [\"access_token\"]\nsubject_clients = [\"spawner\"]",
            "subject_clients[0]",
            "does not sign people in",
        ),
        (
            "subject_token_types = [\"access_token\"]\nsubject_clients = [\"hub\"]\nsubject_scopes = [\"upstream\"]",
            "subject_scopes[0]",
            "not a scope hubauth grants",
        ),
        (
            "subject_token_types = [\"jupyterhub\"]\njupyterhub_scope = \"custom:x!user=alice\"",
            "jupyterhub_scope",
            "no filter",
        ),
        (
            "subject_token_types = [\"jupyterhub\"]\njupyterhub_scope = \"\"",
            "jupyterhub_scope",
            "not a JupyterHub scope",
        ),
        ("subject_token_types = [\"ldap\"]", "subject_token_types[0]", "\"access_token\" or \"jupyterhub\""),
    ] {
        let e = error_of(&rule(body));
        assert!(e.contains(&format!("`{key}.{field}`")), "expected {key}.{field} in: {e}");
        assert!(e.contains(why), "expected {why:?} in: {e}");
    }
    let ok = rule("subject_token_types = [\"access_token\", \"jupyterhub\"]\nsubject_clients = [\"hub\"]");
    let config = Config::parse(&ok, Path::new("/tmp/hubauth.toml")).unwrap();
    let x = config.client("spawner").unwrap().token_exchange.clone().unwrap();
    assert_eq!(x.subject_scopes, ["openid"], "default");
    assert!(x.jupyterhub_server_tokens, "default");
    assert_eq!(x.jupyterhub_scope, "custom:hubauth:exchange", "default");
}

/// `[storage]` for PostgreSQL: the URL or its password from the environment or a file (they are
/// secrets), checked settings, and the password never shown.
#[test]
fn a_postgres_url_and_password_may_come_from_env_or_file_and_are_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hubauth.toml");
    std::fs::write(dir.path().join("db-password"), "s3cret/pw\n").unwrap();
    let storage = |section: &str| base().replace("[storage]\nurl = \"sqlite:///tmp/x.db\"", section);
    let parse = |toml: String| Config::parse(&toml, &config_path);

    let from_file = parse(storage(
        "[storage]\nurl = \"postgres://hubauth@db.example.org:5432/hubauth\"\npassword = { file = \"db-password\" }\npool_size = 4\nstatement_timeout = \"2s\"\nssl_mode = \"verify-full\"",
    ))
    .unwrap();
    let s = &from_file.storage;
    assert!(s.is_postgres());
    let url = url::Url::parse(&s.url).unwrap();
    assert_eq!(url.password(), Some("s3cret%2Fpw"), "read from the file, trimmed, escaped into the URL");
    assert_eq!(
        (s.pool_size, s.statement_timeout, s.ssl_mode.as_deref()),
        (4, std::time::Duration::from_secs(2), Some("verify-full"))
    );
    assert_eq!(s.display_url(), "postgres://hubauth:***@db.example.org:5432/hubauth");
    assert!(!format!("{s:?}").contains("s3cret"), "Debug hides it too");

    std::env::set_var("HUBAUTH_TEST_STORAGE_URL", "postgres://u:envpw@127.0.0.1/h");
    let from_env = parse(storage("[storage]\nurl = { env = \"HUBAUTH_TEST_STORAGE_URL\" }")).unwrap();
    assert_eq!(url::Url::parse(&from_env.storage.url).unwrap().password(), Some("envpw"));
    assert_eq!(from_env.storage.display_url(), "postgres://u:***@127.0.0.1/h");

    let refused = |section: &str, key: &str, why: &str| {
        let e = parse(storage(section)).expect_err(section).to_string();
        assert!(e.contains(key) && e.contains(why), "{section}: {e}");
        assert!(!e.contains("envpw") && !e.contains("s3cret"), "{e}");
    };
    refused(
        "[storage]\nurl = { env = \"HUBAUTH_TEST_UNSET_URL\" }",
        "storage.url",
        "HUBAUTH_TEST_UNSET_URL is not set",
    );
    refused("[storage]\nurl = \"postgres://u:envpw@h/db\"\nssl_mode = \"always\"", "storage.ssl_mode", "verify-full");
    refused("[storage]\nurl = \"postgres://u:envpw@h/db\"\npool_size = 0", "storage.pool_size", "between 1 and 1000");
    refused(
        "[storage]\nurl = \"postgres://h/db\"\nssl_root_cert = \"missing.pem\"",
        "storage.ssl_root_cert",
        "not a readable file",
    );
    refused("[storage]\nurl = \"sqlite:///tmp/x.db\"\npassword = \"x\"", "storage", "postgres:// only");
}

/// `[metrics]`: defaults, the keys, and a second listener that cannot be the main one.
#[test]
fn metrics_settings_have_defaults_and_the_second_listener_must_differ() {
    let parse = |extra: &str| Config::parse(&format!("{}\n{extra}", base()), Path::new("/tmp/hubauth.toml"));
    let defaults = parse("").unwrap().metrics;
    assert_eq!(
        (defaults.listen, defaults.group_info, defaults.namespace.as_str(), defaults.usage_interval),
        (None, true, "", std::time::Duration::from_secs(15))
    );
    let set = parse(
        "[metrics]\nlisten = \"0.0.0.0:9090\"\ngroup_info = false\nnamespace = \"jhub\"\nusage_interval = \"1m\"",
    )
    .unwrap()
    .metrics;
    assert_eq!(set.listen, Some("0.0.0.0:9090".parse().unwrap()));
    assert_eq!((set.group_info, set.namespace.as_str(), set.usage_interval.as_secs()), (false, "jhub", 60));
    for clash in ["127.0.0.1:5556", "0.0.0.0:5556"] {
        let err = parse(&format!("[metrics]\nlisten = \"{clash}\"")).unwrap_err().to_string();
        assert!(err.contains("metrics.listen") && err.contains("must differ from listen"), "{err}");
    }
    let err = parse("[metrics]\nport = 9090").unwrap_err().to_string();
    assert!(err.contains("unknown field `port`"), "{err}");
}

#[test]
fn report_and_hub_token_settings_are_checked_and_default_to_the_exporters_names() {
    let c = Config::parse(&base(), Path::new("/tmp/hubauth.toml")).unwrap();
    assert_eq!(c.report.prometheus_url, None);
    assert_eq!(c.report.size_metric, "dirsize_total_size_bytes");
    assert_eq!(c.report.mtime_metric, "dirsize_latest_mtime");
    assert_eq!(c.report.directory_label, "directory");
    assert_eq!(c.report.directory, "{username}");
    assert!(c.jupyterhub.api_token.is_none());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hub-token"), "from-a-file\n").unwrap();
    let with_file = format!(
        "{}\n[jupyterhub]\napi_url = \"http://127.0.0.1:8081/hub/api\"\napi_token = {{ file = \"hub-token\" }}\n",
        base()
    );
    let c = Config::parse(&with_file, &dir.path().join("hubauth.toml")).unwrap();
    assert_eq!(c.jupyterhub.api_token.unwrap().expose(), "from-a-file", "relative to the config file");
    assert!(!format!("{:?}", Config::parse(&with_file, &dir.path().join("hubauth.toml")).unwrap().jupyterhub)
        .contains("from-a-file"));

    for (extra, key, why) in [
        ("[report]\nprometheus_url = \"prometheus:9090\"", "report.prometheus_url", "http://"),
        ("[report]\nprometheus_url = \"not a url\"", "report.prometheus_url", "not a URL"),
        ("[report]\nprometheus_url = \"ftp://prometheus\"", "report.prometheus_url", "http://"),
        ("[report]\ndirectory = \"home\"", "report.directory", "{username}"),
        ("[report]\nsize_metric = \"dirsize total\"", "report.size_metric", "not a Prometheus name"),
        ("[report]\nprometheus_timeout = \"soon\"", "report.prometheus_timeout", ""),
        ("[jupyterhub]\napi_token = { env = \"HUBAUTH_TEST_SURELY_UNSET\" }", "jupyterhub.api_token", "not set"),
    ] {
        let e = error_of(&format!("{}\n{extra}\n", base()));
        assert!(e.contains(key) && e.contains(why), "{extra}: {e}");
    }
}
