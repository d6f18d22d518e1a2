//! End-to-end tests of the limits on what the daemon serves (anyone can
//! connect to it, so one client must get a clear answer at a limit, not
//! exhaust the daemon or hang): the read-only relay (`--served-*`), the HTTP
//! endpoint (`--http-max-connections`, `--http-timeout`) and configuration
//! values that used to overflow. Each runs the real binary with small limits; `#[ignore]`d
//! like the other e2e tests (`cargo test -p grasp-sync-tests --test
//! served_limits_e2e -- --ignored --test-threads 1`).

use std::process::Command;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use grasp_sync_tests::client::{http_get, query};
use grasp_sync_tests::daemon::{binary, Daemon, DaemonOpts};
use grasp_sync_tests::dataset::{self, announcement};
use grasp_sync_tests::relays::TestRelay;
use grasp_sync_tests::{free_port, wait_for};
use nostr::{Filter, Keys, Tag, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Events planted on the bootstrap relay (all accepted: one repository listing us, and its issues).
const EVENTS: usize = 40;

struct World {
    _relay: TestRelay,
    _dir: tempfile::TempDir,
    d: Daemon,
}

/// A daemon with `extra` flags syncing from one relay; with `data`, it holds
/// [`EVENTS`] events before this returns.
async fn world(data: bool, extra: &[&str]) -> World {
    let relay_port = free_port();
    let service = format!("ws://127.0.0.1:{relay_port}");
    let relay = TestRelay::start(0).await;
    if data {
        let keys = Keys::generate();
        let base = Timestamp::now().as_secs() - 10_000;
        let mut events = vec![announcement(&keys, "limits", &[&service, &relay.url()], &[], base)];
        let addr = dataset::address(&keys, "limits");
        for i in 1..EVENTS as u64 {
            let a = Tag::parse(["a", addr.as_str()]).expect("tag");
            events.push(dataset::ev(&keys, 1621, &format!("issue {i}"), vec![a], base + i));
        }
        relay.insert(&events).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::spawn(DaemonOpts {
        service_url: service,
        bootstrap: vec![relay.url()],
        data_dir: dir.path().join("data"),
        allow_private: true,
        http_port: free_port(),
        relay_port,
        extra: extra.iter().map(|s| s.to_string()).collect(),
    });
    let url = d.relay_url();
    let want = if data { EVENTS } else { 0 };
    wait_for("the served relay holds the synced events", Duration::from_secs(60), || async {
        (count(&url).await == Some(want)).then_some(())
    })
    .await;
    World { _relay: relay, _dir: dir, d }
}

/// `COUNT` of everything the served relay holds.
async fn count(url: &str) -> Option<usize> {
    let mut ws = connect(url).await.ok()?;
    send(&mut ws, r#"["COUNT","c",{}]"#).await;
    let answer = next_text(&mut ws, Duration::from_secs(5)).await?;
    let v: serde_json::Value = serde_json::from_str(&answer).ok()?;
    v[2]["count"].as_u64().map(|n| n as usize)
}

async fn connect(url: &str) -> Result<Ws, String> {
    let fut = tokio_tungstenite::connect_async(url);
    match tokio::time::timeout(Duration::from_secs(5), fut).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("handshake timed out".into()),
    }
}

/// Connects from another loopback address (a second client IP).
async fn connect_from(local: &str, port: u16) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(format!("{local}:0").parse().unwrap()).map_err(|e| e.to_string())?;
    let stream = socket.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.map_err(|e| e.to_string())?;
    let fut = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}"), MaybeTlsStream::Plain(stream));
    match tokio::time::timeout(Duration::from_secs(5), fut).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("handshake timed out".into()),
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// The next text message; `None` on close, error or `timeout`.
async fn next_text(ws: &mut Ws, timeout: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Reads until the connection ends: its close frame, or `Err` with the
/// text messages seen if it is still open after `timeout`.
async fn wait_closed(ws: &mut Ws, timeout: Duration) -> Result<Option<(CloseCode, String)>, Vec<String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return Ok(frame.map(|f| (f.code, f.reason.to_string()))),
            Ok(Some(Ok(Message::Text(t)))) => seen.push(t.to_string()),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return Ok(None),
            Err(_) => return Err(seen),
        }
    }
}

