//! Connections that only hold a slot are cut: a request head that never completes, a connection
//! that sends nothing. With the connection limit reached, a real request waits for a slot and is
//! answered once the cuts free one. A real listener on loopback, short configured timeouts.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

const LIMITS: &str = r#"
[server]
header_read_timeout = "300ms"
idle_timeout = "600ms"
max_connections = 6
"#;

/// Waits (at most `STOP`, so the test ends by itself) for the server to close the connection.
async fn closed_by_server(mut conn: TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(STOP, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

const STOP: Duration = Duration::from_secs(10);

async fn healthz(addr: std::net::SocketAddr) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STOP, conn.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_cut_and_a_request_gets_through_at_the_limit() {
    let app = TestApp::with_extra_toml(LIMITS).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(hubauth::server::serve(listener, app.router.clone(), app.state.config.server.clone(), async {
            let _ = stop_rx.await;
        }));

    // Below the limit, a request is answered beside an idle connection.
    let idle = TcpStream::connect(addr).await.unwrap();
    assert!(healthz(addr).await.starts_with("HTTP/1.1 200"), "answered below the limit");

    // Fill every slot: idle connections and ones that stop half-way through the headers.
    let mut hogs = vec![idle];
    for i in 0..5 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
        }
        hogs.push(conn);
    }
    // At the limit: this one waits in the backlog until the cuts free a slot.
    let waiting = tokio::spawn(healthz(addr));

    let mut cut = 0;
    for conn in hogs {
        cut += closed_by_server(conn).await as usize;
    }
    assert_eq!(cut, 6, "every idle or half-sent connection was closed");
    assert!(waiting.await.unwrap().starts_with("HTTP/1.1 200"), "the waiting request was answered");

    // A kept-alive connection that got its answer and then sits idle is closed too.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    assert!(closed_by_server(kept).await, "an idle keep-alive connection was closed");

    // Graceful shutdown still ends the server.
    stop_tx.send(()).unwrap();
    tokio::time::timeout(STOP, server).await.expect("the server stopped").unwrap();
}

/// A request stuck on a slow upstream (here the hub's API, asked during a token exchange) is
/// answered 503 at `request_timeout` instead of holding its connection.
#[tokio::test]
async fn a_request_stuck_on_a_slow_upstream_ends_at_the_request_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_api = format!("http://{}/hub/api", listener.local_addr().unwrap());
    let slow = axum::Router::new().route(
        "/hub/api/user",
        axum::routing::get(|| async {
            tokio::time::sleep(STOP).await;
            axum::Json(serde_json::json!({"kind": "user", "name": "alice"}))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, slow).await });
    let fake = crate::upstream_oidc::FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&format!(
        r#"
[server]
request_timeout = "300ms"
[jupyterhub]
api_url = "{hub_api}"
[[clients]]
id = "notebooks"
public = true
grant_types = ["token_exchange"]
redirect_uris = []
[clients.token_exchange]
audiences = ["uni"]
subject_token_types = ["jupyterhub"]
{}"#,
        fake.connector_toml("uni", "")
    ))
    .await;
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("client_id", "notebooks"),
        ("subject_token", "alice-server-token"),
        ("subject_token_type", "urn:hubauth:params:oauth:token-type:jupyterhub-api-token"),
        ("audience", "uni"),
    ];
    let res = tokio::time::timeout(STOP, app.post_form("/token", &form, None)).await.expect("answered");
    assert_eq!(res.status, axum::http::StatusCode::SERVICE_UNAVAILABLE, "{}", res.text());
}
