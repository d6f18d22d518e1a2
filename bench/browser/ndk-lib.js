// The NDK side's payload: what an app syncing NIP-34 events into IndexedDB
// with NDK ships. Bundled (minified) by run.mjs into dist/ndk.js.
export { default as NDK } from '@nostr-dev-kit/ndk';
export { default as NDKCacheAdapterDexie } from '@nostr-dev-kit/ndk-cache-dexie';
export { NDKSync } from '@nostr-dev-kit/sync';
