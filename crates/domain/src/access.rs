//! Who may do what in a channel: one function, [`authorize`], that every entry point asks,
//! so no endpoint can forget a ban or leak a private channel.

use crate::channel::{ChannelKind, MemberRole};

/// The caller's standing in one channel, worked out from ownership, membership, the
/// member's role and bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Moderator,
    Member,
    Banned,
    Outsider,
}

impl Role {
    /// A ban outranks everything else: a banned owner cannot exist (the owner cannot be
    /// banned), and a banned member has already been removed. `membership` is the member's
    /// stored role, `None` for a non-member; only a channel has an owner.
    pub fn from_facts(is_owner: bool, membership: Option<MemberRole>, is_banned: bool) -> Self {
        match (is_banned, membership) {
            (true, _) => Self::Banned,
            (false, None) => Self::Outsider,
            (false, Some(_)) if is_owner => Self::Owner,
            (false, Some(MemberRole::Moderator)) => Self::Moderator,
            (false, Some(_)) => Self::Member,
        }
    }

    pub fn is_member(self) -> bool {
        matches!(self, Self::Owner | Self::Moderator | Self::Member)
    }

    /// The role a members list shows, `None` for non-members.
    pub fn member_role(self) -> Option<MemberRole> {
        match self {
            Self::Owner => Some(MemberRole::Owner),
            Self::Moderator => Some(MemberRole::Moderator),
            Self::Member => Some(MemberRole::Member),
            Self::Banned | Self::Outsider => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See the channel, its members and its history; download its files.
    Read,
    /// Post messages, react, pin, send typing, move the read marker.
    Post,
    Join,
    Leave,
    /// Add a user to a private channel.
    Invite,
    /// Ban, unban and kick (plain members, for a moderator), list bans, read the audit log,
    /// delete others' messages: the owner and moderators.
    Moderate,
    /// Rename or delete the channel, set roles, hand ownership over: the owner alone.
    Administer,
}

/// Why an action is refused. `NotFound` hides the channel entirely (private channels and
/// DMs must never be confirmed to outsiders); `Forbidden` admits it exists; `Blocked` is a
/// conversation refused because its other side blocked the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NotFound,
    Forbidden(&'static str),
    Conflict(&'static str),
    Blocked,
}

const NO_OWNER: Denied = Denied::Forbidden("direct messages have no owner");
const OWNER_ONLY: Denied = Denied::Forbidden("only the channel owner may do this");
const MODERATORS_ONLY: Denied = Denied::Forbidden("only the channel owner or a moderator may do this");

/// Decides whether `role` may perform `action` in a channel of this kind and visibility.
///
/// ```
/// use domain::{authorize, Action, ChannelKind, Denied, Role};
/// assert_eq!(authorize(ChannelKind::Channel, false, Role::Outsider, Action::Read), Ok(()));
/// assert_eq!(authorize(ChannelKind::Channel, true, Role::Outsider, Action::Read), Err(Denied::NotFound));
/// assert_eq!(authorize(ChannelKind::Channel, false, Role::Moderator, Action::Moderate), Ok(()));
/// ```
pub fn authorize(kind: ChannelKind, is_private: bool, role: Role, action: Action) -> Result<(), Denied> {
    let public = kind == ChannelKind::Channel && !is_private;
    let conversation = kind != ChannelKind::Channel;

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
            ChannelKind::Dm | ChannelKind::GroupDm => Err(Denied::Forbidden("direct messages cannot be joined")),
            // Only members can see a private channel at all, and for them joining is a no-op.
            ChannelKind::Channel => Ok(()),
        },
        Action::Leave => match (kind, role) {
            (ChannelKind::Dm, _) => Err(Denied::Forbidden("direct messages cannot be left")),
            (ChannelKind::Channel, Role::Owner) => Err(Denied::Conflict("the owner cannot leave the channel")),
            (_, role) if role.is_member() => Ok(()),
            _ => Err(Denied::Forbidden("you are not a member of this channel")),
        },
        Action::Invite => match role {
            _ if conversation => Err(NO_OWNER),
            Role::Owner | Role::Moderator if is_private => Ok(()),
            Role::Owner | Role::Moderator => Err(Denied::Forbidden("public channels are joined, not invited to")),
            _ => Err(MODERATORS_ONLY),
        },
        Action::Moderate => match role {
            _ if conversation => Err(NO_OWNER),
            Role::Owner | Role::Moderator => Ok(()),
            _ => Err(MODERATORS_ONLY),
        },
        Action::Administer => match role {
            _ if conversation => Err(NO_OWNER),
            Role::Owner => Ok(()),
            _ => Err(OWNER_ONLY),
        },
    }
}

/// Whether `actor`, who may moderate the channel (checked by [`authorize`]), may ban, unban
/// or kick `target`: nobody may act on the owner; a moderator only on plain members and
/// non-members.
pub fn may_moderate(actor: Role, target: Role) -> Result<(), Denied> {
    match (actor, target) {
        (_, Role::Owner) => Err(Denied::Conflict("the channel owner cannot be banned or removed")),
        (Role::Moderator, Role::Moderator) => Err(Denied::Forbidden("moderators may act only on plain members")),
        (Role::Owner | Role::Moderator, _) => Ok(()),
        _ => Err(MODERATORS_ONLY),
    }
}

/// Whether `actor` may delete a message written by `author` (their roles in its channel):
/// their own, or anyone's but the owner's and other moderators' for a moderator.
pub fn may_delete_message(actor: Role, is_author: bool, author: Role) -> Result<(), Denied> {
    if is_author {
        return Ok(());
    }
    may_moderate(actor, author)
        .map_err(|_| Denied::Forbidden("only the author, the channel owner or a moderator may delete a message"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use ChannelKind::{Channel, Dm, GroupDm};
    use Role::*;

    const OK: Result<(), Denied> = Ok(());
    const NF: Result<(), Denied> = Err(Denied::NotFound);
    const ACTIONS: [Action; 7] = [Read, Post, Join, Leave, Invite, Moderate, Administer];
    const ROLES: [Role; 5] = [Owner, Moderator, Member, Banned, Outsider];

    /// `O` allowed, `F` forbidden, `C` conflict, `N` not found; one letter per action in
    /// [`ACTIONS`] order: Read Post Join Leave Invite Moderate Administer.
    fn expect(letters: &str) -> Vec<char> {
        letters.chars().filter(|c| !c.is_whitespace()).collect()
    }

    fn check(kind: ChannelKind, is_private: bool, table: &[(Role, &str)]) {
        for (role, letters) in table {
            for (action, letter) in ACTIONS.iter().zip(expect(letters)) {
                let got = authorize(kind, is_private, *role, *action);
                let ok = match letter {
                    'O' => got == OK,
                    'F' => matches!(got, Err(Denied::Forbidden(_))),
                    'C' => matches!(got, Err(Denied::Conflict(_))),
                    'N' => got == NF,
                    _ => unreachable!(),
                };
                assert!(ok, "{kind:?} private={is_private} {role:?} {action:?}: expected {letter}, got {got:?}");
            }
        }
    }

    #[test]
    fn public_channel() {
        check(
            Channel,
            false,
            &[
                (Owner, "OOO C F O O"),
                (Moderator, "OOO O F O F"),
                (Member, "OOO O F F F"),
                (Banned, "FFF F F F F"),
                (Outsider, "OFO F F F F"),
            ],
        );
    }

    #[test]
    fn private_channel() {
        check(
            Channel,
            true,
            &[
                (Owner, "OOO C O O O"),
                (Moderator, "OOO O O O F"),
                (Member, "OOO O F F F"),
                (Banned, "NNN N N N N"),
                (Outsider, "NNN N N N N"),
            ],
        );
    }

    #[test]
    fn direct_messages_have_no_owner_powers() {
        // A DM's members are `Member`s (only a channel has an owner); a group DM may be left.
        check(Dm, true, &[(Member, "OOF F F F F"), (Banned, "NNN N N N N"), (Outsider, "NNN N N N N")]);
        check(GroupDm, true, &[(Member, "OOF O F F F"), (Banned, "NNN N N N N"), (Outsider, "NNN N N N N")]);
    }

    #[test]
    fn who_may_moderate_whom() {
        let table = [
            (Owner, Moderator, "O"),
            (Owner, Member, "O"),
            (Owner, Outsider, "O"),
            (Owner, Banned, "O"),
            (Owner, Owner, "C"),
            (Moderator, Member, "O"),
            (Moderator, Outsider, "O"),
            (Moderator, Banned, "O"),
            (Moderator, Moderator, "F"),
            (Moderator, Owner, "C"),
            (Member, Member, "F"),
        ];
        for (actor, target, letter) in table {
            let got = may_moderate(actor, target);
            let ok = match letter {
                "O" => got == OK,
                "F" => matches!(got, Err(Denied::Forbidden(_))),
                _ => matches!(got, Err(Denied::Conflict(_))),
            };
            assert!(ok, "{actor:?} on {target:?}: {got:?}");
        }
    }

    #[test]
    fn who_may_delete_a_message() {
        for role in ROLES {
            assert_eq!(may_delete_message(role, true, role), OK, "own message, {role:?}");
        }
        assert_eq!(may_delete_message(Owner, false, Moderator), OK);
        assert_eq!(may_delete_message(Moderator, false, Member), OK);
        assert_eq!(may_delete_message(Moderator, false, Outsider), OK);
        for (actor, author) in [(Moderator, Owner), (Moderator, Moderator), (Member, Member), (Outsider, Member)] {
            assert!(matches!(may_delete_message(actor, false, author), Err(Denied::Forbidden(_))), "{actor:?}");
        }
    }

    #[test]
    fn roles_from_facts() {
        use MemberRole as M;
        assert_eq!(Role::from_facts(true, Some(M::Member), false), Owner);
        assert_eq!(Role::from_facts(true, Some(M::Moderator), false), Owner);
        assert_eq!(Role::from_facts(false, Some(M::Moderator), false), Moderator);
        assert_eq!(Role::from_facts(false, Some(M::Member), false), Member);
        assert_eq!(Role::from_facts(false, None, true), Banned);
        assert_eq!(Role::from_facts(true, None, false), Outsider);
        assert_eq!(Role::from_facts(false, None, false), Outsider);
        assert_eq!(Moderator.member_role(), Some(M::Moderator));
        assert_eq!(Banned.member_role(), None);
    }
}
