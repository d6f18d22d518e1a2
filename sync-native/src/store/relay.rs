//! Store mode "write into an existing relay" (an operator's GRASP relay):
//! events are published with `EVENT` and the relay's `OK` decides the
//! outcome — `OK true` is saved, a `duplicate:` prefix is a duplicate, a
//! `rate-limited:` answer fails the batch (the engine retries it), an
//! `error:` answer (the relay's own failure) is asked again twice within the
//! save: when every event of the batch still fails the batch fails (the
//! store is down: retried with backoff, `/health` 503), otherwise those
//! events are rejected with the relay's reason (some relays answer `error:`
//! for stale replaceable events). Any other `OK false` is a rejection. Queries
//! and negentropy items are answered with `REQ` … `EOSE`. The sync state
//! stays in a file in the data directory.
//!
//! The driver awaits store calls one at a time, so one connection carries
//! one request at a time; it is reopened after any failure.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_wsocket::{ConnectionMode, Message, Url, WebSocket};
use futures::future::LocalBoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use nostr::message::MachineReadablePrefix;
use nostr::{ClientMessage, Event, EventId, Filter, JsonUtil, RelayMessage, SubscriptionId};
use sync_core::{nip01, EventStore, NegentropyItem, SaveOutcome, StoreError};
use tokio::sync::Mutex;

use super::state_file::StateFile;
use super::OpenError;

/// How long to wait for a downstream relay's answers before failing the call.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Events and queries go to a relay; state to a file.
pub struct RelayStore {
    url: Url,
    socket: Mutex<Option<WebSocket>>,
    state: StateFile,
}

impl RelayStore {
    /// A store writing to `url`, keeping its state file in `data_dir`.
    pub fn new(url: Url, data_dir: &Path) -> Result<Self, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OpenError::DataDir { path: data_dir.display().to_string(), source })?;
        Ok(Self { url, socket: Mutex::new(None), state: StateFile::new(data_dir) })
    }

    async fn with_socket<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'s> FnOnce(&'s mut WebSocket) -> LocalBoxFuture<'s, Result<T, StoreError>>,
    {
        let mut guard = self.socket.lock().await;
        if guard.is_none() {
            let ws = async_wsocket::connect(&self.url, &ConnectionMode::Direct, Duration::from_secs(10))
                .await
                .map_err(|e| StoreError(format!("store relay {}: {e}", self.url)))?;
            *guard = Some(ws);
        }
        let ws = guard.as_mut().ok_or_else(|| StoreError("store relay not connected".into()))?;
        let result = tokio::time::timeout(ANSWER_TIMEOUT, op(ws))
            .await
            .unwrap_or_else(|_| Err(StoreError(format!("store relay {} did not answer in time", self.url))));
        if result.is_err() {
            *guard = None; // reconnect next time
        }
        result
    }

    /// Publishes `events` and collects one `OK` outcome per id.
    async fn publish(&self, events: Vec<Event>) -> Result<HashMap<EventId, SaveOutcome>, StoreError> {
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        self.with_socket(move |ws| {
            async move {
                for event in events {
                    send(ws, ClientMessage::event(event).as_json()).await?;
                }
                let mut answers: HashMap<EventId, SaveOutcome> = HashMap::new();
                while answers.len() < ids.len() {
                    let text = next_text(ws).await?;
                    if let Ok(RelayMessage::Ok { event_id, status, message }) = RelayMessage::from_json(&text) {
                        if ids.contains(&event_id) {
                            answers.insert(event_id, ok_outcome(status, &message)?);
                        }
                    }
                }
                Ok(answers)
            }
            .boxed_local()
        })
        .await
    }

    /// Among events answered `error:`: those the relay holds now (`Saved`:
    /// it did not hold them before this save) or holds a newer version of
    /// (`Stale`).
    async fn settled_elsewhere(&self, events: &[&Event]) -> Result<Vec<(EventId, SaveOutcome)>, StoreError> {
        let held: std::collections::HashSet<EventId> =
            self.req(Filter::new().ids(events.iter().map(|e| e.id))).await?.into_iter().map(|e| e.id).collect();
        let mut out = Vec::new();
        for event in events {
            if held.contains(&event.id) {
                // not held before this save published it (see `save`)
                out.push((event.id, SaveOutcome::Saved));
                continue;
            }
            let kind = event.kind;
            if !(kind.is_replaceable() || kind.is_addressable()) {
                continue;
            }
            let mut f = Filter::new().kind(kind).author(event.pubkey).limit(1);
            if kind.is_addressable() {
                let d = event.tags.identifier().unwrap_or_default().to_string();
                f = f.identifier(d);
            }
            let newest = self.req(f).await?.into_iter().next();
            let supersedes = |n: &Event| nip01::replaces(n.created_at.as_secs(), &n.id, event.created_at.as_secs(), &event.id);
            if newest.as_ref().is_some_and(supersedes) {
                out.push((event.id, SaveOutcome::Stale));
            }
        }
        Ok(out)
    }

    async fn req(&self, filter: Filter) -> Result<Vec<Event>, StoreError> {
        self.with_socket(|ws| {
            async move {
                let sub = SubscriptionId::generate();
                send(ws, ClientMessage::req(sub.clone(), vec![filter]).as_json()).await?;
                let mut out = Vec::new();
                loop {
                    let text = next_text(ws).await?;
                    match RelayMessage::from_json(&text) {
                        Ok(RelayMessage::Event { subscription_id, event }) if *subscription_id == sub => out.push(event.into_owned()),
                        Ok(RelayMessage::EndOfStoredEvents(id)) if *id == sub => break,
                        Ok(RelayMessage::Closed { subscription_id, message }) if *subscription_id == sub => {
                            return Err(StoreError(format!("store relay closed the query: {message}")))
                        }
                        _ => {}
                    }
                }
                send(ws, ClientMessage::close(sub).as_json()).await?;
                Ok(out)
            }
            .boxed_local()
        })
        .await
    }
}

