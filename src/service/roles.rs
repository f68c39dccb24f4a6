//! Roles and permissions, as data (reference "Permission System", CONTRACT.md "Roles and
//! moderation"). Groups and channels use this module unchanged.

use serde::{Deserialize, Serialize};

/// A member's role in a group or channel, lowest first so `Ord` is rank order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Moderator,
    Admin,
    Owner,
}

/// What a role may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    SendMessages,
    DeleteOwnMessages,
    DeleteAnyMessage,
    ManageMembers,
    ManageRoles,
    ManageChannel,
    CreateInvites,
    PinMessages,
    MuteMembers,
    KickMembers,
    /// Reading the moderation audit log (owners and admins, CONTRACT.md "audit log").
    ReadAudit,
}

use Permission::*;

const MEMBER: &[Permission] = &[SendMessages, DeleteOwnMessages];
const MODERATOR: &[Permission] = &[
    SendMessages,
    DeleteOwnMessages,
    DeleteAnyMessage,
    PinMessages,
    MuteMembers,
    KickMembers,
];
const ADMIN: &[Permission] = &[
    SendMessages,
    DeleteOwnMessages,
    DeleteAnyMessage,
    ManageMembers,
    ManageRoles,
    CreateInvites,
    PinMessages,
    MuteMembers,
    KickMembers,
    ReadAudit,
];
const OWNER: &[Permission] = &[
    SendMessages,
    DeleteOwnMessages,
    DeleteAnyMessage,
    ManageMembers,
    ManageRoles,
    ManageChannel,
    CreateInvites,
    PinMessages,
    MuteMembers,
    KickMembers,
    ReadAudit,
];

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Member, Role::Moderator, Role::Admin, Role::Owner];

    /// The permissions this role holds.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            Role::Member => MEMBER,
            Role::Moderator => MODERATOR,
            Role::Admin => ADMIN,
            Role::Owner => OWNER,
        }
    }

    /// Whether this role holds `permission`.
    pub fn can(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    /// Acting on a member needs a rank strictly above the target's.
    pub fn outranks(self, target: Role) -> bool {
        self > target
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Reads a stored name (unknown names read as the least privileged role).
    pub fn parse(name: &str) -> Role {
        match name {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            "moderator" => Role::Moderator,
            _ => Role::Member,
        }
    }
}

impl Permission {
    /// The reference's name, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            SendMessages => "SEND_MESSAGES",
            DeleteOwnMessages => "DELETE_OWN_MESSAGES",
            DeleteAnyMessage => "DELETE_ANY_MESSAGE",
            ManageMembers => "MANAGE_MEMBERS",
            ManageRoles => "MANAGE_ROLES",
            ManageChannel => "MANAGE_CHANNEL",
            CreateInvites => "CREATE_INVITES",
            PinMessages => "PIN_MESSAGES",
            MuteMembers => "MUTE_MEMBERS",
            KickMembers => "KICK_MEMBERS",
            ReadAudit => "READ_AUDIT",
        }
    }
}

/// Whether `actor` may give `target` (currently `current`) the role `new`:
/// it needs `MANAGE_ROLES`, must outrank the target's current role, and may only hand out
/// roles below its own, except that the owner may hand over `owner`.
pub fn may_assign(actor: Role, current: Role, new: Role) -> bool {
    if !actor.can(ManageRoles) || !actor.outranks(current) {
        return false;
    }
    new < actor || (actor == Role::Owner && new == Role::Owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_order() {
        assert!(
            Role::Owner > Role::Admin
                && Role::Admin > Role::Moderator
                && Role::Moderator > Role::Member
        );
        for role in Role::ALL {
            assert!(!role.outranks(role));
            assert_eq!(Role::parse(role.as_str()), role);
        }
    }

    #[test]
    fn only_owners_manage_channels_and_admins_manage_roles() {
        assert!(Role::Owner.can(ManageChannel));
        assert!(!Role::Admin.can(ManageChannel));
        assert!(Role::Admin.can(ManageRoles));
        assert!(!Role::Moderator.can(ManageRoles));
        assert!(!Role::Member.can(PinMessages));
    }

    #[test]
    fn assignment_rules() {
        // Owner hands over ownership; admin cannot create admins or owners.
        assert!(may_assign(Role::Owner, Role::Admin, Role::Owner));
        assert!(may_assign(Role::Owner, Role::Member, Role::Admin));
        assert!(!may_assign(Role::Admin, Role::Member, Role::Admin));
        assert!(may_assign(Role::Admin, Role::Member, Role::Moderator));
        assert!(!may_assign(Role::Admin, Role::Admin, Role::Member));
        assert!(!may_assign(Role::Moderator, Role::Member, Role::Member));
    }
}
