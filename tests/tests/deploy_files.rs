//! The shipped deploy files use the SPEC §8 metric contract. (The alert
//! rules are also checked by `promtool check rules` and unit-tested by
//! `promtool test rules deploy/grasp-sync-alerts.test.yml` in scripts/test-all.)

use std::path::Path;

const SPEC_METRICS: &[&str] = &[
    "ngit_sync_relay_connected",
    "ngit_sync_connection_attempts_total",
    "ngit_sync_relay_status",
    "ngit_sync_relay_failures",
    "ngit_sync_events_synced_total",
    "ngit_sync_relays_tracked_total",
    "ngit_sync_relays_connected_total",
    "ngit_sync_relays_dead_total",
];

fn deploy(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn grafana_dashboard_is_json_over_every_spec_metric() {
    let text = deploy("grafana-dashboard.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("dashboard is valid JSON");
    let exprs: Vec<String> = v["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    for m in SPEC_METRICS {
        assert!(exprs.iter().any(|e| e.contains(m)), "no panel queries {m}");
    }
}

#[test]
fn alert_rules_cover_dead_slow_and_degraded() {
    let rules = deploy("grasp-sync-alerts.yml");
    for needle in ["ngit_sync_relay_status == 4", "for: 1d", "ngit_sync_relay_connected == 2", "for: 1h", "ngit_sync_relay_status == 3"] {
        assert!(rules.contains(needle), "alert rules lack `{needle}`");
    }
}

/// The values of `key: value` lines (also `- key: value`), in order.
fn yaml_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.trim_start().trim_start_matches("- ").strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.split(" #").next().unwrap_or_default().trim().trim_matches(|c| c == '"' || c == '\''))
        .collect()
}

#[test]
fn every_alert_has_a_promtool_unit_test() {
    let rules = deploy("grasp-sync-alerts.yml");
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim_start().strip_prefix("- alert:")).map(str::trim).collect();
    assert!(alerts.len() >= 5, "found only {alerts:?} in grasp-sync-alerts.yml");
    let tests = deploy("grasp-sync-alerts.test.yml");
    assert!(tests.contains("rule_files:\n  - grasp-sync-alerts.yml\n"), "the unit tests do not load grasp-sync-alerts.yml");
    let tested = yaml_values(&tests, "alertname");
    let untested: Vec<&str> = alerts.iter().copied().filter(|a| !tested.contains(a)).collect();
    assert!(
        untested.is_empty(),
        "alert(s) {untested:?} have no `alertname:` case in deploy/grasp-sync-alerts.test.yml: add one where it fires and one where it must not"
    );
    let unknown: Vec<&str> = tested.iter().copied().filter(|t| !alerts.contains(t)).collect();
    assert!(unknown.is_empty(), "deploy/grasp-sync-alerts.test.yml tests alerts that do not exist: {unknown:?}");
}

#[test]
fn systemd_unit_runs_the_daemon_and_stops_it_with_sigterm() {
    let unit = deploy("grasp-sync.service");
    for needle in ["ExecStart=/usr/local/bin/grasp-sync", "KillSignal=SIGTERM", "StateDirectory=grasp-sync", "RestartPreventExitStatus=2"] {
        assert!(unit.contains(needle), "unit lacks `{needle}`");
    }
}
