//! Who is online: users with at least one live WebSocket connection on any node.
//!
//! This node counts its own connections. Other nodes announce the users they hold every few
//! seconds (through the relay); an announcement older than [`REMOTE_TTL`] is forgotten, so
//! the users of a node that crashed go offline by themselves.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use domain::UserId;
use uuid::Uuid;

/// How long another node's announcement counts.
pub const REMOTE_TTL: Duration = Duration::from_secs(15);

/// Per other node: the users it last announced, and when.
type RemoteNodes = HashMap<Uuid, (HashSet<UserId>, Instant)>;

#[derive(Clone, Default)]
pub struct Presence {
    local: Arc<Mutex<HashMap<UserId, usize>>>,
    remote: Arc<Mutex<RemoteNodes>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Presence {
    pub fn is_online(&self, user: UserId) -> bool {
        lock(&self.local).contains_key(&user) || self.online_elsewhere(user)
    }

    /// Online through another node's connections.
    pub fn online_elsewhere(&self, user: UserId) -> bool {
        lock(&self.remote).values().any(|(users, seen)| seen.elapsed() < REMOTE_TTL && users.contains(&user))
    }

    /// Counts a new connection; true when it is the user's first on this node.
    pub fn connect(&self, user: UserId) -> bool {
        let mut map = lock(&self.local);
        let count = map.entry(user).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Counts a closed connection; true when it was the user's last on this node.
    pub fn disconnect(&self, user: UserId) -> bool {
        let mut map = lock(&self.local);
        match map.get_mut(&user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                map.remove(&user);
                true
            }
            None => false,
        }
    }

    /// The users this node holds, for the announcement to other nodes.
    pub fn local_users(&self) -> Vec<UserId> {
        lock(&self.local).keys().copied().collect()
    }

    /// Another node's announcement replaces what it said before.
    pub fn remote_snapshot(&self, node: Uuid, users: HashSet<UserId>) {
        let mut remote = lock(&self.remote);
        remote.retain(|_, (_, seen)| seen.elapsed() < REMOTE_TTL);
        remote.insert(node, (users, Instant::now()));
    }

    /// A user came online or went offline on another node, between announcements.
    pub fn remote_change(&self, node: Uuid, user: UserId, online: bool) {
        let mut remote = lock(&self.remote);
        let (users, seen) = remote.entry(node).or_insert_with(|| (HashSet::new(), Instant::now()));
        *seen = Instant::now();
        if online {
            users.insert(user);
        } else {
            users.remove(&user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_connections_per_user() {
        let presence = Presence::default();
        let user = UserId::new();
        assert!(presence.connect(user));
        assert!(!presence.connect(user));
        assert!(!presence.disconnect(user));
        assert!(presence.is_online(user));
        assert!(presence.disconnect(user));
        assert!(!presence.is_online(user));
    }

    #[test]
    fn other_nodes_count_until_their_word_expires() {
        let presence = Presence::default();
        let user = UserId::new();
        let node = Uuid::now_v7();
        presence.remote_snapshot(node, HashSet::from([user]));
        assert!(presence.is_online(user));
        presence.remote_change(node, user, false);
        assert!(!presence.is_online(user));
    }
}
