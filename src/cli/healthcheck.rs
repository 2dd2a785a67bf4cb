//! `hubauth healthcheck`: probe a running broker's `/healthz`, for container `HEALTHCHECK`s and
//! Kubernetes `exec` probes (the runtime image has no shell and no curl). Exit 0 when it answers
//! 200, 1 otherwise, with a one-line reason on stderr.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The URL to probe, e.g. http://127.0.0.1:5556/healthz (wins over --config).
    #[arg(long, env = "HUBAUTH_HEALTHCHECK_URL")]
    url: Option<String>,
    /// The broker's configuration file: probes its `listen` address (loopback for 0.0.0.0 / ::).
    #[arg(long, short, env = "HUBAUTH_CONFIG")]
    config: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
}

/// Where to probe a broker listening on `listen` with issuer path `prefix` ("" or "/path").
pub fn healthz_url(listen: SocketAddr, prefix: &str) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}{prefix}/healthz", SocketAddr::new(ip, listen.port()))
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 300.0) {
        anyhow::bail!("--timeout must be a number of seconds between 0 and 300");
    }
    let url = match (args.url, args.config) {
        (Some(url), _) => url,
        (None, Some(path)) => {
            let config = super::load_config(&path)?;
            healthz_url(config.listen, &config.path_prefix())
        }
        (None, None) => anyhow::bail!("say what to probe: --url URL or --config FILE (or HUBAUTH_CONFIG)"),
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // The probe is about this host's broker: an HTTP(S)_PROXY in the environment must not reroute it.
        .no_proxy()
        .timeout(Duration::from_secs_f64(args.timeout))
        .build()?;
    let response = http.get(&url).send().await.map_err(|e| {
        if e.is_timeout() {
            anyhow::anyhow!("unhealthy: {url} did not answer within {}s", args.timeout)
        } else {
            anyhow::anyhow!("unhealthy: cannot reach {url}: {}", root_cause(&e))
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("unhealthy: {url} answered {status}");
    }
    println!("healthy: {url} answered {status}");
    Ok(())
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        assert_eq!(healthz_url("0.0.0.0:5556".parse().unwrap(), ""), "http://127.0.0.1:5556/healthz");
        assert_eq!(healthz_url("[::]:5556".parse().unwrap(), "/auth"), "http://[::1]:5556/auth/healthz");
        assert_eq!(healthz_url("10.0.0.7:80".parse().unwrap(), ""), "http://10.0.0.7:80/healthz");
    }
}
