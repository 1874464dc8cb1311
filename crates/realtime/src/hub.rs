use crate::presence::Presence;

/// The channel hub: who is subscribed to which channel, and delivery of events to them.
#[derive(Clone, Default)]
pub struct Hub {
    presence: Presence,
}

impl Hub {
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    pub fn connection_count(&self) -> usize {
        0
    }
}
