//! Relays for the browser end-to-end test (`web-demo/tests/e2e.mjs`).
//!
//! Starts, on 127.0.0.1, `nostr-relay-builder` relays (which speak NIP-77)
//! and a small proxy that answers `NEG-OPEN` with a `NOTICE` (a REQ-only
//! relay, as many public relays are), and loads NIP-34 datasets:
//! - `solo`: one NIP-77 relay carrying a repository and all its events;
//! - `pair`: a repository whose events are split over a NIP-77 relay and the
//!   REQ-only relay (some on one, some on the other, some on both, an older
//!   announcement version, noise, and a thread longer than a REQ page with
//!   several events per second).
//!
//! Prints one JSON line with the URLs and the exact ids a client interested
//! in each repository must store, then serves commands on stdin:
//! `live` publishes a new issue for `solo` to the live subscribers of its
//! relay and prints `{"live": "<id>"}`; `bulk <n>` starts one more NIP-77
//! relay holding a repository with `n` events in all (a tenth of them issues,
//! the rest comments on them) and prints `{"bulk": {"relay", "repository",
//! "count"}}`. Exits when stdin closes.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use nostr::{Event, EventBuilder, Keys, Kind, Tag, Timestamp};
use nostr_database::{MemoryDatabase, MemoryDatabaseOptions, NostrDatabase};
use nostr_relay_builder::prelude::{LocalRelay, RateLimit, RelayBuilder};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn tag(parts: &[&str]) -> Tag {
    Tag::parse(parts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("static tag")
}

fn sign(keys: &Keys, kind: u16, content: &str, tags: Vec<Tag>, at: u64) -> Event {
    EventBuilder::new(Kind::Custom(kind), content).tags(tags).custom_created_at(Timestamp::from(at)).sign_with_keys(keys).expect("sign")
}

/// A relay-builder relay with its database (to load events directly,
/// bypassing the relay's write rate limit).
struct TestRelay {
    relay: LocalRelay,
    db: Arc<MemoryDatabase>,
    url: String,
}

async fn start_relay() -> Result<TestRelay> {
    let db = Arc::new(MemoryDatabase::with_opts(MemoryDatabaseOptions { events: true, max_events: None }));
    let builder = RelayBuilder::default()
        .addr("127.0.0.1".parse()?)
        .database(Arc::clone(&db))
        .rate_limit(RateLimit { max_reqs: 10_000, notes_per_minute: 100_000 });
    let relay = LocalRelay::new(builder);
    relay.run().await?;
    let url = relay.url().await.to_string().trim_end_matches('/').to_string();
    Ok(TestRelay { relay, db, url })
}

/// Accepts WebSocket clients on 127.0.0.1 and forwards them to `upstream`,
/// except that `NEG-OPEN` is answered with a `NOTICE` and other negentropy
/// frames are dropped. Returns the proxy URL.
async fn start_req_only_proxy(upstream: String) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Err(e) = proxy_connection(tcp, &upstream).await {
                    eprintln!("proxy connection ended: {e}");
                }
            });
        }
    });
    Ok(format!("ws://{addr}"))
}

