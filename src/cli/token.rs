//! `hubauth token`: inside a running notebook server, print a fresh upstream access token.
//! The notebook's own JupyterHub API token is exchanged at hubauth (RFC 8693); no upstream
//! secret ever sits in the notebook's environment.

use clap::Args;

use crate::provider::token_exchange_types::{ACCESS_TOKEN_TYPE, JUPYTERHUB_TOKEN_TYPE};

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The connector whose token you want (e.g. keycloak, github, canvas).
    #[arg(long)]
    connector: String,
    /// hubauth's issuer URL.
    #[arg(long, env = "HUBAUTH_ISSUER")]
    issuer: String,
    /// The client registered for notebooks (public, token exchange with jupyterhub tokens).
    #[arg(long, env = "HUBAUTH_CLIENT_ID", default_value = "notebooks")]
    client_id: String,
    /// Only for confidential clients (spawner-side use); notebooks use a public client.
    #[arg(long, env = "HUBAUTH_TOKEN_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// The token to exchange; inside a single-user server JupyterHub sets it.
    #[arg(long, env = "JUPYTERHUB_API_TOKEN", hide_env_values = true)]
    hub_token: String,
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let discovery: serde_json::Value = http
        .get(format!("{}/.well-known/openid-configuration", args.issuer.trim_end_matches('/')))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach hubauth at {}: {e}", args.issuer))?
        .json()
        .await
        .map_err(|_| anyhow::anyhow!("{} does not serve an OpenID discovery document", args.issuer))?;
    let token_endpoint = discovery["token_endpoint"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the discovery document has no token_endpoint"))?;
    let mut form = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", args.hub_token.as_str()),
        ("subject_token_type", JUPYTERHUB_TOKEN_TYPE),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("audience", args.connector.as_str()),
        ("client_id", args.client_id.as_str()),
    ];
    if let Some(secret) = &args.client_secret {
        form.push(("client_secret", secret));
    }
    let answer =
        http.post(token_endpoint).form(&form).send().await.map_err(|e| anyhow::anyhow!("token request failed: {e}"))?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "hubauth refused ({}): {}",
            body["error"].as_str().unwrap_or("error"),
            body["error_description"].as_str().unwrap_or("no description")
        );
    }
    let token = body["access_token"].as_str().ok_or_else(|| anyhow::anyhow!("hubauth's answer has no access_token"))?;
    println!("{token}");
    Ok(())
}
