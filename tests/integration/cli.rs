//! The `hubauth` binary's commands, run as an operator would.

use std::process::Command;

use crate::harness::*;

pub fn hubauth(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubauth")).args(args).env_remove("HUBAUTH_CONFIG").output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &std::path::Path, toml: &str) -> String {
    let path = dir.join("hubauth.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_string()
}

/// It is Python: compile it (where python3 is installed).
fn assert_compiles_as_python(py: &str) {
    let check = Command::new("python3")
        .args(["-c", "import sys; compile(sys.stdin.read(), 'fragment', 'exec')"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(py.as_bytes())?;
            child.wait()
        });
    if let Ok(status) = check {
        assert!(status.success(), "fragment is not valid Python:\n{py}");
    }
}

#[test]
fn check_config_accepts_a_good_file_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), &config_toml("hubauth.db"));
    let (ok, stdout, _) = hubauth(&["check-config", "--config", &good]);
    assert!(ok);
    assert!(stdout.contains("OK") && stdout.contains("3 client(s)"));

    let bad = write_config(
        dir.path(),
        &config_toml("hubauth.db").replace("redirect_uris = [\"https://es.example.org/cb\"]", "redirect_uris = []"),
    );
    let (ok, _, stderr) = hubauth(&["check-config", "--config", &bad]);
    assert!(!ok);
    assert!(stderr.contains("clients[1].redirect_uris") && stderr.contains("at least one"), "{stderr}");

    let (ok, _, stderr) = hubauth(&["check-config", "--config", "/nonexistent/hubauth.toml"]);
    assert!(!ok);
    assert!(stderr.contains("cannot read /nonexistent/hubauth.toml"), "{stderr}");
}

#[test]
fn jupyterhub_config_prints_valid_python_for_generic_oauthenticator() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_toml("hubauth.db"));
    let (ok, py, stderr) = hubauth(&["jupyterhub-config", "--config", &config, "--client", "hub"]);
    assert!(ok, "{stderr}");
    for line in [
        "c.JupyterHub.authenticator_class = \"generic-oauth\"",
        "c.GenericOAuthenticator.client_id = \"hub\"",
        "c.GenericOAuthenticator.client_secret = os.environ[\"HUBAUTH_CLIENT_SECRET\"]",
        "c.GenericOAuthenticator.authorize_url = \"http://127.0.0.1:5556/authorize\"",
        "c.GenericOAuthenticator.token_url = \"http://127.0.0.1:5556/token\"",
        "c.GenericOAuthenticator.userdata_url = \"http://127.0.0.1:5556/userinfo\"",
        "c.GenericOAuthenticator.oauth_callback_url = \"http://127.0.0.1:8000/hub/oauth_callback\"",
        "c.GenericOAuthenticator.username_claim = \"preferred_username\"",
        "c.GenericOAuthenticator.manage_groups = True",
        "c.GenericOAuthenticator.auth_state_groups_key = \"oauth_user.groups\"",
        "c.Authenticator.enable_auth_state = True",
    ] {
        assert!(py.contains(line), "missing {line} in:\n{py}");
    }
    assert!(!py.contains(HUB_SECRET), "the secret itself is never printed");
    assert_compiles_as_python(&py);
    let (ok, _, stderr) = hubauth(&["jupyterhub-config", "--config", &config, "--client", "nope"]);
    assert!(!ok);
    assert!(stderr.contains("configured clients: hub, es, pub"), "{stderr}");
}

#[test]
fn hash_password_output_is_accepted_as_a_dev_user_hash() {
    let (ok, stdout, _) = hubauth(&["hash-password", "--password", "s3cret"]);
    assert!(ok);
    let hash = stdout.trim();
    assert!(hubauth::crypto::password::verify_password(hash, "s3cret"));
    let (ok, _, _) = hubauth(&["hash-password", "--password", ""]);
    assert!(!ok);
}