async fn proxy_connection(tcp: TcpStream, upstream: &str) -> Result<()> {
    let client = tokio_tungstenite::accept_async(tcp).await?;
    let (server, _) = tokio_tungstenite::connect_async(upstream).await?;
    let (mut client_tx, mut client_rx) = client.split();
    let (mut server_tx, mut server_rx) = server.split();
    let (to_client, mut to_client_rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let notices = to_client.clone();
    let up = async move {
        while let Some(msg) = client_rx.next().await {
            let msg = msg?;
            if let Message::Text(text) = &msg {
                let t = text.as_str().trim_start();
                if t.starts_with("[\"NEG-OPEN\"") {
                    let _ = notices.send(Message::text(r#"["NOTICE","negentropy is not supported by this relay"]"#));
                    continue;
                }
                if t.starts_with("[\"NEG-") {
                    continue;
                }
            }
            if msg.is_close() {
                break;
            }
            server_tx.send(msg).await?;
        }
        Result::Ok(())
    };
    let down = async move {
        while let Some(msg) = server_rx.next().await {
            let msg = msg?;
            if to_client.send(msg).is_err() {
                break;
            }
        }
        Result::Ok(())
    };
    let write = async move {
        while let Some(msg) = to_client_rx.recv().await {
            client_tx.send(msg).await?;
        }
        Result::Ok(())
    };
    tokio::select! {
        r = up => r,
        r = down => r,
        r = write => r,
    }
}

/// The dataset and what a client interested in `alpha` must end up with.
struct Dataset {
    on_nip77: Vec<Event>,
    on_req_only: Vec<Event>,
    /// Exactly what a client interested in the repository must store.
    expected: Vec<Event>,
    repository: String,
    roots: usize,
}

/// A repository `d` announced with `relays` = [nip77, req_only], its events
/// split over the two relays. Passing the same URL twice puts everything on
/// one relay.
fn dataset(nip77: &str, req_only: &str, d: &str) -> Dataset {
    let owner = Keys::parse("7f1c1e7d3e5a4b2c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c").expect("key");
    let other = Keys::parse("1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809").expect("key");
    let contributor = Keys::parse("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0").expect("key");
    let base = 1_700_000_000u64;
    let mut on_nip77 = Vec::new();
    let mut on_req_only = Vec::new();
    let mut expected = Vec::new();

    // the wanted repository, announced on both relays; an older version only on the REQ-only relay
    let relays_tag = ["relays", nip77, req_only];
    let alpha_old = sign(&owner, 30617, "", vec![tag(&["d", d]), tag(&["name", &format!("{d} (old)")]), tag(&relays_tag)], base);
    let alpha = sign(
        &owner,
        30617,
        "",
        vec![tag(&["d", d]), tag(&["name", d]), tag(&["description", "the wanted repository"]), tag(&relays_tag)],
        base + 10,
    );
    let addr = format!("30617:{}:{d}", owner.public_key().to_hex());
    on_req_only.push(alpha_old);
    on_nip77.push(alpha.clone());
    on_req_only.push(alpha.clone());
    expected.push(alpha);
    let state = sign(&owner, 30618, "", vec![tag(&["d", d]), tag(&["HEAD", "ref: refs/heads/main"])], base + 11);
    on_nip77.push(state.clone());
    expected.push(state);

    // roots: issues on the NIP-77 relay, patches on the REQ-only relay, a PR on both
    let mut roots = Vec::new();
    for i in 0..3 {
        let e = sign(
            &contributor,
            1621,
            &format!("issue {i}"),
            vec![tag(&["a", &addr]), tag(&["subject", &format!("issue {i}")])],
            base + 100 + i,
        );
        on_nip77.push(e.clone());
        roots.push(e);
    }
    for i in 0..2 {
        let e = sign(&contributor, 1617, &format!("patch {i}"), vec![tag(&["a", &addr])], base + 200 + i);
        on_req_only.push(e.clone());
        roots.push(e);
    }
    let pr = sign(&contributor, 1618, "pr", vec![tag(&["a", &addr]), tag(&["subject", "a PR"])], base + 300);
    on_nip77.push(pr.clone());
    on_req_only.push(pr.clone());
    roots.push(pr);
    expected.extend(roots.iter().cloned());

    // thread events: comments (E), statuses (e); the REQ-only relay carries a
    // long thread (more than a page) with several events per second
    for (n, root) in roots.iter().enumerate() {
        let id = root.id.to_hex();
        let comment = sign(
            &owner,
            1111,
            &format!("comment on root {n}"),
            vec![tag(&["E", &id]), tag(&["K", &root.kind.as_u16().to_string()])],
            base + 400 + n as u64,
        );
        let status = sign(&owner, 1630, "open", vec![tag(&["e", &id, "", "root"]), tag(&["a", &addr])], base + 500 + n as u64);
        on_nip77.push(comment.clone());
        on_req_only.push(status.clone());
        expected.push(comment);
        expected.push(status);
    }
    let long_root = roots[0].id.to_hex();
    for i in 0..160u64 {
        let e = sign(&contributor, 1111, &format!("reply {i}"), vec![tag(&["E", &long_root])], base + 1000 + i / 3);
        on_req_only.push(e.clone());
        expected.push(e);
    }

    // noise: another repository, its issue, unrelated notes and comments
    let beta = sign(&other, 30617, "", vec![tag(&["d", "beta"]), tag(&["name", "beta"]), tag(&relays_tag)], base + 20);
    let beta_addr = format!("30617:{}:beta", other.public_key().to_hex());
    let beta_issue = sign(&other, 1621, "beta issue", vec![tag(&["a", &beta_addr])], base + 120);
    let beta_comment = sign(&other, 1111, "beta comment", vec![tag(&["E", &beta_issue.id.to_hex()])], base + 130);
    on_nip77.extend([beta.clone(), beta_issue.clone(), beta_comment.clone()]);
    on_req_only.extend([beta, beta_issue, beta_comment]);
    for i in 0..5 {
        on_nip77.push(sign(&other, 1, &format!("note {i}"), vec![], base + 50 + i));
    }

    Dataset { on_nip77, on_req_only, expected, repository: addr, roots: roots.len() }
}

/// A repository announced on `relay` with `n` events in all: the
/// announcement, issues (a tenth) and comments spread over them. Timestamps
/// are spread over days, several per second, like a busy project's history.
fn bulk_dataset(relay: &str, n: usize) -> (Vec<Event>, String) {
    let owner = Keys::generate();
    let contributors: Vec<Keys> = (0..8).map(|_| Keys::generate()).collect();
    let base = 1_700_000_000u64;
    let announcement = sign(&owner, 30617, "", vec![tag(&["d", "bulk"]), tag(&["name", "bulk"]), tag(&["relays", relay])], base);
    let addr = format!("30617:{}:bulk", owner.public_key().to_hex());
    let issues = (n / 10).max(1);
    let mut events = vec![announcement];
    let mut roots = Vec::with_capacity(issues);
    for i in 0..issues {
        let e = sign(
            &contributors[i % 8],
            1621,
            &format!("issue {i}"),
            vec![tag(&["a", &addr]), tag(&["subject", &format!("issue {i}")])],
            base + 10 + i as u64,
        );
        roots.push(e.id.to_hex());
        events.push(e);
    }
    for i in 0..n.saturating_sub(1 + issues) {
        let root = &roots[i % roots.len()];
        let e = sign(
            &contributors[(i + 3) % 8],
            1111,
            &format!("comment {i}"),
            vec![tag(&["E", root]), tag(&["K", "1621"])],
            base + 100_000 + i as u64 / 3,
        );
        events.push(e);
    }
    (events, addr)
}

async fn load(relay: &TestRelay, events: &[Event]) -> Result<()> {
    for e in events {
        relay.db.save_event(e).await?;
    }
    Ok(())
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.to_hex()).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    // scenario 1: one NIP-77 relay carrying everything about `solo`
    let a = start_relay().await?;
    let solo = dataset(&a.url, &a.url, "solo");
    load(&a, &solo.on_nip77).await?;
    load(&a, &solo.on_req_only).await?;
    // scenario 2: `alpha` split over a NIP-77 relay and a REQ-only relay
    let c = start_relay().await?;
    let b = start_relay().await?;
    let req_only = start_req_only_proxy(b.url.clone()).await?;
    let pair = dataset(&c.url, &req_only, "alpha");
    load(&c, &pair.on_nip77).await?;
    load(&b, &pair.on_req_only).await?;
    let info = serde_json::json!({
        "solo": { "relay": a.url, "repository": solo.repository, "roots": solo.roots, "expectedIds": ids(&solo.expected) },
        "pair": { "nip77": c.url, "reqOnly": req_only, "repository": pair.repository, "roots": pair.roots, "expectedIds": ids(&pair.expected) },
    });
    println!("{info}");

    let contributor = Keys::parse("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0")?;
    // stdin is read on a plain thread (the workspace's tokio has no io-std)
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(std::result::Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut bulk = Vec::new();
    while let Some(line) = lines.recv().await {
        if line.trim() == "live" {
            let now = Timestamp::now().as_secs();
            let e = sign(&contributor, 1621, "a live issue", vec![tag(&["a", &solo.repository]), tag(&["subject", "live issue"])], now);
            a.db.save_event(&e).await?;
            a.relay.notify_event(e.clone());
            println!("{}", serde_json::json!({ "live": e.id.to_hex() }));
        } else if let Some(n) = line.trim().strip_prefix("bulk ").and_then(|n| n.parse::<usize>().ok()) {
            let relay = start_relay().await?;
            let (events, repository) = bulk_dataset(&relay.url, n.max(2));
            load(&relay, &events).await?;
            println!("{}", serde_json::json!({ "bulk": { "relay": relay.url, "repository": repository, "count": events.len() } }));
            bulk.push(relay);
        }
    }
    for r in [&a, &b, &c].into_iter().chain(bulk.iter()) {
        r.relay.shutdown();
    }
    Ok(())
}
