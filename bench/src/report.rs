//! Results: one [`Measurement`] per contender run, medians over runs, the
//! markdown table, and the `## <N> events` section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::measure::cpu_percent;

/// One contender run.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Until every event was stored (re-sync: until every relay was Connected).
    pub wall: Duration,
    /// Until every relay showed Connected (daemon), or the sync returned (nostr-sdk).
    pub connected_after: Option<Duration>,
    /// Events the contender must store.
    pub expected: u64,
    /// Events it stored (daemon: `events_synced_total`; peer: count in lmdb).
    pub stored: u64,
    /// Bytes relay → client, counted by the proxy.
    pub bytes_received: u64,
    /// Bytes client → relay, counted by the proxy.
    pub bytes_sent: u64,
    /// Peak RSS (VmHWM), KiB.
    pub peak_rss_kib: Option<u64>,
    /// Largest `RssAnon` seen while sampling every 100 ms, KiB.
    pub peak_anon_kib: Option<u64>,
    /// CPU time (user + system) until done.
    pub cpu: Option<Duration>,
    /// REQs + NEG-OPENs refused by the proxy's limits.
    pub refusals: u64,
    /// WebSocket connections / NIP-11 documents the proxy served.
    pub connections: (u64, u64),
    /// Root events the contender knew when it built its L3 filters (nostr-sdk).
    pub roots_seen: Option<u64>,
    /// Everything stored / every relay Connected within the timeout.
    pub complete: bool,
    /// What went wrong or is worth knowing.
    pub notes: Vec<String>,
}

/// A contender's runs.
#[derive(Debug, Clone)]
pub struct Row {
    /// Name in the table.
    pub label: String,
    /// What "done" means for this row (shown under the table).
    pub runs: Vec<Measurement>,
    /// Events the row's rate is computed over.
    pub events: u64,
}

/// Medians of a row's runs (complete runs only, when there are any).
#[derive(Debug, Clone, Copy, Default)]
struct Medians {
    wall: f64,
    connected: Option<f64>,
    rx: f64,
    tx: f64,
    rss_mib: Option<f64>,
    anon_mib: Option<f64>,
    cpu_pct: Option<f64>,
    refusals: f64,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

impl Row {
    fn medians(&self) -> Medians {
        let complete: Vec<&Measurement> = self.runs.iter().filter(|m| m.complete).collect();
        let runs: Vec<&Measurement> = if complete.is_empty() { self.runs.iter().collect() } else { complete };
        let col = |f: &dyn Fn(&Measurement) -> Option<f64>| median(runs.iter().filter_map(|m| f(m)).collect());
        Medians {
            wall: col(&|m| Some(m.wall.as_secs_f64())).unwrap_or(0.0),
            connected: col(&|m| m.connected_after.map(|d| d.as_secs_f64())),
            rx: col(&|m| Some(m.bytes_received as f64)).unwrap_or(0.0),
            tx: col(&|m| Some(m.bytes_sent as f64)).unwrap_or(0.0),
            rss_mib: col(&|m| m.peak_rss_kib.map(|k| k as f64 / 1024.0)),
            anon_mib: col(&|m| m.peak_anon_kib.map(|k| k as f64 / 1024.0)),
            cpu_pct: col(&|m| m.cpu.map(|c| cpu_percent(c, m.wall))),
            refusals: col(&|m| Some(m.refusals as f64)).unwrap_or(0.0),
        }
    }

    fn rate(&self) -> f64 {
        let w = self.medians().wall;
        if w > 0.0 {
            self.events as f64 / w
        } else {
            0.0
        }
    }
}

/// Everything one `--events N` invocation measured.
pub struct Report {
    /// Dataset size.
    pub events: u64,
    /// Root events in it.
    pub roots: usize,
    /// Repositories in it.
    pub repos: usize,
    /// Sum of event JSON sizes.
    pub json_bytes: u64,
    /// `--runs`.
    pub runs: usize,
    /// Relay limits line.
    pub limits: String,
    /// Machine line.
    pub machine: String,
    /// `git describe` of the workspace, if known.
    pub revision: String,
    /// Rows in table order.
    pub rows: Vec<Row>,
    /// Label of the floor row, of the nostr-sdk initial and re-sync rows (for ratios).
    pub floor: String,
    /// (row label → peer label it is compared with).
    pub peers: Vec<(String, String)>,
}

fn mb(b: f64) -> String {
    format!("{:.1}", b / 1e6)
}

impl Report {
    fn row(&self, label: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.label == label)
    }