#[test]
fn keys_rotate_from_the_cli_replaces_the_active_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_toml("hubauth.db"));
    let (ok, before, stderr) = hubauth(&["keys", "list", "--config", &config]);
    assert!(ok, "{stderr}");
    assert_eq!(before.matches("active").count(), 0, "no keys before the first start: {before}");
    let (ok, out, stderr) = hubauth(&["keys", "rotate", "--config", &config, "--alg", "ES256"]);
    assert!(ok, "{stderr}");
    assert!(out.contains("ES256: new active key"));
    let (ok, _, _) = hubauth(&["keys", "rotate", "--config", &config, "--alg", "ES256"]);
    assert!(ok);
    let (_, listed, _) = hubauth(&["keys", "list", "--config", &config]);
    assert_eq!(listed.matches("active").count(), 1, "{listed}");
    assert_eq!(listed.matches("published until").count(), 1, "{listed}");
    let (ok, _, stderr) = hubauth(&["keys", "rotate", "--config", &config, "--alg", "HS256"]);
    assert!(!ok && stderr.contains("unknown algorithm"));
}

#[test]
fn demo_writes_a_config_that_check_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let args = hubauth::cli::demo::DemoArgs {
        listen: "127.0.0.1:5599".parse().unwrap(),
        data_dir: dir.path().join("data"),
        hub_url: "http://127.0.0.1:8123/".into(),
        issuer: None,
    };
    let path = hubauth::cli::demo::prepare(&args).unwrap();
    let secret = std::fs::read_to_string(dir.path().join("data/jupyterhub-client-secret")).unwrap();
    let config = hubauth::config::Config::load(&path).unwrap();
    assert_eq!(config.issuer, "http://127.0.0.1:5599");
    let client = config.client("jupyterhub").unwrap();
    assert_eq!(client.redirect_uris, vec!["http://127.0.0.1:8123/hub/oauth_callback".to_string()]);
    assert!(client.secret.as_ref().unwrap().matches(secret.trim()));
    // A second start keeps the secret (the hub's copy stays valid).
    hubauth::cli::demo::prepare(&args).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("data/jupyterhub-client-secret")).unwrap(), secret);
    let (ok, _, stderr) = hubauth(&["check-config", "--config", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    // --hub-url is where the hub listens too, not only where it is called back.
    let (ok, py, stderr) =
        hubauth(&["jupyterhub-config", "--config", path.to_str().unwrap(), "--client", "jupyterhub"]);
    assert!(ok, "{stderr}");
    assert!(py.contains("c.JupyterHub.bind_url = \"http://127.0.0.1:8123/\"\n"), "{py}");
    assert_compiles_as_python(&py);
}

/// `--hub-url` on a port JupyterHub uses for itself by default (8001: the proxy's API, 8081: the
/// hub's internal API) moves that default aside, so the hub starts without an edit by hand.
#[test]
fn a_hub_url_on_jupyterhubs_own_default_ports_moves_them_aside() {
    let fragment_for = |hub_url: &str| {
        let dir = tempfile::tempdir().unwrap();
        let args = hubauth::cli::demo::DemoArgs {
            listen: "127.0.0.1:5599".parse().unwrap(),
            data_dir: dir.path().join("data"),
            hub_url: hub_url.into(),
            issuer: None,
        };
        let path = hubauth::cli::demo::prepare(&args).unwrap();
        let (ok, py, stderr) =
            hubauth(&["jupyterhub-config", "--config", path.to_str().unwrap(), "--client", "jupyterhub"]);
        assert!(ok, "{stderr}");
        assert_compiles_as_python(&py);
        py
    };
    let py = fragment_for("http://127.0.0.1:8001");
    assert!(py.contains("c.ConfigurableHTTPProxy.api_url = \"http://127.0.0.1:8002\"\n"), "{py}");
    assert!(!py.contains("c.JupyterHub.hub_port"), "{py}");
    let py = fragment_for("http://127.0.0.1:8081");
    assert!(py.contains("c.JupyterHub.hub_port = 8082\n"), "{py}");
    assert!(!py.contains("c.ConfigurableHTTPProxy.api_url"), "{py}");
    let py = fragment_for("http://127.0.0.1:8000");
    assert!(!py.contains("c.ConfigurableHTTPProxy.api_url") && !py.contains("c.JupyterHub.hub_port"), "{py}");
}

#[test]
fn demo_on_a_busy_port_fails_at_once_naming_the_address_and_writes_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(["demo", "--listen", &addr, "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("--listen"), "{stderr}");
    assert!(!stdout.contains("listening"), "says it listens only once it does: {stdout}");
    assert!(!data.exists(), "no keys, secret or config were made before the bind failed");
}

/// The demo as generated: ada (admins) gets in; olivia (no group) is refused by hubauth's own
/// [access] rule, on its page with the reason code, not later by the hub.
#[tokio::test]
async fn the_demo_refuses_olivia_on_hubauths_page_with_its_reason_and_admits_ada() {
    let dir = tempfile::tempdir().unwrap();
    let args = hubauth::cli::demo::DemoArgs {
        listen: "127.0.0.1:5556".parse().unwrap(), // the harness's ISSUER
        data_dir: dir.path().to_path_buf(),
        hub_url: "http://127.0.0.1:8000".into(),
        issuer: None,
    };
    let path = hubauth::cli::demo::prepare(&args).unwrap();
    let toml = std::fs::read_to_string(&path).unwrap();
    let app = TestApp::with_toml(dir, &toml).await;
    let demo_hub = |pkce: &Pkce| AuthParams::hub(pkce).set("client_id", "jupyterhub");

    let pkce = Pkce::new();
    let res = app.browser().submit_login(&demo_hub(&pkce), "olivia", "olivia-demo").await;
    assert_eq!(res.status, axum::http::StatusCode::FORBIDDEN);
    let page = res.text();
    assert!(page.contains("You signed in as <strong>olivia</strong>"), "{page}");
    assert!(page.contains("<code>not_allowed</code>"), "{page}");
    assert!(res.headers.get("location").is_none(), "no code goes to the hub");

    for (user, password) in [("ada", "ada-demo"), ("sam", "sam-demo")] {
        let pkce = Pkce::new();
        let code = app.browser().login_for_code(&demo_hub(&pkce), user, password).await;
        assert!(!code.is_empty(), "{user} gets a code");
    }
}

#[test]
fn check_config_needs_the_crypt_key_for_token_keeping_connectors_and_names_bad_connector_keys() {
    let dir = tempfile::tempdir().unwrap();
    let oidc = r#"
[[connectors]]
type = "oidc"
id = "uni"
issuer = "https://login.uni.example"
client_id = "hubauth"
client_secret = { env = "UNI_SECRET" }
"#;
    let path = write_config(dir.path(), &format!("{}{oidc}", config_toml("hubauth.db")));
    let run = |key: Option<&str>, secret: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubauth"));
        cmd.args(["check-config", "--config", &path]).env_remove("HUBAUTH_CRYPT_KEY").env_remove("UNI_SECRET");
        if let Some(k) = key {
            cmd.env("HUBAUTH_CRYPT_KEY", k);
        }
        if let Some(s) = secret {
            cmd.env("UNI_SECRET", s);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = run(Some(TEST_CRYPT_KEY), None);
    assert!(!ok);
    assert!(stderr.contains("connectors[1].client_secret") && stderr.contains("UNI_SECRET"), "{stderr}");
    let (ok, stderr) = run(None, Some("s3cret"));
    assert!(!ok);
    assert!(stderr.contains("HUBAUTH_CRYPT_KEY") && stderr.contains("generate-crypt-key"), "{stderr}");
    let (ok, stderr) = run(Some("not-a-key"), Some("s3cret"));
    assert!(!ok);
    assert!(stderr.contains("HUBAUTH_CRYPT_KEY: key 1"), "{stderr}");
    let (ok, stderr) = run(Some(TEST_CRYPT_KEY), Some("s3cret"));
    assert!(ok, "{stderr}");

    let bad = write_config(
        dir.path(),
        &format!("{}{}", config_toml("hubauth.db"), oidc.replace("https://login.uni.example", "ftp://x")),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(["check-config", "--config", &bad])
        .env("UNI_SECRET", "s")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connectors[1].issuer") && stderr.contains("ftp"), "{stderr}");
}

#[test]
fn generate_crypt_key_prints_a_usable_keyring() {
    let (ok, stdout, _) = hubauth(&["keys", "generate-crypt-key"]);
    assert!(ok);
    assert!(hubauth::crypto::Sealer::from_keyring(stdout.trim()).is_ok());
    let (_, again, _) = hubauth(&["keys", "generate-crypt-key"]);
    assert_ne!(stdout, again);
}

#[test]
fn a_hub_with_a_preselected_connector_skips_the_chooser_and_unknown_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let with_hint = |connector: &str| {
        config_toml("hubauth.db").replace(
            "post_logout_redirect_uris = [\"http://127.0.0.1:8000/hub/\"]",
            &format!("post_logout_redirect_uris = [\"http://127.0.0.1:8000/hub/\"]\n[clients.hub]\nconnector = \"{connector}\""),
        )
    };
    let config = write_config(dir.path(), &with_hint("dev"));
    let (ok, py, stderr) = hubauth(&["jupyterhub-config", "--config", &config, "--client", "hub"]);
    assert!(ok, "{stderr}");
    assert!(py.contains("c.GenericOAuthenticator.extra_authorize_params = {\"connector\": \"dev\"}"), "{py}");
    let config = write_config(dir.path(), &with_hint("nope"));
    let (ok, _, stderr) = hubauth(&["check-config", "--config", &config]);
    assert!(!ok);
    assert!(stderr.contains("clients[0].hub.connector"), "{stderr}");
}

#[test]
fn invites_are_created_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_toml("hubauth.db"));
    let (ok, out, err) = hubauth(&[
        "invites",
        "create",
        "--config",
        &config,
        "--expires-in",
        "7d",
        "--max-uses",
        "40",
        "--group",
        "workshop",
        "--group",
        "gpu",
        "--note",
        "HPC carpentry",
    ]);
    assert!(ok, "{err}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let link = out.lines().nth(1).unwrap();
    assert!(link.starts_with("http://127.0.0.1:5556/invite/") && link.len() > 60, "{out}");

    let (ok, list, _) = hubauth(&["invites", "list", "--config", &config]);
    assert!(ok);
    let row = list.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(
        row.contains("open") && row.contains("0/40") && row.contains("workshop,gpu") && row.contains("HPC carpentry"),
        "{row}"
    );
    assert!(!list.contains(link.rsplit('/').next().unwrap()), "the secret is not listed");

    let (ok, _, _) = hubauth(&["invites", "revoke", "--config", &config, &id]);
    assert!(ok);
    let (ok, _, err) = hubauth(&["invites", "revoke", "--config", &config, &id]);
    assert!(!ok && err.contains("no open invite"), "{err}");
    let (_, list, _) = hubauth(&["invites", "list", "--config", &config]);
    assert!(list.lines().any(|l| l.starts_with(&id) && l.contains("revoked")));

    let (ok, _, err) =
        hubauth(&["invites", "create", "--config", &config, "--expires-in", "7d", "--connector", "nope"]);
    assert!(!ok && err.contains("no connector"), "{err}");
}

/// An invite id is typed back on the command line, so one that starts with `-` (ids made
/// before this fix could) must still be taken as the id, not as an option.
#[tokio::test]
async fn an_invite_id_starting_with_a_dash_can_be_revoked() {
    use hubauth::store::{Invite, InviteStore, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_toml("hubauth.db"));
    let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("hubauth.db").display())).await.unwrap();
    let invite = Invite {
        id: "-Ab3_x9".into(),
        token_hash: "h".into(),
        note: None,
        groups: vec![],
        connector_id: None,
        max_uses: None,
        uses: 0,
        created_at: START,
        expires_at: i64::MAX / 2,
        revoked_at: None,
    };
    store.create_invite(&invite).await.unwrap();
    drop(store);
    let (ok, _, err) = hubauth(&["invites", "revoke", "--config", &config, "-Ab3_x9"]);
    assert!(ok, "{err}");
    // New ids never start with a dash: they are letters and digits.
    for _ in 0..50 {
        let (ok, out, err) = hubauth(&["invites", "create", "--config", &config, "--expires-in", "1d"]);
        assert!(ok, "{err}");
        let id = out.split_whitespace().nth(1).unwrap();
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    }
}

