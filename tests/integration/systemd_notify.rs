//! `Type=notify` readiness (contrib/systemd/hubauth.service): the real binary, a socket standing
//! in for systemd's `NOTIFY_SOCKET`. READY=1 must mean "answers now", STOPPING=1 must come on
//! SIGTERM, and a socket nobody listens on must not stop the server.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let toml = config_toml(dir.join("hubauth.db").to_str().unwrap()).replace(
        &format!("issuer = \"{ISSUER}\""),
        &format!("issuer = \"http://127.0.0.1:{port}\"\nlisten = \"127.0.0.1:{port}\""),
    );
    let path = dir.join("hubauth.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// One GET on a fresh connection, no retry: the status code, or the connection error.
fn get_once(port: u16, path: &str) -> Result<u16, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    answer.get(9..12).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not an HTTP answer: {answer:?}"))
}

fn kill_term(child: &std::process::Child) {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
}

#[test]
fn ready_is_sent_once_discovery_answers_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(dir.path(), port);
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();

    let mut server = Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("HUBAUTH_CRYPT_KEY", TEST_CRYPT_KEY)
        .env_remove("HUBAUTH_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("READY=1 within 60 s");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    // The moment systemd hears READY=1, a client that connects is answered: no retry here.
    let discovery = get_once(port, "/.well-known/openid-configuration");
    let jwks = get_once(port, "/jwks");
    let readyz = get_once(port, "/readyz");
    eprintln!("READY after {:?}", started.elapsed());
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains(&format!("STATUS=serving http://127.0.0.1:{port} on 127.0.0.1:{port}")), "{ready:?}");
    assert_eq!(discovery, Ok(200), "discovery right after READY=1");
    assert_eq!(jwks, Ok(200), "the signing keys are loaded by READY=1");
    assert_eq!(readyz, Ok(200), "/readyz agrees");
    assert!(dir.path().join("hubauth.db").exists(), "the store is open");

    kill_term(&server);
    let n = socket.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
    let stopping = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let status = server.wait().unwrap();
    assert!(status.success(), "a SIGTERM stop is a clean exit: {status:?}");
}

#[test]
fn nothing_listening_on_the_notify_socket_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(dir.path(), port);
    let mut server = Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", dir.path().join("nobody-listens-here"))
        .env("HUBAUTH_CRYPT_KEY", TEST_CRYPT_KEY)
        .env_remove("HUBAUTH_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_once(port, "/.well-known/openid-configuration") != Ok(200) {
        assert!(Instant::now() < deadline, "the server did not answer within 60 s");
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_term(&server);
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("could not notify systemd"), "the failed notification is logged: {log}");
}