    /// The `## <N> events` section (heading, context lines, table, notes).
    pub fn section(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {} events\n", self.events);
        let _ = writeln!(
            s,
            "Dataset: {} events ({} roots, {} repositories), {} MB of event JSON. Median of {} run(s). {}. Relay: {}. Workspace: {}.\n",
            self.events,
            self.roots,
            self.repos,
            mb(self.json_bytes as f64),
            self.runs,
            self.machine,
            self.limits,
            self.revision
        );
        s.push_str("| contender | complete | time s | → Connected s | events/s | MB received | MB sent | peak RSS MiB | peak anon MiB | CPU % | refused | time vs nostr-sdk | rate vs floor |\n");
        s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let floor_rate = self.row(&self.floor).map(Row::rate).filter(|r| *r > 0.0);
        for row in &self.rows {
            let m = row.medians();
            let done = row.runs.iter().filter(|m| m.complete).count();
            let peer = self
                .peers
                .iter()
                .find(|(l, _)| *l == row.label)
                .and_then(|(_, p)| self.row(p))
                .map(|p| p.medians().wall)
                .filter(|w| *w > 0.0);
            let is_floor = row.label == self.floor;
            let _ = writeln!(
                s,
                "| {} | {}/{} | {:.2} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.label,
                done,
                row.runs.len(),
                m.wall,
                m.connected.map(|c| format!("{c:.2}")).unwrap_or_else(|| "—".into()),
                row.rate(),
                mb(m.rx),
                if is_floor { "—".into() } else { mb(m.tx) },
                m.rss_mib.map(|r| format!("{r:.0}")).unwrap_or_else(|| "—".into()),
                m.anon_mib.map(|r| format!("{r:.0}")).unwrap_or_else(|| "—".into()),
                m.cpu_pct.map(|c| format!("{c:.0}")).unwrap_or_else(|| "—".into()),
                if is_floor { "—".into() } else { format!("{:.0}", m.refusals) },
                peer.map(|p| format!("{:.2}×", m.wall / p)).unwrap_or_else(|| "—".into()),
                floor_rate.filter(|_| !is_floor).map(|f| format!("{:.2}×", row.rate() / f)).unwrap_or_else(|| "—".into()),
            );
        }
        let mut notes: Vec<String> = Vec::new();
        for row in &self.rows {
            for (i, m) in row.runs.iter().enumerate() {
                for n in &m.notes {
                    let line = format!("- {} (run {}): {n}", row.label, i + 1);
                    if !notes.contains(&line) {
                        notes.push(line);
                    }
                }
            }
        }
        if !notes.is_empty() {
            s.push_str("\nNotes:\n\n");
            for n in notes {
                s.push_str(&n);
                s.push('\n');
            }
        }
        s
    }
}