/// Starts `hubauth serve` with `env` and returns its log lines up to "hubauth is listening".
fn serve_until_listening(env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let toml = config_toml(dir.path().join("hubauth.db").to_str().unwrap())
        .replace(&format!("issuer = \"{ISSUER}\""), &format!("issuer = \"http://127.0.0.1:{port}\""));
    let config = write_config(dir.path(), &toml);
    let mut server = Command::new(env!("CARGO_BIN_EXE_hubauth"));
    server.args(["serve", "--config", &config]).env_remove("HUBAUTH_LOG_FORMAT").envs(env.iter().copied());
    run_until_listening(server)
}

/// Logs go to journald, files and collectors: no terminal colour codes when stderr is not a terminal.
#[test]
fn serve_logs_plain_text_when_stderr_is_not_a_terminal() {
    let log = serve_until_listening(&[]).join("\n");
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a non-terminal log: {log:?}");
}

#[test]
fn serve_logs_one_json_object_per_line_when_asked() {
    let lines = serve_until_listening(&[("HUBAUTH_LOG_FORMAT", "json")]);
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(entry["timestamp"].is_string() && entry["level"].is_string(), "{line}");
        assert!(entry["fields"]["message"].is_string(), "{line}");
    }
    let listening: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(listening["level"], "INFO");
    assert!(listening["fields"]["issuer"].as_str().unwrap().starts_with("http://127.0.0.1:"));
}

