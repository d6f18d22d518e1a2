//! Historic sync: one job per filter, by NIP-77 negentropy or by REQ+EOSE
//! `until` pagination, plus fetching the ids negentropy says we need.

pub mod fetch;
pub mod negentropy;
pub mod paginate;
