//! What the state keeps per user and per group, packed for tenants of millions
//! of users.

use super::*;

pub(crate) type UserSlot = u32;
pub(crate) type GroupSlot = u32;

/// A set of roles, one bit per role; iterates in catalog order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RoleMask(u16);

const _: () = assert!(Role::ALL.len() <= 16, "a role mask holds 16 roles");

impl RoleMask {
    pub fn of(roles: &[Role]) -> Self {
        let mut mask = RoleMask::default();
        for role in roles {
            mask.insert(*role);
        }
        mask
    }

    fn bit(role: Role) -> u16 {
        1 << role as u16
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    pub fn insert(&mut self, role: Role) {
        self.0 |= Self::bit(role);
    }

    pub fn remove(&mut self, role: Role) {
        self.0 &= !Self::bit(role);
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn and(self, other: RoleMask) -> RoleMask {
        RoleMask(self.0 & other.0)
    }

    pub fn union(self, other: RoleMask) -> RoleMask {
        RoleMask(self.0 | other.0)
    }

    /// The roles, in catalog order (one step per role held, not per role).
    pub fn iter(self) -> impl Iterator<Item = Role> + Clone {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(Role::ALL[i])
        })
    }

    pub fn to_vec(self) -> Vec<Role> {
        self.iter().collect()
    }
}

/// A direct membership: the group, and the revision the user joined it at.
/// Packed in 8 bytes; a revision that does not fit in 32 bits is kept aside
/// (`TenantState::late_joins`) and marked here with [`Joined::LATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    pub group: GroupSlot,
    pub(super) revision: u32,
}

impl Joined {
    pub(super) const LATE: u32 = u32::MAX;
}

#[derive(Debug, Clone)]
pub(crate) struct UserEntry {
    /// Direct roles (the directory sends a valid role set; kept in catalog order).
    pub roles: RoleMask,
    pub suspended: bool,
    /// The roles the settings of the groups over the user's memberships offer
    /// (each membership's group and its ancestors), kept in step with the
    /// memberships and the settings: a user offered nothing is resolved without
    /// walking up the trees, and a lookup passes over a user who could not hold
    /// what it asks for without resolving them. (It fits in the entry's padding.)
    pub offered: RoleMask,
    /// Direct memberships, in the order they were added.
    pub memberships: Box<[Joined]>,
}

/// What every check reads of a group, in 8 bytes: walking up a tree touches
/// only these (the lists of [`GroupEntry`] live apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupNode {
    /// The parent's slot, or [`NO_GROUP`] for a top-level group.
    pub(super) parent: GroupSlot,
    /// The roles members inherit, at most one per tool.
    pub inherited: RoleMask,
    pub is_organization: bool,
}

/// No group: the parent of a top-level group.
pub(super) const NO_GROUP: GroupSlot = GroupSlot::MAX;

impl GroupNode {
    pub(super) const PLACEHOLDER: GroupNode = GroupNode {
        parent: NO_GROUP,
        inherited: RoleMask(0),
        is_organization: false,
    };

    pub fn parent(self) -> Option<GroupSlot> {
        (self.parent != NO_GROUP).then_some(self.parent)
    }
}

/// A group's relations.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupEntry {
    pub children: Vec<GroupSlot>,
    /// Direct members, in no particular order.
    pub members: Vec<UserSlot>,
    pub administrators: Vec<UserSlot>,
    pub catalogs: Vec<String>,
}