/// A NEG-OPEN initial message for an empty set.
fn empty_negentropy_message() -> String {
    use negentropy::{Negentropy, NegentropyStorageVector};
    let mut storage = NegentropyStorageVector::new();
    storage.seal().unwrap();
    let mut neg = Negentropy::owned(storage, 0).unwrap();
    neg.initiate().unwrap().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs the daemon binary; run by scripts/test-all"]
async fn limit_subscriptions_filters_and_negentropy_sessions_are_capped() {
    let w = world(
        true,
        &[
            "--served-max-limit",
            "10",
            "--served-max-subscriptions",
            "3",
            "--served-max-filters",
            "4",
            "--served-max-negentropy-sessions",
            "2",
        ],
    )
    .await;
    let url = w.d.relay_url();

    // `limit` is clamped, and a filter without one gets the maximum.
    assert_eq!(query(&url, Filter::new().limit(100_000)).await.unwrap().len(), 10, "limit 100000 clamped to 10 of {EVENTS}");
    assert_eq!(query(&url, Filter::new()).await.unwrap().len(), 10);

    // Three subscriptions stay open; the fourth is CLOSED.
    let mut ws = connect(&url).await.unwrap();
    for i in 1..=4 {
        send(&mut ws, &format!(r#"["REQ","s{i}",{{"kinds":[1621],"limit":1}}]"#)).await;
    }
    let (mut eose, mut closed) = (Vec::new(), Vec::new());
    while eose.len() + closed.len() < 4 {
        let m = next_text(&mut ws, Duration::from_secs(10)).await.expect("an answer to every REQ");
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        match v[0].as_str() {
            Some("EOSE") => eose.push(v[1].as_str().unwrap().to_string()),
            Some("CLOSED") => closed.push((v[1].as_str().unwrap().to_string(), v[2].as_str().unwrap().to_string())),
            _ => {}
        }
    }
    assert_eq!(eose, ["s1", "s2", "s3"]);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(closed[0].0 == "s4" && closed[0].1.contains("too many"), "{closed:?}");
    // CLOSE frees a place.
    send(&mut ws, r#"["CLOSE","s1"]"#).await;
    send(&mut ws, r#"["REQ","s5",{"limit":1}]"#).await;
    let m = loop {
        let m = next_text(&mut ws, Duration::from_secs(5)).await.expect("answer to s5");
        if !m.starts_with(r#"["EVENT""#) {
            break m;
        }
    };
    assert_eq!(m, r#"["EOSE","s5"]"#);

    // More filters than allowed in one REQ.
    send(&mut ws, r#"["CLOSE","s5"]"#).await;
    send(&mut ws, r#"["REQ","f",{"limit":1},{"limit":1},{"limit":1},{"limit":1},{"limit":1}]"#).await;
    let m = next_text(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert!(m.starts_with(r#"["CLOSED","f","blocked:"#), "{m}");

    // Two negentropy sessions; the third is refused until one is closed.
    let init = empty_negentropy_message();
    let mut neg = connect(&url).await.unwrap();
    for id in ["n1", "n2", "n3"] {
        send(&mut neg, &format!(r#"["NEG-OPEN","{id}",{{}},"{init}"]"#)).await;
        let m = next_text(&mut neg, Duration::from_secs(5)).await.expect("NEG answer");
        if id == "n3" {
            assert!(m.starts_with(r#"["NEG-ERR","n3","blocked: too many negentropy sessions"#), "{m}");
        } else {
            assert!(m.starts_with(&format!(r#"["NEG-MSG","{id}""#)), "{m}");
        }
    }
    send(&mut neg, r#"["NEG-CLOSE","n1"]"#).await;
    send(&mut neg, &format!(r#"["NEG-OPEN","n3",{{}},"{init}"]"#)).await;
    let m = next_text(&mut neg, Duration::from_secs(5)).await.unwrap();
    assert!(m.starts_with(r#"["NEG-MSG","n3""#), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs the daemon binary; run by scripts/test-all"]
async fn connections_beyond_the_caps_are_refused() {
    let w = world(false, &["--served-max-connections", "3", "--served-max-connections-per-ip", "2"]).await;
    let url = w.d.relay_url();
    let port = w.d.opts.relay_port;
    // `world` probed with COUNT connections: wait until they are gone.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut a1 = connect(&url).await.expect("first");
    let _a2 = connect(&url).await.expect("second");
    let e = connect(&url).await.expect_err("a third from the same address is refused");
    assert!(e.contains("503"), "{e}");
    let _b1 = connect_from("127.0.0.2", port).await.expect("another address");
    let e = connect_from("127.0.0.2", port).await.expect_err("a fourth in total is refused");
    assert!(e.contains("503"), "{e}");
    // The admitted ones work.
    send(&mut a1, r#"["REQ","q",{"limit":1}]"#).await;
    assert_eq!(next_text(&mut a1, Duration::from_secs(5)).await.as_deref(), Some(r#"["EOSE","q"]"#));
    // A closed connection frees its place.
    a1.close(None).await.unwrap();
    drop(a1);
    wait_for("a place after a close", Duration::from_secs(5), || async { connect(&url).await.ok() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs the daemon binary; run by scripts/test-all"]
async fn an_oversized_message_closes_the_connection() {
    let w = world(false, &["--served-max-message-bytes", "4096"]).await;
    let mut ws = connect(&w.d.relay_url()).await.unwrap();
    let req = |n: usize| format!(r##"["REQ","big",{{"kinds":[1],"#t":["{}"]}}]"##, "x".repeat(n));
    send(&mut ws, &req(3000)).await;
    assert_eq!(next_text(&mut ws, Duration::from_secs(5)).await.as_deref(), Some(r#"["EOSE","big"]"#), "under the limit: served");
    send(&mut ws, &req(10_000)).await;
    let closed = wait_closed(&mut ws, Duration::from_secs(5)).await.expect("closed, not served");
    let (code, reason) = closed.expect("a close frame");
    assert_eq!(code, CloseCode::Size, "{reason}");
    assert!(reason.contains("4096"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs the daemon binary; run by scripts/test-all"]
async fn idle_connections_are_closed_but_subscribed_ones_kept() {
    let w = world(false, &["--served-idle-timeout", "1s"]).await;
    let url = w.d.relay_url();
    let started = Instant::now();
    let mut idle = connect(&url).await.unwrap();
    let mut live = connect(&url).await.unwrap();
    send(&mut live, r#"["REQ","live",{"kinds":[1621],"limit":0}]"#).await;
    assert_eq!(next_text(&mut live, Duration::from_secs(5)).await.as_deref(), Some(r#"["EOSE","live"]"#));

    // Read both at once: a client that reads answers the pings.
    let idle_closed = async { (wait_closed(&mut idle, Duration::from_secs(5)).await, started.elapsed()) };
    let ((idle_closed, elapsed), live_closed) = tokio::join!(idle_closed, wait_closed(&mut live, Duration::from_secs(3)));
    let closed = idle_closed.expect("the idle connection is closed");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4), "closed after {elapsed:?}");
    assert_eq!(closed, Some((CloseCode::Normal, "idle timeout".to_string())));
    // The one with an open subscription answers pings and stays.
    assert!(live_closed.is_err(), "a live subscription keeps its connection");
    send(&mut live, r#"["REQ","again",{"limit":0}]"#).await;
    assert_eq!(next_text(&mut live, Duration::from_secs(5)).await.as_deref(), Some(r#"["EOSE","again"]"#));
    // Once it closes its subscriptions it is idle too.
    send(&mut live, r#"["CLOSE","live"]"#).await;
    send(&mut live, r#"["CLOSE","again"]"#).await;
    assert!(wait_closed(&mut live, Duration::from_secs(4)).await.is_ok(), "idle after its last CLOSE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs the daemon binary; run by scripts/test-all"]
async fn http_connections_are_capped_and_slow_clients_dropped() {
    let w = world(false, &["--http-max-connections", "4", "--http-timeout", "1s"]).await;
    let port = w.d.opts.http_port;
    assert_eq!(http_get(port, "/health").await.unwrap().0, 200);

    // Four silent clients fill the endpoint: the next is answered 503 at once.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    assert_eq!(http_get(port, "/health").await.unwrap().0, 503, "over the cap");
    assert!(asked.elapsed() < Duration::from_millis(500), "refused at once, took {:?}", asked.elapsed());
    // They are dropped after the timeout: /health answers again while they are still "open".
    wait_for("/health after the silent clients timed out", Duration::from_secs(3), || async {
        http_get(port, "/health").await.ok().filter(|(c, _)| *c == 200)
    })
    .await;
    for s in &mut silent {
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut rest)).await.expect("closed by the server");
        assert_eq!(n.unwrap_or(0), 0, "no answer to a request never sent");
    }
    drop(silent);

    // Slow-loris: a request head trickling in is cut off at the timeout.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(10), s.read(&mut buf)).await {
            assert_eq!(n, 0, "no answer to an unfinished request: {:?}", String::from_utf8_lossy(&buf[..n]));
            cut = true;
            break;
        }
    }
    assert!(cut, "the slow client was still connected after 5 s");
    assert!(started.elapsed() < Duration::from_secs(3), "dropped after {:?}", started.elapsed());
    assert_eq!(http_get(port, "/health").await.unwrap().0, 200);
}

/// `--backoff-base 99999999999999999999d` panicked (exit 101): every
/// duration that large is now a one-line error naming the option, exit 2,
/// from a flag, an env var or the TOML file alike.
#[test]
#[ignore = "e2e: needs the daemon binary; run by scripts/test-all"]
fn huge_durations_exit_2_with_a_one_line_error() {
    let bin = binary();
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("c.toml");
    std::fs::write(&toml, "backoff_max = \"99999999999999999999d\"\n").unwrap();
    let base = ["--service-url", "wss://g.example.com", "--bootstrap-relay", "wss://r.example.com"];
    // (arguments, environment variable, option the error must name)
    type Case<'a> = (Vec<&'a str>, Option<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--backoff-base", "99999999999999999999d"], None, "--backoff-base"),
        (vec!["--served-idle-timeout", "400d"], None, "--served-idle-timeout"),
        (vec!["--http-timeout", "99999999999999999999999s"], None, "--http-timeout"),
        (vec![], Some(("GRASP_SYNC_DEAD_AFTER", "99999999999999999999d")), "--dead-after"),
        (vec!["--config", toml.to_str().unwrap()], None, "--backoff-max"),
    ];
    for (args, env, option) in cases {
        let mut cmd = Command::new(&bin);
        cmd.args(base).args(&args).env_remove("RUST_LOG");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(err.contains(option), "{args:?} {env:?}: `{err}` names {option}");
    }
}