#[test]
fn a_bad_log_setting_is_named_instead_of_ignored() {
    for (var, value, says) in [
        ("HUBAUTH_LOG_FORMAT", "xml", "HUBAUTH_LOG_FORMAT must be `text` or `json`"),
        ("HUBAUTH_LOG", "hubauth=loud", "HUBAUTH_LOG=\"hubauth=loud\" is not a valid filter"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hubauth"))
            .args(["hash-password", "--password", "x"])
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{var}={value}: {stderr}");
    }
}

#[test]
fn jupyterhub_config_grants_the_exchange_scope_when_notebooks_exchange_hub_tokens() {
    let fragment_for = |toml: &str| {
        let dir = tempfile::tempdir().unwrap();
        let (ok, py, stderr) =
            hubauth(&["jupyterhub-config", "--config", &write_config(dir.path(), toml), "--client", "hub"]);
        assert!(ok, "{stderr}");
        py
    };
    let py = fragment_for(&config_toml("hubauth.db"));
    assert!(!py.contains("custom_scopes"), "no exchange client, no scope lines:\n{py}");

    let notebooks =
        "[[clients]]\nid = \"notebooks\"\npublic = true\ngrant_types = [\"token_exchange\"]\nredirect_uris = []\n\
                     [clients.token_exchange]\naudiences = [\"dev\"]\nsubject_token_types = [\"jupyterhub\"]\n";
    let py = fragment_for(&format!("{}\n{notebooks}", config_toml("hubauth.db")));
    for line in [
        "c.JupyterHub.custom_scopes.update({\"custom:hubauth:exchange\": {\"description\": ",
        "c.JupyterHub.extra_user_scopes.update({\"custom:hubauth:exchange\"})",
        "c.Spawner.server_token_scopes = [\"users:activity!user\", \"access:servers!server\", \"custom:hubauth:exchange\"]",
    ] {
        assert!(py.contains(line), "missing {line} in:\n{py}");
    }
    assert_compiles_as_python(&py);
}

/// The hub's fragment needs none of the broker's secrets: with every one of them unset it
/// prints, and the hub client's secret stays a reference to the hub's own environment.
#[test]
fn jupyterhub_config_prints_without_the_brokers_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let toml = r#"
issuer = "http://127.0.0.1:5556"
[storage]
url = { env = "FH_UNSET_DB_URL" }
[admin]
api_tokens = [{ env = "FH_UNSET_ADMIN_TOKEN" }]
[metrics]
token = { file = "no-such-metrics-token" }
[[clients]]
id = "hub"
secret = { env = "FH_UNSET_HUB_SECRET" }
redirect_uris = ["http://127.0.0.1:8000/hub/oauth_callback"]
[[connectors]]
type = "github"
id = "github"
client_id = "abc"
client_secret = { env = "GITHUB_CLIENT_SECRET" }
"#;
    let path = write_config(dir.path(), toml);
    let run = |command: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubauth"));
        cmd.args([command, "--config", &path]).env_remove("HUBAUTH_CONFIG");
        if command == "jupyterhub-config" {
            cmd.args(["--client", "hub"]);
        }
        for var in ["FH_UNSET_DB_URL", "FH_UNSET_ADMIN_TOKEN", "FH_UNSET_HUB_SECRET", "GITHUB_CLIENT_SECRET"] {
            cmd.env_remove(var);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, py, stderr) = run("jupyterhub-config");
    assert!(ok, "{stderr}");
    assert!(py.contains("c.GenericOAuthenticator.client_id = \"hub\"\n"), "{py}");
    assert!(py.contains("c.GenericOAuthenticator.client_secret = os.environ[\"HUBAUTH_CLIENT_SECRET\"]"), "{py}");
    assert!(py.contains("http://127.0.0.1:5556/token"), "{py}");
    assert_compiles_as_python(&py);
    // The same file is not fit to serve, and check-config says so, secret by secret.
    let (ok, _, stderr) = run("check-config");
    assert!(!ok);
    for key in [
        "`storage.url`",
        "`admin.api_tokens[0]`",
        "`metrics.token`",
        "`clients[0].secret`",
        "`connectors[0].client_secret`",
    ] {
        assert!(stderr.lines().any(|l| l.starts_with("error: ") && l.contains(key)), "{key} missing:\n{stderr}");
    }
}

