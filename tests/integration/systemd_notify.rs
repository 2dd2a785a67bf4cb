//! `Type=notify` readiness (contrib/systemd/hubauth.service): the real binary, a socket standing
//! in for systemd's `NOTIFY_SOCKET`. READY=1 must mean "answers now", STOPPING=1 must come on
//! SIGTERM, and a socket nobody listens on must not stop the server. A clean stop leaves the
//! SQLite write-ahead log folded into the database.

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

/// `hubauth serve` on `config`, with `NOTIFY_SOCKET` set to `notify` (or unset); stderr piped.
fn spawn_serve(config: &std::path::Path, notify: Option<&std::path::Path>) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubauth"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env("HUBAUTH_CRYPT_KEY", TEST_CRYPT_KEY)
        .env_remove("HUBAUTH_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(socket) = notify {
        cmd.env("NOTIFY_SOCKET", socket);
    }
    cmd.spawn().unwrap()
}

/// Waits until `path` answers 200, failing if the server exits or 60 s pass.
fn wait_until_answering(server: &mut std::process::Child, port: u16, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_once(port, path) != Ok(200) {
        assert!(Instant::now() < deadline, "the server did not answer within 60 s");
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(20));
    }
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

    let server = spawn_serve(&config, Some(&socket_path));
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
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success(), "a SIGTERM stop is a clean exit: {:?}", out.status);
}

#[test]
fn nothing_listening_on_the_notify_socket_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(dir.path(), port);
    let mut server = spawn_serve(&config, Some(&dir.path().join("nobody-listens-here")));
    wait_until_answering(&mut server, port, "/.well-known/openid-configuration");
    kill_term(&server);
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("could not notify systemd"), "the failed notification is logged: {log}");
}

/// A stop by SIGTERM folds SQLite's write-ahead log into the database file: the next start does
/// not read through it first (≈ 10 ms of every restart), and a copy of the stopped broker's
/// database file alone is complete.
#[test]
fn a_clean_stop_folds_the_write_ahead_log_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(dir.path(), port);
    let wal = dir.path().join("hubauth.db-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let mut server = spawn_serve(&config, None);
    wait_until_answering(&mut server, port, "/jwks");
    assert!(wal_len() > 0, "the first start wrote (schema, signing keys) into the WAL");
    kill_term(&server);
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert_eq!(wal_len(), 0, "the WAL is empty after a clean stop");
    let db = rusqlite::Connection::open(dir.path().join("hubauth.db")).unwrap();
    let keys: i64 = db.query_row("SELECT count(*) FROM signing_keys", [], |r| r.get(0)).unwrap();
    assert!(keys > 0, "what the WAL held is in the database file");
}
