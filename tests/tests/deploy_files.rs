//! The shipped deploy files use the SPEC §8 metric contract. (The alert
//! rules are also checked by `promtool check rules` in scripts/test-all.)

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

#[test]
fn systemd_unit_runs_the_daemon_and_stops_it_with_sigterm() {
    let unit = deploy("grasp-sync.service");
    for needle in ["ExecStart=/usr/local/bin/grasp-sync", "KillSignal=SIGTERM", "StateDirectory=grasp-sync", "RestartPreventExitStatus=2"] {
        assert!(unit.contains(needle), "unit lacks `{needle}`");
    }
}
