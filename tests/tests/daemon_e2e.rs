//! End-to-end tests of the `grasp-sync` binary against real relays on
//! 127.0.0.1: the real binary, WebSockets and store, which the unit and
//! simulation tests cannot show. They need `promtool` and build the daemon,
//! so they are `#[ignore]`d in the plain unit-test run and executed by
//! `scripts/test-all` with `cargo test -p grasp-sync-tests -- --ignored`.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use grasp_sync_tests::client::{first_answer, publish, query, query_all, sample};
use grasp_sync_tests::daemon::{binary, Daemon, DaemonOpts};
use grasp_sync_tests::dataset::{self, announcement, comment, Dataset};
use grasp_sync_tests::limiting_proxy::{Limits, Proxy};
use grasp_sync_tests::relays::{ReqOnlyProxy, TestRelay};
use grasp_sync_tests::{free_port, wait_for};
use nostr::{EventId, Filter, Keys, Timestamp};

struct World {
    a: TestRelay,
    b_inner: TestRelay,
    b: ReqOnlyProxy,
    data: Dataset,
    dir: tempfile::TempDir,
    relay_port: u16,
    http_port: u16,
    service: String,
}

fn now() -> u64 {
    Timestamp::now().as_secs()
}

async fn world() -> World {
    let relay_port = free_port();
    let http_port = free_port();
    let service = format!("ws://127.0.0.1:{relay_port}");
    let a = TestRelay::start(0).await;
    let b_inner = TestRelay::start(0).await;
    let b = ReqOnlyProxy::start(0, &b_inner.url()).await;
    let data = dataset::build(&service, &a.url(), &b.url(), now() - 20_000);
    a.insert(&data.on_a).await;
    b_inner.insert(&data.on_b).await;
    World { a, b_inner, b, data, dir: tempfile::tempdir().expect("tempdir"), relay_port, http_port, service }
}

impl World {
    fn opts(&self, allow_private: bool) -> DaemonOpts {
        DaemonOpts {
            service_url: self.service.clone(),
            bootstrap: vec![self.a.url()],
            data_dir: self.dir.path().join("data"),
            allow_private,
            http_port: self.http_port,
            relay_port: self.relay_port,
            extra: vec!["--page-limit".into(), "80".into()],
        }
    }
}

/// Everything the daemon serves.
async fn served_ids(d: &Daemon) -> BTreeSet<EventId> {
    query_all(&d.relay_url(), Filter::new()).await.expect("query served relay").into_iter().map(|e| e.id).collect()
}

