//! A real Prometheus server (the Debian package `prometheus`, installed by
//! `scripts/test-all`) as a child process, to scrape the daemon exactly as
//! operators do and to evaluate the shipped alert rules and dashboard queries.
//!
//! [`Prometheus::start`] writes a generated configuration into a temporary
//! directory, runs `prometheus` on a free port of 127.0.0.1 with its TSDB in
//! that directory, and waits for `/-/ready`. The HTTP API is read with a
//! minimal HTTP/1.0 GET (an HTTP/1.0 request makes Go's server send the body
//! unchunked and close the connection). The process is killed on drop; if
//! the test is failing at that point, the tail of its log is printed.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scrape job of the generated configuration.
#[derive(Clone, Debug)]
pub struct ScrapeJob {
    /// `job_name` (becomes the `job` label).
    pub job: String,
    /// `host:port` targets (each becomes an `instance` label).
    pub targets: Vec<String>,
    /// `metrics_path`.
    pub metrics_path: String,
}

/// What to run Prometheus with.
#[derive(Clone, Debug)]
pub struct PromOpts {
    /// `global.scrape_interval` (also the scrape timeout), e.g. `"1s"`.
    pub scrape_interval: String,
    /// `global.evaluation_interval`, e.g. `"1s"`.
    pub evaluation_interval: String,
    /// Scrape jobs.
    pub jobs: Vec<ScrapeJob>,
    /// Rule files (absolute paths, or relative to the current directory).
    pub rule_files: Vec<PathBuf>,
}

/// One element of an instant-vector answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Every label, `__name__` included when the result keeps it.
    pub labels: BTreeMap<String, String>,
    /// The sample value.
    pub value: f64,
}

impl Series {
    /// The value of label `name` ("" if absent).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    /// Its web/API port on 127.0.0.1.
    pub port: u16,
    /// Holds the configuration, the TSDB and the log.
    pub dir: tempfile::TempDir,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

/// Renders the configuration file for `opts`.
pub fn config_yaml(opts: &PromOpts) -> String {
    let mut y = String::new();
    y.push_str("global:\n");
    y.push_str(&format!("  scrape_interval: {}\n", opts.scrape_interval));
    y.push_str(&format!("  scrape_timeout: {}\n", opts.scrape_interval));
    y.push_str(&format!("  evaluation_interval: {}\n", opts.evaluation_interval));
    if !opts.rule_files.is_empty() {
        y.push_str("rule_files:\n");
        for f in &opts.rule_files {
            y.push_str(&format!("  - {:?}\n", f.display().to_string()));
        }
    }
    y.push_str("scrape_configs:\n");
    for j in &opts.jobs {
        y.push_str(&format!("  - job_name: {:?}\n", j.job));
        y.push_str(&format!("    metrics_path: {:?}\n", j.metrics_path));
        y.push_str("    static_configs:\n      - targets:\n");
        for t in &j.targets {
            y.push_str(&format!("          - {t:?}\n"));
        }
    }
    y
}

/// Fails with a clear message unless `prometheus` is on PATH.
pub fn require_installed() {
    let found = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join("prometheus").is_file())).unwrap_or(false);
    assert!(
        found,
        "`prometheus` is not on PATH: this test runs a real Prometheus server. Install the Debian package \
         (`apt-get install -y --no-install-recommends prometheus`, as scripts/test-all does)"
    );
}

