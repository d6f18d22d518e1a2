//! A real Prometheus server scraping the real daemon (issue "Operate it the
//! way Prometheus users do"). Prometheus (Debian package `prometheus`, which
//! `scripts/test-all` installs) scrapes `/metrics` every second as job
//! `grasp-sync` and evaluates the shipped alert rules
//! (`deploy/grasp-sync-alerts.yml`) plus a copy of them whose `for:` is 2 s.
//! Through Prometheus' HTTP API the tests check the SPEC §8 series and their
//! labels, that every rule loads and evaluates, that every Grafana dashboard
//! query (`deploy/grafana-dashboard.json`) returns data, and that the alerts
//! fire for the right reason: a killed relay → `SyncRelayDead` for that relay
//! only, a SIGKILLed daemon → `up == 0` → `SyncDaemonDown`.
//!
//! `#[ignore]`d like the other e2e files; run by `scripts/test-all`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use grasp_sync_tests::daemon::{Daemon, DaemonOpts};
use grasp_sync_tests::dataset::{self, Dataset};
use grasp_sync_tests::prometheus::{deploy_file, require_installed, shortened_rules, tail, PromOpts, Prometheus, ScrapeJob, Series};
use grasp_sync_tests::relays::{ReqOnlyProxy, TestRelay};
use grasp_sync_tests::{free_port, wait_for};
use nostr::Timestamp;
use serde_json::Value;

/// The job name the alert `SyncDaemonDown` selects on.
const JOB: &str = "grasp-sync";
/// `for:` of every rule in the test copy of the alert rules.
const FAST_FOR: &str = "2s";
/// Appended to group and alert names in the test copy.
const FAST: &str = "Fast";

/// Two relays with the NIP-34 dataset, the daemon, and Prometheus scraping it.
struct Scene {
    prom: Prometheus,
    daemon: Daemon,
    a: TestRelay,
    _b_inner: TestRelay,
    b: ReqOnlyProxy,
    data: Dataset,
    /// `instance` label of the daemon's target.
    instance: String,
    /// The last answer a poll got (printed if the test fails).
    last: RefCell<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Scene {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- last API answer ----\n{}", self.last.borrow());
            eprintln!("---- daemon log (last 60 lines of {}) ----\n{}", self.daemon.log.display(), tail(&self.daemon.logs(), 60));
        }
    }
}

async fn scene() -> Scene {
    require_installed(); // before anything else: a clear message, not a skip
    let (relay_port, http_port) = (free_port(), free_port());
    let service = format!("ws://127.0.0.1:{relay_port}");
    let a = TestRelay::start(0).await;
    let b_inner = TestRelay::start(0).await;
    let b = ReqOnlyProxy::start(0, &b_inner.url()).await;
    let data = dataset::build(&service, &a.url(), &b.url(), Timestamp::now().as_secs() - 20_000);
    a.insert(&data.on_a).await;
    b_inner.insert(&data.on_b).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let (rules_path, rules) = deploy_file("grasp-sync-alerts.yml");
    let fast_path = dir.path().join("grasp-sync-alerts-fast.yml");
    std::fs::write(&fast_path, shortened_rules(&rules, FAST_FOR, FAST)).expect("write the shortened rules");

    let daemon = Daemon::spawn(DaemonOpts {
        service_url: service,
        bootstrap: vec![a.url()],
        data_dir: dir.path().join("data"),
        allow_private: true,
        http_port,
        relay_port,
        // a relay failing for 2 s is Dead (SPEC: 24 h)
        extra: ["--page-limit", "80", "--dead-after", "2s"].map(String::from).to_vec(),
    });
    // Prometheus starts once /metrics answers, so `up` is 1 from its first scrape.
    wait_for("the daemon's /metrics", Duration::from_secs(20), || async { daemon.metrics().await.map(|_| ()) }).await;
    let instance = format!("127.0.0.1:{http_port}");
    let prom = Prometheus::start(&PromOpts {
        scrape_interval: "1s".into(),
        evaluation_interval: "1s".into(),
        jobs: vec![ScrapeJob { job: JOB.into(), targets: vec![instance.clone()], metrics_path: "/metrics".into() }],
        rule_files: vec![rules_path, fast_path],
    })
    .await;
    Scene { prom, daemon, a, _b_inner: b_inner, b, data, instance, last: RefCell::new(String::new()), _dir: dir }
}