async fn wait_connected(d: &Daemon, relay: &str, code: f64, timeout: Duration) {
    let start = Instant::now();
    while d.metric("ngit_sync_relay_connected", &[("relay", relay)]).await != Some(code) {
        if start.elapsed() > timeout {
            let logs = d.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
            panic!(
                "timed out after {timeout:?} waiting for {relay} at ngit_sync_relay_connected {code}\nstatus: {}\nlog tail:\n{}",
                d.status().await.map(|s| s.to_string()).unwrap_or_default(),
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `promtool check metrics` on a scrape: it must parse and report nothing
/// (exit 0). The SPEC's `_total` gauges are exposed as `untyped` for this.
fn promtool_check(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool installed (Debian package `prometheus`)");
    child.stdin.take().expect("stdin").write_all(scrape.as_bytes()).expect("write scrape");
    let out = child.wait_with_output().expect("promtool ran");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "promtool check metrics did not accept the scrape:\n{text}\n{scrape}");
    assert!(text.trim().is_empty(), "promtool findings:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs promtool; run by scripts/test-all (cargo test -p grasp-sync-tests -- --ignored)"]
async fn syncs_exact_accepted_set_serves_it_and_reports_spec_metrics() {
    let w = world().await;
    let mut d = Daemon::spawn(w.opts(true));
    let (a, b) = (w.a.url(), w.b.url());

    wait_connected(&d, &a, 3.0, Duration::from_secs(60)).await;
    wait_connected(&d, &b, 3.0, Duration::from_secs(60)).await;
    let connected_after = d.started.elapsed();

    // Exactly the accepted set, read back through the daemon's own relay.
    let got = served_ids(&d).await;
    let missing: Vec<_> = w.data.expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&w.data.expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?}");

    let scrape = d.metrics().await.expect("scrape");
    assert_eq!(sample(&scrape, "ngit_sync_events_synced_total", &[]), Some(got.len() as f64), "synced total = events saved");
    assert_eq!(sample(&scrape, "ngit_sync_relays_tracked_total", &[]), Some(2.0), "A and B; never our own URL\n{scrape}");
    assert_eq!(sample(&scrape, "ngit_sync_relays_connected_total", &[]), Some(2.0));
    assert_eq!(sample(&scrape, "ngit_sync_relays_dead_total", &[]), Some(0.0));
    for r in [&a, &b] {
        assert_eq!(sample(&scrape, "ngit_sync_connection_attempts_total", &[("relay", r), ("result", "success")]), Some(1.0));
        assert!(sample(&scrape, "ngit_sync_relay_status", &[("relay", r)]).is_some());
        assert_eq!(sample(&scrape, "ngit_sync_relay_failures", &[("relay", r)]), Some(0.0));
        assert!(sample(&scrape, "ngit_sync_historic_sync_completed_timestamp_seconds", &[("relay", r)]).is_some());
    }
    let forged = sample(&scrape, "ngit_sync_events_rejected_total", &[("relay", &a), ("reason", "invalid_signature")]).unwrap_or(0.0)
        + sample(&scrape, "ngit_sync_events_rejected_total", &[("relay", &b), ("reason", "invalid_signature")]).unwrap_or(0.0);
    let bad_id = ["invalid_id", "malformed"]
        .iter()
        .filter_map(|reason| sample(&scrape, "ngit_sync_events_rejected_total", &[("relay", &a), ("reason", reason)]))
        .sum::<f64>();
    assert!(forged >= 2.0, "forged signatures counted as rejected\n{scrape}");
    assert!(bad_id >= 1.0 || forged >= 3.0, "altered event rejected\n{scrape}");
    promtool_check(&scrape);

    // B went the REQ+EOSE way, A the negentropy way.
    let status = d.status().await.expect("status");
    let rel = |url: &str| status["relays"].as_array().unwrap().iter().find(|r| r["relay"] == url).cloned().unwrap();
    assert_eq!(rel(&b)["req_only"], true, "{status}");
    assert!(w.b.neg_open_refused.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(rel(&a)["counters"]["negentropy_rounds"].as_u64().unwrap() > 0, "{status}");
    assert!(status["relays"].as_array().unwrap().iter().all(|r| r["relay"] != w.service));

    // The served relay is read-only and speaks NIP-77.
    let (ok, msg) = publish(&d.relay_url(), &comment(&w.data.owner, &w.data.patch1, "write attempt", now())).await.unwrap();
    assert!(!ok && msg.starts_with("blocked:"), "{msg}");
    let neg =
        first_answer(&d.relay_url(), &format!(r#"["NEG-OPEN","n1",{{"kinds":[30617]}},"{}"]"#, empty_negentropy_message())).await.unwrap();
    assert!(neg.starts_with(r#"["NEG-MSG","n1""#), "{neg}");

    // Live: an event published after historic sync is stored within 2 s.
    let live = comment(&w.data.owner, &w.data.patch1, "live comment", now());
    let published = Instant::now();
    assert!(publish(&a, &live).await.unwrap().0);
    let seen = wait_for("live event in the served relay", Duration::from_secs(5), || async {
        let ids = query(&d.relay_url(), Filter::new().id(live.id)).await.ok()?;
        (!ids.is_empty()).then(|| published.elapsed())
    })
    .await;
    assert!(seen <= Duration::from_secs(2), "live event took {seen:?}");
    // The status snapshot is republished at least every tick: allow it one.
    let want = (got.len() + 1) as f64;
    wait_for("events_synced_total counts the live event", Duration::from_secs(3), || async {
        (d.metric("ngit_sync_events_synced_total", &[]).await == Some(want)).then_some(())
    })
    .await;

    // Clean shutdown.
    let stop = Instant::now();
    d.sigterm();
    let st = d.wait_exit(Duration::from_secs(5)).expect("exits within 5 s");
    assert!(st.success(), "exit status {st:?}\n{}", d.logs());
    assert!(d.logs().contains("stopped cleanly"));
    eprintln!(
        "FIGURES: {} events synced; both relays Connected {:?} after start; live event stored in {:?}; SIGTERM exit in {:?}",
        got.len(),
        connected_after,
        seen,
        stop.elapsed()
    );
}

/// A NEG-OPEN initial message for an empty set (one full-range fingerprint).
fn empty_negentropy_message() -> String {
    use negentropy::{Negentropy, NegentropyStorageVector};
    let mut storage = NegentropyStorageVector::new();
    storage.seal().unwrap();
    let mut neg = Negentropy::owned(storage, 0).unwrap();
    neg.initiate().unwrap().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: run by scripts/test-all"]
async fn relay_killed_mid_sync_degrades_backs_off_and_recovers() {
    let w = world().await;
    let b = w.b.url();
    w.b.set_delay_ms(25); // B's ~130 events now take seconds: time to kill it mid-sync
    let d = Daemon::spawn(w.opts(true));
    wait_connected(&d, &b, 2.0, Duration::from_secs(60)).await;
    w.b.stop();

    wait_for("B disconnected and degraded", Duration::from_secs(10), || async {
        let s = d.metrics().await?;
        let c = sample(&s, "ngit_sync_relay_connected", &[("relay", &b)])?;
        let h = sample(&s, "ngit_sync_relay_status", &[("relay", &b)])?;
        (c == 0.0 && h == 3.0).then_some(())
    })
    .await;
    let down_at = Instant::now();

    // Events arrive at B while it is down.
    let late = comment(&w.data.owner, &w.data.issue1, "written while the mirror was away", now());
    w.b_inner.insert(std::slice::from_ref(&late)).await;

    // Backoff: 1 s, 2 s, 4 s (jitter 0): at most 3 failed attempts in 4 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let failures = d.metric("ngit_sync_connection_attempts_total", &[("relay", &b), ("result", "failure")]).await.unwrap_or(0.0);
    let elapsed = down_at.elapsed();
    assert!((1.0..=3.0).contains(&failures), "{failures} failed attempts in {elapsed:?}");
    assert_eq!(d.metric("ngit_sync_relay_connected", &[("relay", &b)]).await, Some(0.0));
    assert!(d.metric("ngit_sync_relay_failures", &[("relay", &b)]).await.unwrap() >= 1.0);

    w.b.set_delay_ms(0);
    w.b.restart().await;
    wait_connected(&d, &b, 3.0, Duration::from_secs(20)).await;
    wait_connected(&d, &w.a.url(), 3.0, Duration::from_secs(20)).await;
    let mut want = w.data.expected.clone();
    want.insert(late.id);
    let got = served_ids(&d).await;
    assert_eq!(got, want, "missing {:?}", want.difference(&got).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: run by scripts/test-all"]
async fn sigkill_mid_sync_then_restart_loses_nothing_and_reconnects_quickly() {
    let w = world().await;
    let (a, b) = (w.a.url(), w.b.url());
    w.b.set_delay_ms(80); // B takes ~10 s: the kill lands mid-sync
    let mut d1 = Daemon::spawn(w.opts(true));
    wait_connected(&d1, &a, 3.0, Duration::from_secs(60)).await;
    let state_file = w.dir.path().join("data").join("sync-state.json");
    wait_for("sync state persisted", Duration::from_secs(20), || async { state_file.exists().then_some(()) }).await;
    wait_connected(&d1, &b, 2.0, Duration::from_secs(30)).await;
    let before = d1.metric("ngit_sync_events_synced_total", &[]).await.unwrap();
    d1.sigkill();
    assert!(before > 0.0 && (before as usize) < w.data.expected.len(), "killed mid-sync: {before} saved");

    w.b.set_delay_ms(0);
    let d2 = Daemon::spawn(w.opts(true));
    wait_connected(&d2, &a, 3.0, Duration::from_secs(30)).await;
    let a_back = d2.started.elapsed();
    wait_connected(&d2, &b, 3.0, Duration::from_secs(60)).await;
    let logs = d2.logs();
    assert!(logs.contains("restored sync state"), "{logs}");
    let quick = logs.lines().any(|l| l.contains(" connected") && l.contains(&format!("relay={a}")) && l.contains("quick=true"));
    assert!(quick, "A resumed as a quick reconnect:\n{logs}");

    let got = served_ids(&d2).await;
    assert_eq!(got, w.data.expected, "missing {:?}", w.data.expected.difference(&got).collect::<Vec<_>>());
    let resaved = d2.metric("ngit_sync_events_synced_total", &[]).await.unwrap();
    // Events counted as saved before the kill are still stored: the restart
    // only saves the rest (replaced addressable versions aside, none here).
    assert!(resaved + before <= w.data.expected.len() as f64, "{before} saved before SIGKILL, {resaved} after restart: some were lost");
    eprintln!(
        "FIGURES: SIGKILL after {before} saved; restart saved {resaved} more; A Connected again {a_back:?} after restart (quick reconnect)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: run by scripts/test-all"]
async fn hostile_announcement_urls_are_not_contacted_and_logged_once() {
    let canary = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cport = canary.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while canary.accept().await.is_ok() {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let relay_port = free_port();
    let service = format!("ws://127.0.0.1:{relay_port}");
    let a = TestRelay::start(0).await;
    let hostile_urls = [
        format!("ws://127.0.0.1:{cport}"),
        "ws://10.0.0.1".to_string(),
        format!("http://127.0.0.1:{cport}"),
        format!("ws://localhost:{cport}"),
    ];
    let keys = Keys::generate();
    let mut relays = vec![service.as_str()];
    relays.extend(hostile_urls.iter().map(String::as_str));
    let ann1 = announcement(&keys, "evil1", &relays, &[], now() - 100);
    let ann2 = announcement(&keys, "evil2", &relays, &[], now() - 90);
    a.insert(&[ann1, ann2]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::spawn(DaemonOpts {
        service_url: service.clone(),
        bootstrap: vec![a.url()],
        data_dir: dir.path().join("data"),
        allow_private: false,
        http_port: free_port(),
        relay_port,
        extra: vec![],
    });
    wait_connected(&d, &a.url(), 3.0, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "a hostile URL was contacted");
    assert_eq!(d.metric("ngit_sync_relays_tracked_total", &[]).await, Some(1.0));
    assert_eq!(served_ids(&d).await.len(), 2, "the announcements themselves are accepted");
    let logs = d.logs();
    for u in &hostile_urls {
        let n = logs.lines().filter(|l| l.contains("relay URL refused") && l.contains(&format!("url={u} "))).count();
        assert_eq!(n, 1, "{u} logged {n} times:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: run by scripts/test-all"]
async fn store_relay_mode_publishes_into_an_existing_relay() {
    let w = world().await;
    let downstream = TestRelay::start(0).await;
    let mut opts = w.opts(true);
    opts.extra.extend(["--store-relay".to_string(), downstream.url()]);
    let d = Daemon::spawn(opts);
    wait_connected(&d, &w.a.url(), 3.0, Duration::from_secs(60)).await;
    wait_connected(&d, &w.b.url(), 3.0, Duration::from_secs(60)).await;
    // Connected means historic sync is done; the last saves may still be on their way
    let down = downstream.url();
    let mut got = BTreeSet::new();
    for _ in 0..100 {
        got = query(&down, Filter::new().limit(100_000)).await.unwrap().into_iter().map(|e| e.id).collect();
        if got == w.data.expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(got, w.data.expected, "missing {:?}", w.data.expected.difference(&got).collect::<Vec<_>>());
    // the relay holds them a moment before the daemon has read every OK
    let want = Some(got.len() as f64);
    let mut synced = None;
    for _ in 0..100 {
        synced = d.metric("ngit_sync_events_synced_total", &[]).await;
        if synced == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(synced, want);
}

#[test]
fn bad_configuration_exits_2_with_a_one_line_error_naming_the_option() {
    let bin = binary();
    let cases: &[(&[&str], &str)] = &[
        (&["--service-url", "wss://g.example.com", "--bootstrap-relay", "wss://r.example.com", "--backoff-base", "0s"], "--backoff-base"),
        (&["--service-url", "wss://g.example.com", "--bootstrap-relay", "wss://r.example.com", "--batch-window", "soon"], "--batch-window"),
        (&["--bootstrap-relay", "wss://r.example.com"], "--service-url"),
        (&["--service-url", "wss://g.example.com"], "--bootstrap-relay"),
        (&["--service-url", "wss://g.example.com", "--bootstrap-relay", "https://r.example.com"], "--bootstrap-relay"),
        (&["--service-url", "wss://g.example.com", "--bootstrap-relay", "wss://r.example.com", "--no-such-flag"], "--no-such-flag"),
    ];
    for (args, option) in cases {
        let out = Command::new(&bin).args(*args).env_remove("RUST_LOG").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(err.contains(option), "{args:?}: `{err}` names {option}");
    }
    let help = Command::new(&bin).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    for needle in
        ["[default: 5s]", "GRASP_SYNC_BATCH_WINDOW", "[default: 15m]", "[default: 70]", "[default: 127.0.0.1:9464]", "--store-relay"]
    {
        assert!(text.contains(needle), "--help lacks {needle}");
    }
}

/// A relay with a public relay's limits (6 subscriptions, stated in NIP-11;
/// 4 negentropy sessions) and enough repositories and roots that dozens of
/// historic jobs and live filter sets compete for them. The daemon must store
/// exactly the set, never be refused, and stay on negentropy (before flow
/// control, such a relay answered hundreds of "too many" and was taken for
/// REQ-only after minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the daemon binary; run by scripts/test-all"]
async fn limited_relay_is_synced_exactly_without_a_single_refusal() {
    let relay_port = free_port();
    let http_port = free_port();
    let service = format!("ws://127.0.0.1:{relay_port}");
    let inner = TestRelay::start(0).await;
    let proxy_port = free_port();
    let limits = Limits { max_subs: 6, max_neg: 4, max_limit: 500 };
    let proxy = Proxy::start(proxy_port, &inner.url(), limits, None).await.expect("limiting proxy");
    let proxy_url = format!("ws://127.0.0.1:{proxy_port}");
    let keys = Keys::generate();
    let base = now() - 50_000;
    let mut events = Vec::new();
    for r in 0..20u64 {
        let d = format!("repo{r}");
        events.push(announcement(&keys, &d, &[&service, &proxy_url], &[], base + r));
        let addr = dataset::address(&keys, &d);
        for i in 0..8u64 {
            let at = base + 100 + r * 1000 + i * 10;
            let issue =
                dataset::ev(&keys, 1621, &format!("issue {r}/{i}"), vec![nostr::Tag::parse(["a", addr.as_str()]).expect("tag")], at);
            for c in 0..3u64 {
                events.push(comment(&keys, &issue.id, &format!("comment {c}"), at + c + 1));
            }
            events.push(issue);
        }
    }
    let expected: BTreeSet<EventId> = events.iter().map(|e| e.id).collect();
    inner.insert(&events).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::spawn(DaemonOpts {
        service_url: service,
        bootstrap: vec![proxy_url.clone()],
        data_dir: dir.path().join("data"),
        allow_private: true,
        http_port,
        relay_port,
        // ten roots per filter: 16 layer-3 batches, 48 historic jobs
        extra: vec!["--max-ids-per-filter".into(), "10".into()],
    });
    wait_connected(&d, &proxy_url, 3.0, Duration::from_secs(60)).await;
    assert_eq!(served_ids(&d).await, expected, "exactly the relay's set");
    let t = proxy.totals();
    assert_eq!((t.sub_refusals, t.neg_refusals), (0, 0), "the relay never said too many");
    assert!(t.nip11 >= 1, "NIP-11 was fetched");
    assert_eq!(d.metric("ngit_sync_relay_refusals", &[("relay", &proxy_url)]).await, Some(0.0));
    let status = d.status().await.expect("status");
    let row = status["relays"].as_array().expect("relays").iter().find(|r| r["relay"] == proxy_url.as_str()).cloned().expect("row");
    assert_eq!(row["req_only"], false, "negentropy all along: {row}");
    assert_eq!(row["negentropy"], true);
}