impl Prometheus {
    /// Writes the configuration, starts the server and waits until `/-/ready`
    /// answers 200 (panics with the log after 30 s, or if it exits).
    pub async fn start(opts: &PromOpts) -> Prometheus {
        require_installed();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(opts)).expect("write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let port = crate::free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--log.level=info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawning prometheus");
        let mut p = Prometheus { child, port, dir, log };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited with {status} before it was ready\n{}", p.log_text());
            }
            if matches!(get(port, "/-/ready").await, Ok((200, _))) {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!("prometheus not ready after 30 s\n{}", p.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p
    }

    /// The configuration file it runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.yml")
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_text(), n)
    }

    /// `GET path` on the API: the parsed `data` of a `"status":"success"` answer.
    pub async fn api(&self, path: &str) -> Result<Value, String> {
        let (code, body) = get(self.port, path).await?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("GET {path}: HTTP {code}, not JSON ({e}): {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("GET {path}: HTTP {code}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query (`/api/v1/query`) evaluated now. A scalar answer is one unlabelled series.
    pub async fn query(&self, expr: &str) -> Result<Vec<Series>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", percent_encode(expr))).await?;
        let result = &data["result"];
        match data["resultType"].as_str() {
            Some("vector") => result
                .as_array()
                .ok_or_else(|| format!("{expr}: no result array: {data}"))?
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                        .unwrap_or_default();
                    Ok(Series { labels, value: sample_value(&s["value"]).ok_or_else(|| format!("{expr}: bad sample {s}"))? })
                })
                .collect(),
            Some("scalar") => Ok(vec![Series {
                labels: BTreeMap::new(),
                value: sample_value(result).ok_or_else(|| format!("{expr}: bad scalar {data}"))?,
            }]),
            other => Err(format!("{expr}: unexpected result type {other:?}: {data}")),
        }
    }

    /// `/api/v1/rules`: the rule groups.
    pub async fn rules(&self) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/rules").await?;
        data["groups"].as_array().cloned().ok_or_else(|| format!("no groups: {data}"))
    }

    /// `/api/v1/alerts`: the active (pending or firing) alerts.
    pub async fn alerts(&self) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/alerts").await?;
        data["alerts"].as_array().cloned().ok_or_else(|| format!("no alerts array: {data}"))
    }

    /// `/api/v1/targets`: the active targets (for failure context).
    pub async fn targets(&self) -> Result<Value, String> {
        self.api("/api/v1/targets").await
    }

    /// `/api/v1/label/<label>/values?match[]=<selector>`.
    pub async fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>, String> {
        let data = self.api(&format!("/api/v1/label/{label}/values?{}={}", percent_encode("match[]"), percent_encode(selector))).await?;
        Ok(data.as_array().ok_or_else(|| format!("not a list: {data}"))?.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- prometheus log (last 40 lines of {}) ----\n{}", self.log.display(), self.log_tail(40));
            eprintln!("---- prometheus config ----\n{}", std::fs::read_to_string(self.config_path()).unwrap_or_default());
        }
    }
}

/// `[<unix time>, "<value>"]` → the value.
fn sample_value(v: &Value) -> Option<f64> {
    match v[1].as_str()? {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        s => s.parse().ok(),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for query strings).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET path` on 127.0.0.1:`port` over HTTP/1.0: (status code, body).
pub async fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("bad status line")?;
        Ok((code, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.map_err(|_| format!("GET {path}: timed out"))?
}

/// A copy of an alert rules file for tests: every `for:` becomes `for_`,
/// every group name and alert name gets `suffix`, so the copy loads beside
/// the original and its alerts are told apart. Panics if the file has no
/// group, no alert, or an alert without `for:` (the rewrite would be vacuous).
pub fn shortened_rules(original: &str, for_: &str, suffix: &str) -> String {
    let (mut groups, mut alerts, mut fors) = (0, 0, 0);
    let mut out = String::new();
    for line in original.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(name) = trimmed.strip_prefix("- name:") {
            groups += 1;
            out.push_str(&format!("{indent}- name: {}{suffix}\n", name.trim()));
        } else if let Some(name) = trimmed.strip_prefix("- alert:") {
            alerts += 1;
            out.push_str(&format!("{indent}- alert: {}{suffix}\n", name.trim()));
        } else if trimmed.starts_with("for:") {
            fors += 1;
            out.push_str(&format!("{indent}for: {for_}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(groups > 0 && alerts > 0 && fors == alerts, "unexpected rules file layout: {groups} groups, {alerts} alerts, {fors} `for:`");
    out
}

/// Reads a file of the workspace's `deploy/` directory.
pub fn deploy_file(name: &str) -> (PathBuf, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("deploy").join(name);
    let p = p.canonicalize().unwrap_or(p);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, text)
}