impl Scene {
    /// Polls `check` (Err: not yet, with the answer seen) until Ok or `timeout`;
    /// a timeout panics, and the last answer, the daemon's and Prometheus' logs are printed.
    async fn poll<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        wait_for(what, timeout, || {
            let fut = check();
            async move {
                match fut.await {
                    Ok(v) => Some(v),
                    Err(e) => {
                        *self.last.borrow_mut() = e;
                        None
                    }
                }
            }
        })
        .await
    }

    /// An instant query that must succeed.
    async fn q(&self, expr: &str) -> Vec<Series> {
        self.prom.query(expr).await.unwrap_or_else(|e| panic!("query `{expr}` failed: {e}"))
    }

    /// The rule `name` of group `group`, from `/api/v1/rules`.
    async fn rule(&self, group: &str, name: &str) -> Result<Value, String> {
        let groups = self.prom.rules().await?;
        let g = groups.iter().find(|g| g["name"] == group).ok_or_else(|| format!("no group {group}: {groups:?}"))?;
        g["rules"].as_array().and_then(|r| r.iter().find(|r| r["name"] == name)).cloned().ok_or_else(|| format!("no rule {name} in {g}"))
    }
}

/// `(relay label, state)` of a rule's active alerts.
fn rule_alerts(rule: &Value) -> Vec<(String, String)> {
    rule["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| (x["labels"]["relay"].as_str().unwrap_or("").to_string(), x["state"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Label names of a series.
fn keys(s: &Series) -> BTreeSet<&str> {
    s.labels.keys().map(String::as_str).collect()
}

/// What Grafana puts for `$instance` when one value is chosen of this
/// multi/include-all variable: the value regex-escaped inside a PromQL string.
fn grafana_regex_escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if "\\$^*{}[]'+?.()|".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// Every `(panel title, target expr)` of the dashboard, rows' nested panels included.
fn dashboard_targets(panels: &Value, out: &mut Vec<(String, String)>) {
    for p in panels.as_array().into_iter().flatten() {
        let title = p["title"].as_str().unwrap_or("(untitled)").to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((title.clone(), e.to_string()));
            }
        }
        dashboard_targets(&p["panels"], out);
    }
}

/// `expr` with the dashboard's variables replaced as Grafana would.
fn interpolate(expr: &str, instance: &str) -> String {
    let e = expr.replace("${instance}", instance).replace("$instance", instance);
    e.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "5m")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs prometheus; run by scripts/test-all (cargo test -p grasp-sync-tests -- --ignored)"]
