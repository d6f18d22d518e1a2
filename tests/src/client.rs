//! A minimal nostr client (REQ…EOSE, EVENT…OK) and HTTP GET, to observe the
//! daemon from outside exactly as operators and downstream clients do.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nostr::{ClientMessage, Event, Filter, JsonUtil, RelayMessage, SubscriptionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Every stored event matching `filter` (REQ until EOSE).
pub async fn query(url: &str, filter: Filter) -> Result<Vec<Event>, String> {
    let fut = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("connect {url}: {e}"))?;
        let sub = SubscriptionId::new("q");
        ws.send(Message::text(ClientMessage::req(sub.clone(), vec![filter]).as_json())).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(m) = ws.next().await {
            let Message::Text(t) = m.map_err(|e| e.to_string())? else { continue };
            match RelayMessage::from_json(t.as_str()) {
                Ok(RelayMessage::Event { event, .. }) => out.push(event.into_owned()),
                Ok(RelayMessage::EndOfStoredEvents(_)) => return Ok(out),
                Ok(RelayMessage::Closed { message, .. }) => return Err(format!("closed: {message}")),
                _ => {}
            }
        }
        Err("connection ended before EOSE".to_string())
    };
    tokio::time::timeout(Duration::from_secs(15), fut).await.map_err(|_| format!("query {url} timed out"))?
}

/// Every event matching `filter`, paging down with `until` (relays clamp
/// `limit`, the served relay to 500 by default); ids are deduplicated.
pub async fn query_all(url: &str, filter: Filter) -> Result<Vec<Event>, String> {
    let mut out: Vec<Event> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut until = filter.until;
    loop {
        let mut f = filter.clone();
        f.until = until;
        let page = query(url, f).await?;
        let oldest = page.iter().map(|e| e.created_at).min();
        let mut new = 0;
        for e in page {
            if ids.insert(e.id) {
                out.push(e);
                new += 1;
            }
        }
        match oldest {
            // `until` is inclusive: the oldest second is asked again; a page
            // with nothing new means everything at or below it was seen
            Some(o) if new > 0 => until = Some(o),
            Some(o) if o.as_secs() > 0 && until != Some(nostr::Timestamp::from(o.as_secs() - 1)) => {
                until = Some(nostr::Timestamp::from(o.as_secs() - 1))
            }
            _ => return Ok(out),
        }
    }
}

/// Publishes `event`; returns the relay's `OK` status and message.
pub async fn publish(url: &str, event: &Event) -> Result<(bool, String), String> {
    let fut = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("connect {url}: {e}"))?;
        ws.send(Message::text(ClientMessage::event(event.clone()).as_json())).await.map_err(|e| e.to_string())?;
        while let Some(m) = ws.next().await {
            let Message::Text(t) = m.map_err(|e| e.to_string())? else { continue };
            if let Ok(RelayMessage::Ok { event_id, status, message }) = RelayMessage::from_json(t.as_str()) {
                if event_id == event.id {
                    return Ok((status, message.into_owned()));
                }
            }
        }
        Err("connection ended before OK".to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.map_err(|_| "publish timed out".to_string())?
}

/// Sends raw frames and returns the first answer (for protocol probes).
pub async fn first_answer(url: &str, frame: &str) -> Result<String, String> {
    let fut = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("connect {url}: {e}"))?;
        ws.send(Message::text(frame)).await.map_err(|e| e.to_string())?;
        while let Some(m) = ws.next().await {
            if let Message::Text(t) = m.map_err(|e| e.to_string())? {
                return Ok(t.to_string());
            }
        }
        Err("no answer".to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.map_err(|_| "probe timed out".to_string())?
}

/// `GET path` on 127.0.0.1:`port`: (status code, body).
pub async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.map_err(|e| e.to_string())?;
        let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("bad status line")?;
        Ok((code, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(5), fut).await.map_err(|_| "http timed out".to_string())?
}

/// The value of the sample `name{labels}` in a Prometheus text scrape.
pub fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in scrape.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (n, rest) = series.split_once('{').map(|(n, r)| (n, r.trim_end_matches('}'))).unwrap_or((series, ""));
        if n != name {
            continue;
        }
        let mut got: Vec<(String, String)> = Vec::new();
        for pair in rest.split("\",").filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once("=\"") {
                got.push((k.to_string(), v.trim_end_matches('"').to_string()));
            }
        }
        if got.len() == labels.len() && labels.iter().all(|(k, v)| got.iter().any(|(gk, gv)| gk == k && gv == v)) {
            return value.parse().ok();
        }
    }
    None
}