/// One run names every problem, one a line with its key, not only the first.
#[test]
fn check_config_lists_every_problem_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let toml = r#"
issuer = "http://hub.example.org/auth"
listen = "127.0.0.1:5556"
[tokens]
authorization_code_lifetime = "5m"
[server]
max_connections = 0
[[clients]]
id = "hub"
secret = "short"
redirect_uris = ["https://hub.example.org/*"]
grant_types = ["password"]
[[connectors]]
type = "oidc"
id = "uni"
issuer = "ftp://login.uni.example"
client_id = "hubauth"
client_secret = { env = "FH_UNSET_UNI_SECRET" }
[[connectors]]
type = "dev"
id = "uni"
"#;
    let path = write_config(dir.path(), toml);
    let out = Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(["check-config", "--config", &path])
        .env_remove("FH_UNSET_UNI_SECRET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let keys = [
        "`issuer`",
        "`tokens.authorization_code_lifetime`",
        "`server.max_connections`",
        "`clients[0].secret`",
        "`clients[0].grant_types[0]`",
        "`clients[0].redirect_uris[0]`",
        "`connectors[0].client_secret`",
        "`connectors[0].issuer`",
        "`connectors[1].id`",
    ];
    for key in keys {
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error: ") && l.contains(key)).count(),
            1,
            "{key}:\n{stderr}"
        );
    }
    assert!(stderr.contains(&format!("{} problems", keys.len())), "{stderr}");
}

/// Secrets::Skip configs hold stand-ins for their secrets: they describe, they never serve.
#[tokio::test]
async fn a_config_loaded_without_its_secrets_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config_toml("hubauth.db"));
    let config = hubauth::config::Config::load_with(path.as_ref(), hubauth::config::Secrets::Skip).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = hubauth::app::serve_on(listener, config, Some(test_sealer())).await.unwrap_err();
    assert!(err.to_string().contains("without its secrets"), "{err}");
    assert!(!dir.path().join("hubauth.db").exists(), "refused before opening the store");
}