/// The header of a new `BENCHMARKS.md`.
pub fn header(machine: &str, limits: &str) -> String {
    format!(
        "# grasp-sync benchmarks\n\n\
Measured with `./scripts/bench` (builds the release daemon, then runs\n\
`cargo run --release -p grasp-sync-bench -- --events N --runs 3 --write BENCHMARKS.md` for 10,000 and 100,000 events).\n\
Each run starts a fresh `nostr-relay-builder` relay (in-memory database, loaded with the dataset) behind a limiting\n\
proxy on 127.0.0.1 that behaves like a typical public relay (strfry defaults) — {limits} — and\n\
counts the WebSocket payload bytes of every client identically. Every contender is its own OS process.\n\n\
Machine: {machine}.\n\n\
Rows:\n\n\
- **floor**: in-process, one core: `RelayMessage::from_json` + `Event::verify` over every EVENT frame of the dataset — the work no engine can skip; its bytes are the EVENT frames themselves.\n\
- **grasp-sync initial**: the release daemon (`target/release/grasp-sync`, server policy, embedded LMDB store) from an empty data directory; done when `ngit_sync_events_synced_total` on `/metrics` (polled every 100 ms) equals the dataset size.\n\
- **grasp-sync re-sync**: the same daemon restarted on its full data directory with `sync-state.json` deleted (a fresh start, as the daily reconciliation does); done when every relay's `ngit_sync_relay_connected` is 3.\n\
- **nostr-sdk initial / re-sync**: `nostr-sdk` 0.44 `Client::sync` (negentropy) into `nostr-lmdb`, layer by layer with the engine's filters (L1 kinds 30617/30618; L2 `#a`/`#A`/`#q` with the repository addresses; L3 `#e`/`#E`/`#q` with the root ids, 100 per filter), one sync at a time; done when every event is in the database (a sync can return before the events it found are stored). Re-sync: the same again into the same database.\n\n\
Columns:\n\n\
- **complete**: runs that stored every event (re-sync: reached Connected) within the timeout.\n\
- **time s**: wall time from process start until done (median over runs).\n\
- **→ Connected s**: daemon: until every relay shows Connected (3), which includes the SPEC's settle window (batch window + 1 s = 6 s of quiet); nostr-sdk: same as time.\n\
- **events/s**: dataset events / time.\n\
- **MB received / sent**: WebSocket payload bytes relay → client / client → relay, counted by the proxy until done.\n\
- **peak RSS MiB**: `VmHWM` of the contender's process, read just before it is stopped; it includes the pages of the memory-mapped LMDB store that were touched.\n\
- **peak anon MiB**: the largest `RssAnon` (heap, stacks: no file pages) seen while sampling the process every 100 ms.\n\
- **CPU %**: (utime + stime) / wall time until done; 100 % = one core.\n\
- **refused**: REQs and NEG-OPENs the proxy refused for exceeding its limits.\n\
- **time vs nostr-sdk**: time / nostr-sdk's time for the same kind of sync (below 1 is faster).\n\
- **rate vs floor**: events/s / the floor's events/s.\n\n\
Caveats: the machine may be shared (other builds and tests running), so single runs vary; use the medians. The relay is\n\
`nostr-relay-builder` over its in-memory database, which serves one connection's messages one at a time and answers an L3\n\
NEG-OPEN (100 root ids) by scanning: at 100k events that is ~80 ms per session, so the re-syncs and the tail of the\n\
initial sync (→ Connected) are bound by the relay, equally for every contender. Both contenders store into LMDB on the\n\
same disk; nostr-sdk commits one event per transaction.\n\n"
    )
}

/// Replaces (or appends) the section in `path`, creating the file with a header.
pub fn write_section(path: &Path, section: &str, machine: &str, limits: &str) -> Result<(), String> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => header(machine, limits),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let out = replace_section(&existing, section);
    std::fs::write(path, out).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn replace_section(doc: &str, section: &str) -> String {
    let heading = section.lines().next().unwrap_or_default();
    let lines: Vec<&str> = doc.lines().collect();
    let section = section.trim_end();
    match lines.iter().position(|l| l.trim_end() == heading) {
        Some(start) => {
            let end = lines[start + 1..].iter().position(|l| l.starts_with("## ")).map(|p| start + 1 + p).unwrap_or(lines.len());
            let mut out = lines[..start].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(section);
            out.push_str("\n\n");
            if end < lines.len() {
                out.push_str(&lines[end..].join("\n"));
                out.push('\n');
            }
            out.trim_end().to_string() + "\n"
        }
        None => format!("{}\n\n{section}\n", doc.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_or_appended() {
        let doc = "# h\n\ntext\n\n## 1000 events\n\nold\n\n## 10000 events\n\nkeep\n";
        let out = replace_section(doc, "## 1000 events\n\nnew\n");
        assert_eq!(out, "# h\n\ntext\n\n## 1000 events\n\nnew\n\n## 10000 events\n\nkeep\n");
        let out = replace_section(&out, "## 100000 events\n\nbig\n");
        assert!(out.ends_with("## 10000 events\n\nkeep\n\n## 100000 events\n\nbig\n"));
        let out2 = replace_section(&out, "## 10000 events\n\nnewer\n");
        assert!(out2.contains("## 10000 events\n\nnewer\n\n## 100000 events"));
        assert!(!out2.contains("keep"));
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
