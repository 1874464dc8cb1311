//! Who may do what in a channel: one function, [`authorize`], that every entry point asks,
//! so no endpoint can forget a ban or leak a private channel.

use crate::channel::ChannelKind;

/// The caller's standing in one channel, worked out from ownership, membership and bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Member,
    Banned,
    Outsider,
}

impl Role {
    /// A ban outranks everything else: a banned owner cannot exist (the owner cannot be
    /// banned), and a banned member has already been removed.
    pub fn from_facts(is_owner: bool, is_member: bool, is_banned: bool) -> Self {
        if is_banned {
            Self::Banned
        } else if is_owner && is_member {
            Self::Owner
        } else if is_member {
            Self::Member
        } else {
            Self::Outsider
        }
    }

    pub fn is_member(self) -> bool {
        matches!(self, Self::Owner | Self::Member)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See the channel, its members and its history; download its files.
    Read,
    /// Post messages, react, send typing, move the read marker.
    Post,
    Join,
    Leave,
    /// Add a user to a private channel.
    Invite,
    /// Ban, unban, list bans, rename, delete.
    Moderate,
}

/// Why an action is refused. `NotFound` hides the channel entirely (private channels and
/// DMs must never be confirmed to outsiders); `Forbidden` admits it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NotFound,
    Forbidden(&'static str),
    Conflict(&'static str),
}

/// Decides whether `role` may perform `action` in a channel of this kind and visibility.
///
/// ```
/// use domain::{authorize, Action, ChannelKind, Denied, Role};
/// assert_eq!(authorize(ChannelKind::Channel, false, Role::Outsider, Action::Read), Ok(()));
/// assert_eq!(authorize(ChannelKind::Channel, true, Role::Outsider, Action::Read), Err(Denied::NotFound));
/// ```
pub fn authorize(kind: ChannelKind, is_private: bool, role: Role, action: Action) -> Result<(), Denied> {
    let public = kind == ChannelKind::Channel && !is_private;

    // Visibility first: outsiders and banned users of private channels and DMs learn nothing.
    match role {
        Role::Banned if public => {
            return Err(Denied::Forbidden("you are banned from this channel"));
        }
        Role::Banned | Role::Outsider if !public => return Err(Denied::NotFound),
        _ => {}
    }

    match action {
        Action::Read => Ok(()),
        Action::Post => {
            if role.is_member() {
                Ok(())
            } else {
                Err(Denied::Forbidden("join the channel first"))
            }
        }
        Action::Join => match kind {
            ChannelKind::Dm => Err(Denied::Forbidden("direct messages cannot be joined")),
            // Only members can see a private channel at all, and for them joining is a no-op.
            ChannelKind::Channel => Ok(()),
        },
        Action::Leave => match (kind, role) {
            (ChannelKind::Dm, _) => Err(Denied::Forbidden("direct messages cannot be left")),
            (_, Role::Owner) => Err(Denied::Conflict("the owner cannot leave the channel")),
            (_, Role::Member) => Ok(()),
            _ => Err(Denied::Forbidden("you are not a member of this channel")),
        },
        Action::Invite => match (kind, role) {
            (ChannelKind::Dm, _) => Err(Denied::Forbidden("direct messages have no owner")),
            (_, Role::Owner) if is_private => Ok(()),
            (_, Role::Owner) => Err(Denied::Forbidden("public channels are joined, not invited to")),
            _ => Err(Denied::Forbidden("only the channel owner may do this")),
        },
        Action::Moderate => match (kind, role) {
            (ChannelKind::Dm, _) => Err(Denied::Forbidden("direct messages have no owner")),
            (_, Role::Owner) => Ok(()),
            _ => Err(Denied::Forbidden("only the channel owner may do this")),
        },
    }
}

/// The owner can never be banned; anyone else can, by the owner (checked by [`authorize`]).
pub fn may_ban(target_is_owner: bool) -> Result<(), Denied> {
    if target_is_owner { Err(Denied::Conflict("the channel owner cannot be banned")) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use ChannelKind::{Channel, Dm};
    use Role::*;

    const OK: Result<(), Denied> = Ok(());
    const NF: Result<(), Denied> = Err(Denied::NotFound);

    fn forbidden(r: Result<(), Denied>) -> bool {
        matches!(r, Err(Denied::Forbidden(_)))
    }

    #[test]
    fn public_channel_table() {
        let table = [(Owner, [OK, OK, OK]), (Member, [OK, OK, OK])];
        for (role, [read, post, join]) in table {
            assert_eq!(authorize(Channel, false, role, Read), read);
            assert_eq!(authorize(Channel, false, role, Post), post);
            assert_eq!(authorize(Channel, false, role, Join), join);
        }
        assert_eq!(authorize(Channel, false, Outsider, Read), OK);
        assert!(forbidden(authorize(Channel, false, Outsider, Post)));
        assert_eq!(authorize(Channel, false, Outsider, Join), OK);
        for action in [Read, Post, Join, Leave, Invite, Moderate] {
            assert!(forbidden(authorize(Channel, false, Banned, action)), "{action:?}");
        }
    }

    #[test]
    fn private_channel_hides_from_outsiders_and_banned() {
        for role in [Outsider, Banned] {
            for action in [Read, Post, Join, Leave, Invite, Moderate] {
                assert_eq!(authorize(Channel, true, role, action), NF, "{role:?} {action:?}");
            }
        }
        assert_eq!(authorize(Channel, true, Member, Read), OK);
        assert_eq!(authorize(Channel, true, Member, Post), OK);
        assert!(forbidden(authorize(Channel, true, Member, Invite)));
        assert_eq!(authorize(Channel, true, Owner, Invite), OK);
    }

    #[test]
    fn only_the_owner_moderates() {
        assert_eq!(authorize(Channel, false, Owner, Moderate), OK);
        assert!(forbidden(authorize(Channel, false, Member, Moderate)));
        assert!(forbidden(authorize(Channel, false, Outsider, Moderate)));
        assert!(forbidden(authorize(Channel, false, Owner, Invite)));
    }

    #[test]
    fn owner_cannot_leave_or_be_banned() {
        assert_eq!(
            authorize(Channel, false, Owner, Leave),
            Err(Denied::Conflict("the owner cannot leave the channel"))
        );
        assert!(matches!(may_ban(true), Err(Denied::Conflict(_))));
        assert_eq!(may_ban(false), OK);
        assert!(forbidden(authorize(Channel, false, Outsider, Leave)));
    }

    #[test]
    fn dms_have_no_owner_powers_and_no_joining() {
        for role in [Owner, Member] {
            assert_eq!(authorize(Dm, true, role, Read), OK);
            assert_eq!(authorize(Dm, true, role, Post), OK);
            for action in [Join, Leave, Invite, Moderate] {
                assert!(forbidden(authorize(Dm, true, role, action)), "{role:?} {action:?}");
            }
        }
        assert_eq!(authorize(Dm, true, Outsider, Read), NF);
        assert_eq!(authorize(Dm, false, Outsider, Join), NF);
    }

    #[test]
    fn roles_from_facts() {
        assert_eq!(Role::from_facts(true, true, false), Owner);
        assert_eq!(Role::from_facts(false, true, false), Member);
        assert_eq!(Role::from_facts(false, false, true), Banned);
        assert_eq!(Role::from_facts(false, false, false), Outsider);
    }
}
