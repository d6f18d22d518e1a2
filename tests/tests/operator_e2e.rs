//! What an operator sees without Prometheus: the progress lines in the log
//! and `grasp-sync status`, end to end against the real binary and real
//! relays on 127.0.0.1. `#[ignore]`d in the plain unit-test run (it builds and
//! runs the daemon); `scripts/test-all` runs it with the other e2e files.

use std::process::{Command, Output};
use std::time::Duration;

use grasp_sync_tests::daemon::{binary, Daemon, DaemonOpts};
use grasp_sync_tests::dataset;
use grasp_sync_tests::hostile_relay::SlowProxy;
use grasp_sync_tests::relays::TestRelay;
use grasp_sync_tests::{free_port, wait_for};
use nostr::Timestamp;

/// Runs `grasp-sync status <args>` against the daemon on `http_port`.
fn status_command(http_port: u16, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("status")
        .args(["--url", &format!("127.0.0.1:{http_port}"), "--timeout", "3s"])
        .args(args)
        .output()
        .expect("running grasp-sync status")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table row of `relay`, if any.
fn row<'a>(table: &'a str, relay: &str) -> Option<&'a str> {
    table.lines().find(|l| l.starts_with(&format!("{relay} ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: builds and runs the grasp-sync binary (scripts/test-all runs it)"]
async fn progress_lines_summary_and_the_status_command() {
    let relay_port = free_port();
    let http_port = free_port();
    let service = format!("ws://127.0.0.1:{relay_port}");
    let a = TestRelay::start(0).await;
    let mut b = TestRelay::start(0).await;
    // Every frame from A is delayed, so its historic sync lasts seconds and
    // progress lines (every 1 s here) have something to report.
    let slow_a = SlowProxy::start(&a.url(), 120_000).await;
    let data = dataset::build(&service, &slow_a.url(), &b.url(), Timestamp::now().as_secs() - 20_000);
    a.insert(&data.on_a).await;
    b.insert(&data.on_b).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::spawn(DaemonOpts {
        service_url: service.clone(),
        bootstrap: vec![slow_a.url()],
        data_dir: dir.path().join("data"),
        allow_private: true,
        http_port,
        relay_port,
        extra: vec!["--progress-interval".into(), "1s".into()],
    });

    // While it syncs: the table has a header and a row for the bootstrap relay.
    let table = wait_for("a status table with the bootstrap relay", Duration::from_secs(20), || async {
        let out = status_command(http_port, &[]);
        let t = text(&out);
        (out.status.success() && row(&t, &slow_a.url()).is_some()).then_some(t)
    })
    .await;
    assert!(table.starts_with("RELAY ") && table.contains("CONNECTION") && table.contains("LAST ERROR"), "{table}");

    // Done: every relay connected, at 100 %, with the events it saved.
    let status = wait_for("both relays Connected", Duration::from_secs(60), || async {
        let s = daemon.status().await?;
        let relays = s["relays"].as_array()?;
        (relays.len() == 2 && relays.iter().all(|r| r["connection"] == "Connected")).then_some(s)
    })
    .await;
    let out = status_command(http_port, &[]);
    assert!(out.status.success(), "{out:?}");
    let table = text(&out);
    for r in status["relays"].as_array().expect("relays") {
        let url = r["relay"].as_str().expect("relay url");
        let line = row(&table, url).unwrap_or_else(|| panic!("no row for {url}:\n{table}"));
        assert!(line.contains(" connected ") && line.contains("[##########] 100%"), "{line}");
        let saved = r["counters"]["events_saved"].as_u64().expect("events_saved");
        assert!(line.contains(&format!("  {saved}  ")), "{line} should show {saved} events saved");
    }
    let synced = status["totals"]["events_synced"].as_u64().expect("events_synced");
    assert_eq!(synced as usize, data.expected.len(), "{status}");
    assert!(table.contains(&format!("2 relays: 2 connected, 0 dead · {synced} events synced · 2 repositories")), "{table}");

    // --json passes the document through.
    let out = status_command(http_port, &["--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(doc["totals"]["events_synced"], status["totals"]["events_synced"]);
    assert_eq!(doc["relays"].as_array().map(Vec::len), Some(2));

    // The log: progress lines for the slow relay, then one summary (the
    // progress task looks at the status once a second).
    let logs = wait_for("the end-of-sync summary in the log", Duration::from_secs(5), || async {
        let logs = daemon.logs();
        logs.contains("historic sync done:").then_some(logs)
    })
    .await;
    let progress = format!("historic sync {}: ", slow_a.url());
    assert!(logs.contains(&progress) && logs.contains("ids fetched") && logs.contains("events/s"), "no progress line:\n{logs}");
    let summaries: Vec<&str> = logs.lines().filter(|l| l.contains("historic sync done:")).collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert!(
        summaries[0].contains(&format!("{synced} events in ")) && summaries[0].contains("2 relays connected (0 degraded)"),
        "{} (synced {synced})",
        summaries[0]
    );

    // A relay goes away: its row says so, with the error and its age.
    b.stop();
    let table = wait_for("relay B shown disconnected with its error", Duration::from_secs(20), || async {
        let t = text(&status_command(http_port, &[]));
        let line = row(&t, &b.url())?.to_string();
        (line.contains("disconnected") && line.contains(" ago)")).then_some(line)
    })
    .await;
    assert!(table.contains("disconnected:") || table.contains("connection failed:"), "{table}");

    // No daemon: a clear error and exit code 1.
    drop(daemon);
    let out = status_command(http_port, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        err.contains(&format!("cannot read http://127.0.0.1:{http_port}/status")) && err.contains("is grasp-sync running there?"),
        "{err}"
    );
    // Bad arguments: exit 2.
    let out = Command::new(binary()).args(["status", "--url", "https://example.com"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "an https URL is refused with a clear error: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
    let out = Command::new(binary()).args(["status", "--bogus"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