async fn send(ws: &mut WebSocket, text: String) -> Result<(), StoreError> {
    ws.send(Message::Text(text)).await.map_err(|e| StoreError(format!("store relay send: {e}")))
}

async fn next_text(ws: &mut WebSocket) -> Result<String, StoreError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Close(_))) | None => return Err(StoreError("store relay closed the connection".into())),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(StoreError(format!("store relay: {e}"))),
        }
    }
}

/// Maps one `OK` answer. `Err` means "try the batch again later".
pub fn ok_outcome(status: bool, message: &str) -> Result<SaveOutcome, StoreError> {
    let m = message.trim();
    let prefix = MachineReadablePrefix::parse(m);
    if prefix == Some(MachineReadablePrefix::Duplicate) {
        return Ok(SaveOutcome::Duplicate);
    }
    if status {
        return Ok(SaveOutcome::Saved);
    }
    if prefix == Some(MachineReadablePrefix::RateLimited) {
        return Err(StoreError(format!("store relay answered {m}")));
    }
    Ok(SaveOutcome::Rejected(if m.is_empty() { "rejected".to_string() } else { m.to_string() }))
}

/// NIP-01 `error:`: the relay failed, not the event; asked again.
fn is_transient(outcome: &SaveOutcome) -> bool {
    matches!(outcome, SaveOutcome::Rejected(m) if MachineReadablePrefix::parse(m) == Some(MachineReadablePrefix::Error))
}

/// Pauses before asking again the events a store relay answered `error:`.
const ERROR_RETRIES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

impl EventStore for RelayStore {
    fn save(&self, events: Vec<Event>) -> LocalBoxFuture<'_, Result<Vec<SaveOutcome>, StoreError>> {
        async move {
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
            // What the relay holds already is a duplicate, not published again;
            // what it holds after an `error:` answer is then ours.
            let held: std::collections::HashSet<EventId> =
                self.req(Filter::new().ids(ids.iter().copied())).await?.into_iter().map(|e| e.id).collect();
            let mut answers: HashMap<EventId, SaveOutcome> = held.iter().map(|id| (*id, SaveOutcome::Duplicate)).collect();
            let events: Vec<Event> = events.into_iter().filter(|e| !held.contains(&e.id)).collect();
            if !events.is_empty() {
                answers.extend(self.publish(events.clone()).await?);
            }
            for pause in ERROR_RETRIES {
                let again: Vec<Event> = events.iter().filter(|e| answers.get(&e.id).is_some_and(is_transient)).cloned().collect();
                if again.is_empty() {
                    break;
                }
                tokio::time::sleep(pause).await;
                answers.extend(self.publish(again).await?);
            }
            let failed: Vec<&Event> = events.iter().filter(|e| answers.get(&e.id).is_some_and(is_transient)).collect();
            if !failed.is_empty() {
                // Some relays (nostr-relay-builder) answer `error:` for a
                // duplicate or a stale replaceable event: ask the relay.
                for (id, outcome) in self.settled_elsewhere(&failed).await? {
                    answers.insert(id, outcome);
                }
                if let Some(SaveOutcome::Rejected(m)) = answers.values().find(|o| is_transient(o)) {
                    return Err(StoreError(format!("store relay answered {m}")));
                }
            }
            Ok(ids.iter().map(|id| answers.remove(id).unwrap_or(SaveOutcome::Duplicate)).collect())
        }
        .boxed_local()
    }

    fn negentropy_items(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<NegentropyItem>, StoreError>> {
        // A relay may cap un-limited REQs; fewer local items only make the
        // engine fetch events the relay already has (answered `duplicate:`).
        async move { Ok(self.req(filter).await?.into_iter().map(|e| (e.id, e.created_at)).collect()) }.boxed_local()
    }

    fn query(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<Event>, StoreError>> {
        async move { self.req(filter).await }.boxed_local()
    }

    fn load_state(&self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let file = self.state.clone();
        async move {
            tokio::task::spawn_blocking(move || file.load_usable())
                .await
                .map_err(|e| StoreError(e.to_string()))?
                .map_err(|e| StoreError(e.to_string()))
        }
        .boxed_local()
    }

    fn save_state(&self, state: Vec<u8>) -> LocalBoxFuture<'_, Result<(), StoreError>> {
        let file = self.state.clone();
        async move {
            tokio::task::spawn_blocking(move || file.store(&state))
                .await
                .map_err(|e| StoreError(e.to_string()))?
                .map_err(|e| StoreError(e.to_string()))
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_answers_map_to_outcomes() {
        assert_eq!(ok_outcome(true, "").unwrap(), SaveOutcome::Saved);
        assert_eq!(ok_outcome(true, "duplicate: already have this event").unwrap(), SaveOutcome::Duplicate);
        assert_eq!(ok_outcome(false, "duplicate: seen").unwrap(), SaveOutcome::Duplicate);
        assert_eq!(ok_outcome(false, "blocked: not on my watch").unwrap(), SaveOutcome::Rejected("blocked: not on my watch".into()));
        assert!(ok_outcome(false, "rate-limited: slow down").is_err());
        assert!(is_transient(&ok_outcome(false, "error: could not connect to the database").unwrap()));
        assert!(!is_transient(&ok_outcome(false, "invalid: bad signature").unwrap()));
    }
}
