//! Store mode "write into an existing relay" (an operator's GRASP relay):
//! events are published with `EVENT` and the relay's `OK` decides the
//! outcome — `OK true` is saved, a `duplicate:` prefix is a duplicate, a
//! `rate-limited:` or `error:` answer (NIP-01: transient, "try again")
//! fails the batch (the engine retries it; an event that keeps failing
//! alone is quarantined) and any other `OK false` is a permanent rejection
//! with the relay's reason. Queries
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
use nostr::{ClientMessage, Event, EventId, Filter, JsonUtil, RelayMessage, SubscriptionId};
use sync_core::{EventStore, NegentropyItem, SaveOutcome, StoreError};
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
    if m.starts_with("duplicate:") {
        return Ok(SaveOutcome::Duplicate);
    }
    if status {
        return Ok(SaveOutcome::Saved);
    }
    if m.starts_with("rate-limited:") || m.starts_with("error:") {
        return Err(StoreError(format!("store relay answered {m}")));
    }
    Ok(SaveOutcome::Rejected(if m.is_empty() { "rejected".to_string() } else { m.to_string() }))
}

impl EventStore for RelayStore {
    fn save(&self, events: Vec<Event>) -> LocalBoxFuture<'_, Result<Vec<SaveOutcome>, StoreError>> {
        async move {
            if events.is_empty() {
                return Ok(Vec::new());
            }
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
                    Ok(ids.iter().map(|id| answers.remove(id).unwrap_or(SaveOutcome::Duplicate)).collect())
                }
                .boxed_local()
            })
            .await
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
        // NIP-01 `error:` is the relay's own failure, not a verdict on the event
        assert!(ok_outcome(false, "error: could not connect to the database").is_err());
        assert!(ok_outcome(false, "invalid: bad signature").is_ok());
    }
}
