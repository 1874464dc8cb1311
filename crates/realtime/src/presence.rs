use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::UserId;

/// Who is online: users with at least one live WebSocket connection.
#[derive(Clone, Default)]
pub struct Presence {
    local: Arc<Mutex<HashMap<UserId, usize>>>,
}

impl Presence {
    pub fn is_online(&self, user: UserId) -> bool {
        self.local.lock().is_ok_and(|m| m.contains_key(&user))
    }

    /// Counts a new connection; true when it is the user's first.
    pub fn connect(&self, user: UserId) -> bool {
        let Ok(mut map) = self.local.lock() else {
            return false;
        };
        let count = map.entry(user).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Counts a closed connection; true when it was the user's last.
    pub fn disconnect(&self, user: UserId) -> bool {
        let Ok(mut map) = self.local.lock() else {
            return false;
        };
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
}