async fn prometheus_scrapes_spec_series_rules_dashboard_and_relay_dead_alert() {
    let t0 = Instant::now();
    let mut s = scene().await;
    let (a, b) = (s.a.url(), s.b.url());
    let relays: BTreeSet<String> = [a.clone(), b.clone()].into();
    let on_job = |m: &str| format!("{m}{{job=\"{JOB}\"}}");

    // 2. The sync finishes, as Prometheus sees it: every relay at ngit_sync_relay_connected 3.
    s.poll("both relays at ngit_sync_relay_connected 3 in Prometheus", Duration::from_secs(60), || async {
        let got = s.prom.query(&on_job("ngit_sync_relay_connected")).await?;
        let seen: BTreeSet<String> = got.iter().map(|x| x.label("relay").to_string()).collect();
        let done = got.len() == 2 && got.iter().all(|x| x.value == 3.0) && seen == relays;
        done.then_some(()).ok_or_else(|| format!("ngit_sync_relay_connected: {got:?}"))
    })
    .await;
    let synced_after = t0.elapsed();

    // 3. SPEC series with the documented labels (plus job and instance) ...
    let base: BTreeSet<&str> = ["__name__", "instance", "job"].into();
    for (name, extra) in [
        ("ngit_sync_relay_connected", None),
        ("ngit_sync_connection_attempts_total", Some("result")),
        ("ngit_sync_relay_status", None),
        ("ngit_sync_relay_failures", None),
    ] {
        let got = s.q(name).await;
        let mut want = base.clone();
        want.insert("relay");
        want.extend(extra);
        for x in &got {
            assert_eq!(keys(x), want, "{name}: labels of {x:?}");
            assert_eq!((x.label("job"), x.label("instance")), (JOB, s.instance.as_str()), "{x:?}");
        }
        let seen: BTreeSet<String> = got.iter().map(|x| x.label("relay").to_string()).collect();
        assert_eq!(seen, relays, "{name}: one series per relay: {got:?}");
        if extra.is_some() {
            for r in &relays {
                let results: BTreeSet<&str> = got.iter().filter(|x| x.label("relay") == r).map(|x| x.label("result")).collect();
                assert_eq!(results, ["failure", "success"].into(), "{name} for {r}: {got:?}");
            }
        }
    }
    for name in [
        "ngit_sync_events_synced_total",
        "ngit_sync_relays_tracked_total",
        "ngit_sync_relays_connected_total",
        "ngit_sync_relays_dead_total",
    ] {
        let got = s.q(name).await;
        assert_eq!(got.len(), 1, "{name}: one series: {got:?}");
        assert_eq!(keys(&got[0]), base, "{name}: no relay label: {got:?}");
    }

    // ... whose values agree with the daemon's /status (allowing one scrape of lag).
    s.poll("Prometheus' values = the daemon's /status", Duration::from_secs(10), || async {
        let st = s.daemon.status().await.ok_or("no /status")?;
        let mut diffs = Vec::new();
        let mut cmp = |what: String, prom: Option<f64>, status: &Value| {
            let want = status.as_f64();
            if prom != want || want.is_none() {
                diffs.push(format!("{what}: prometheus {prom:?}, /status {status}"));
            }
        };
        let one = |v: Vec<Series>| v.first().map(|x| x.value);
        let t = &st["totals"];
        cmp("events_synced".into(), one(s.prom.query("ngit_sync_events_synced_total").await?), &t["events_synced"]);
        cmp("relays_tracked".into(), one(s.prom.query("ngit_sync_relays_tracked_total").await?), &t["relays_tracked"]);
        cmp("relays_connected".into(), one(s.prom.query("ngit_sync_relays_connected_total").await?), &t["relays_connected"]);
        cmp("relays_dead".into(), one(s.prom.query("ngit_sync_relays_dead_total").await?), &t["relays_dead"]);
        for r in st["relays"].as_array().ok_or("no relays in /status")? {
            let url = r["relay"].as_str().unwrap_or_default();
            let sel = |m: &str, more: &str| format!("{m}{{relay=\"{url}\"{more}}}");
            let c = &r["counters"];
            for (m, more, v) in [
                ("ngit_sync_relay_connected", "", &r["connection_code"]),
                ("ngit_sync_relay_status", "", &r["health_code"]),
                ("ngit_sync_relay_failures", "", &r["failures"]),
                ("ngit_sync_connection_attempts_total", ",result=\"success\"", &c["connect_success"]),
                ("ngit_sync_connection_attempts_total", ",result=\"failure\"", &c["connect_failure"]),
            ] {
                cmp(sel(m, more), one(s.prom.query(&sel(m, more)).await?), v);
            }
        }
        diffs.is_empty().then_some(st).ok_or_else(|| diffs.join("\n"))
    })
    .await;
    let synced = s.q("ngit_sync_events_synced_total").await[0].value;
    assert_eq!(synced, s.data.expected.len() as f64, "events synced = the accepted set");
    assert_eq!(s.q("ngit_sync_relays_tracked_total").await[0].value, 2.0);

    // 4. Both rule groups loaded; every rule healthy and evaluated.
    let (_, rules_text) = deploy_file("grasp-sync-alerts.yml");
    let n_rules = rules_text.lines().filter(|l| l.trim_start().starts_with("- alert:")).count();
    let groups = s
        .poll("both rule groups evaluated, every rule health ok", Duration::from_secs(15), || async {
            let groups = s.prom.rules().await?;
            for g in ["grasp-sync".to_string(), format!("grasp-sync{FAST}")] {
                let group = groups.iter().find(|x| x["name"] == g.as_str()).ok_or_else(|| format!("group {g} not loaded: {groups:?}"))?;
                let rules = group["rules"].as_array().ok_or("no rules")?;
                if rules.len() != n_rules {
                    return Err(format!("group {g}: {} rules, the file has {n_rules}: {group}", rules.len()));
                }
                for r in rules {
                    assert_ne!(r["health"], "err", "rule {} of {g} fails to evaluate: {r}", r["name"]);
                    let evaluated = r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001-"));
                    if r["health"] != "ok" || !evaluated {
                        return Err(format!("rule {} of {g} not evaluated yet: {r}", r["name"]));
                    }
                }
            }
            Ok(groups)
        })
        .await;
    let group = |name: &str| groups.iter().find(|g| g["name"] == name).cloned().expect("group");
    let (real, fast) = (group("grasp-sync"), group(&format!("grasp-sync{FAST}")));
    for (r, f) in real["rules"].as_array().unwrap().iter().zip(fast["rules"].as_array().unwrap()) {
        assert_eq!(f["name"], format!("{}{FAST}", r["name"].as_str().unwrap()));
        assert_eq!(f["query"], r["query"], "the test copy evaluates the same expression");
        assert_eq!(f["duration"], 2, "{f}");
        assert!(r["duration"].as_f64().unwrap() >= 300.0, "the real rules keep their `for:`: {r}");
    }

    // 5. Every dashboard query returns data, for "All" (allValue .*) and for this instance.
    let (_, dash) = deploy_file("grafana-dashboard.json");
    let dash: Value = serde_json::from_str(&dash).expect("dashboard JSON");
    let var = dash["templating"]["list"].as_array().and_then(|l| l.iter().find(|v| v["name"] == "instance")).expect("$instance");
    assert_eq!(var["query"], "label_values(ngit_sync_relays_tracked_total, instance)", "the check below evaluates this query");
    let all = var["allValue"].as_str().expect("allValue").to_string();
    let values = s.prom.label_values("instance", "ngit_sync_relays_tracked_total").await.expect("label values");
    assert!(values.contains(&s.instance), "$instance offers {values:?}, not the daemon's {}", s.instance);
    let mut targets = Vec::new();
    dashboard_targets(&dash["panels"], &mut targets);
    assert!(!targets.is_empty(), "no panel targets found");
    let mut figures = Vec::new();
    for (label, inst) in [("All", all), ("instance", grafana_regex_escape(&s.instance))] {
        for (title, raw) in &targets {
            let expr = interpolate(raw, &inst);
            assert!(!expr.contains('$'), "panel {title:?}: unknown variable left in `{expr}`");
            // rate() over a counter needs two samples of it; poll briefly
            let n = s
                .poll(&format!("panel {title:?} ({label}): `{expr}` to return a series"), Duration::from_secs(10), || async {
                    let got = s.prom.query(&expr).await.unwrap_or_else(|e| panic!("panel {title:?}: `{expr}` fails: {e}"));
                    (!got.is_empty()).then_some(got.len()).ok_or_else(|| format!("panel {title:?}: `{expr}` returned no series"))
                })
                .await;
            figures.push(format!("{label:>8} {n:>2} series  {title}: {expr}"));
        }
    }
    eprintln!("DASHBOARD: $instance offers {values:?}\n{}", figures.join("\n"));

    // 6. Relay A goes away: SyncRelayDead (2 s copy) goes pending, then fires, for A only.
    let killed = Instant::now();
    s.a.stop();
    let dead_fast = format!("SyncRelayDead{FAST}");
    let group_fast = format!("grasp-sync{FAST}");
    let saw_pending = std::cell::Cell::new(None);
    let fired = s
        .poll("SyncRelayDeadFast to go pending, then firing, for the killed relay", Duration::from_secs(30), || async {
            let rule = s.rule(&group_fast, &dead_fast).await?;
            let alerts = rule_alerts(&rule);
            assert!(alerts.iter().all(|(r, _)| *r == a), "SyncRelayDead for a relay that is up: {rule}");
            match alerts.iter().find(|(r, _)| *r == a).map(|(_, st)| st.as_str()) {
                Some("pending") if saw_pending.get().is_none() => saw_pending.set(Some(killed.elapsed())),
                Some("firing") => return Ok(killed.elapsed()),
                _ => {}
            }
            Err(format!("{rule}"))
        })
        .await;
    let pending_at = saw_pending.get().expect("SyncRelayDeadFast was seen pending before it fired");
    let firing = s.q(&format!("ALERTS{{alertname=\"{dead_fast}\",alertstate=\"firing\"}}")).await;
    assert_eq!(firing.iter().map(|x| x.label("relay")).collect::<Vec<_>>(), [a.as_str()], "ALERTS: {firing:?}");
    assert_eq!(firing[0].label("instance"), s.instance);
    assert_eq!(s.q(&format!("ngit_sync_relay_status{{relay=\"{a}\"}}")).await[0].value, 4.0, "A is Dead");
    assert_eq!(s.q(&format!("ngit_sync_relay_connected{{relay=\"{b}\"}}")).await[0].value, 3.0, "B is still Connected");
    assert_eq!(s.q("ngit_sync_relays_dead_total").await[0].value, 1.0);
    // The real rule (for: 1d) matches too, so it is pending, but it does not fire.
    let real_dead = s.rule("grasp-sync", "SyncRelayDead").await.expect("real rule");
    assert_eq!(rule_alerts(&real_dead), [(a.clone(), "pending".to_string())], "the real SyncRelayDead: {real_dead}");
    // And nothing else is active: exactly these two alerts.
    let active: BTreeSet<(String, String, String)> = s
        .prom
        .alerts()
        .await
        .expect("alerts")
        .iter()
        .map(|x| {
            let f = |k: &str| x["labels"][k].as_str().or(x[k].as_str()).unwrap_or("").to_string();
            (f("alertname"), f("relay"), f("state"))
        })
        .collect();
    let want: BTreeSet<(String, String, String)> =
        [(dead_fast.clone(), a.clone(), "firing".into()), ("SyncRelayDead".into(), a.clone(), "pending".into())].into();
    assert_eq!(active, want, "/api/v1/alerts");

    eprintln!(
        "FIGURES: synced ({synced} events) and seen Connected by Prometheus {synced_after:?} after start; relay killed → \
         SyncRelayDead{FAST} pending after {pending_at:?}, firing after {fired:?}; whole test {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs prometheus; run by scripts/test-all (cargo test -p grasp-sync-tests -- --ignored)"]
async fn sigkilled_daemon_is_up_zero_and_fires_sync_daemon_down() {
    let t0 = Instant::now();
    let mut s = scene().await;
    let up = format!("up{{job=\"{JOB}\"}}");
    let down_fast = format!("SyncDaemonDown{FAST}");
    let group_fast = format!("grasp-sync{FAST}");

    // Scraped, and the alert evaluated while the daemon is up: inactive.
    s.poll("up == 1 and SyncDaemonDownFast evaluated inactive", Duration::from_secs(15), || async {
        let got = s.prom.query(&up).await?;
        let rule = s.rule(&group_fast, &down_fast).await?;
        let evaluated = rule["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001-"));
        let ok = got.len() == 1 && got[0].value == 1.0 && evaluated && rule["state"] == "inactive";
        ok.then_some(()).ok_or_else(|| format!("up: {got:?}\nrule: {rule}"))
    })
    .await;
    let up_series = s.q(&up).await;
    assert_eq!(up_series[0].label("instance"), s.instance);

    let killed = Instant::now();
    s.daemon.sigkill();
    let up_zero = s
        .poll("up{job=\"grasp-sync\"} to become 0", Duration::from_secs(15), || async {
            let got = s.prom.query(&up).await?;
            (got.len() == 1 && got[0].value == 0.0).then(|| killed.elapsed()).ok_or_else(|| format!("up: {got:?}"))
        })
        .await;
    let saw_pending = std::cell::Cell::new(None);
    let fired = s
        .poll("SyncDaemonDownFast to go pending, then firing", Duration::from_secs(20), || async {
            let rule = s.rule(&group_fast, &down_fast).await?;
            let alerts = rule["alerts"].as_array().cloned().unwrap_or_default();
            let mine = alerts.iter().find(|x| x["labels"]["instance"] == s.instance.as_str() && x["labels"]["job"] == JOB);
            match mine.and_then(|x| x["state"].as_str()) {
                Some("pending") if saw_pending.get().is_none() => saw_pending.set(Some(killed.elapsed())),
                Some("firing") => return Ok(killed.elapsed()),
                _ => {}
            }
            Err(format!("{rule}"))
        })
        .await;
    let pending_at = saw_pending.get().expect("SyncDaemonDownFast was seen pending before it fired");
    let real = s.rule("grasp-sync", "SyncDaemonDown").await.expect("real rule");
    assert_ne!(real["state"], "firing", "the real SyncDaemonDown (for: 5m) must not fire yet: {real}");
    let firing = s.q(&format!("ALERTS{{alertname=\"{down_fast}\",alertstate=\"firing\"}}")).await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    eprintln!(
        "FIGURES: daemon SIGKILLed → up 0 after {up_zero:?}, SyncDaemonDown{FAST} pending after {pending_at:?}, firing after {fired:?}; \
         whole test {:?}",
        t0.elapsed()
    );
}
