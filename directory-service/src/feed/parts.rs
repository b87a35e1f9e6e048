//! Cutting the feed into messages of bounded size, by construction.
//!
//! A change set, or a snapshot page, becomes as many parts as it needs, each
//! within a byte budget (half the server's message limit): changes are packed
//! in order, and a change too large on its own, which only an administrator set
//! can be, is split into several changes of the same kind (a replacement's
//! first ids stay a replacement, the rest become additions), which applied in
//! order within the change set give the same set.
//!
//! Sizes are measured without encoding anything: [`change_bytes`] is an upper
//! bound of a change's protobuf encoding, field by field (the gRPC layer's tests
//! hold the conversion to it), so a part is never larger than measured.

use super::FeedEvent;
use crate::domain::{Change, GroupId, UserId};

/// Bytes of a varint holding `n`.
fn varint(n: usize) -> usize {
    let mut n = n as u64;
    let mut bytes = 1;
    while n >= 0x80 {
        n >>= 7;
        bytes += 1;
    }
    bytes
}

/// A length-delimited field (string, bytes, message) of `len` bytes; every field
/// number in the contract is below 16, so its tag is one byte.
fn delimited(len: usize) -> usize {
    1 + varint(len) + len
}

/// An id written as text (a UUID's 36 characters).
const ID: usize = 1 + 1 + 36;
/// A 64-bit integer, enum or bool field at its widest.
const NUMBER: usize = 1 + 10;
/// A `google.protobuf.Timestamp` field at its widest (seconds and nanos).
const TIME: usize = 1 + 1 + NUMBER + NUMBER;
/// An etag (`"<revision>"` as text) at its widest.
const ETAG: usize = 1 + 1 + 22;

/// An upper bound of the bytes `change` takes in a `ChangeEvent`'s `changes`.
pub fn change_bytes(change: &Change) -> usize {
    let inner = match change {
        Change::TenantCreated { tenant } => {
            ID + delimited(tenant.display_name.as_str().len()) + NUMBER + TIME
        }
        Change::UserUpserted { user } => {
            2 * ID
                + delimited(user.display_name.as_str().len())
                + delimited(user.email.as_str().len())
                + delimited(NUMBER * user.roles.roles().len())
                + NUMBER
                + 2 * TIME
                + ETAG
        }
        Change::UserDeleted { .. } | Change::GroupDeleted { .. } => ID,
        Change::GroupUpserted { group } => {
            3 * ID
                + delimited(group.display_name.as_str().len())
                + 4 * NUMBER
                + group.inherited_roles.len() * delimited(2 * NUMBER)
                + 2 * TIME
                + ETAG
        }
        Change::MembershipAdded { .. } => 2 * ID + NUMBER + TIME,
        Change::MembershipRemoved { .. } => 2 * ID,
        Change::AdministratorsChanged {
            administrator_ids, ..
        }
        | Change::AdministratorsAdded {
            administrator_ids, ..
        }
        | Change::AdministratorsRemoved {
            administrator_ids, ..
        } => ID + ID * administrator_ids.len(),
        Change::InheritedRoleSet { .. } | Change::InheritedRoleCleared { .. } => ID + 2 * NUMBER,
        Change::CatalogAssigned { catalog_id, .. } => {
            ID + delimited(catalog_id.as_str().len()) + TIME
        }
        Change::CatalogUnassigned { catalog_id, .. } => ID + delimited(catalog_id.as_str().len()),
    };
    // The `Change` message around the oneof's field, itself a field of the list.
    delimited(delimited(inner))
}

/// An upper bound of the bytes of a feed message carrying a part of a change set
/// by `actor`, without its changes.
pub fn header_bytes(actor: &str) -> usize {
    // The `WatchResponse` around the `ChangeEvent` (its length is bounded by the
    // message limit: 5 bytes), then tenant, revision, commit time, actor and the
    // `continued` flag.
    1 + 5 + ID + NUMBER + TIME + delimited(actor.len()) + NUMBER
}

/// Cuts `changes` into parts of at most `budget` bytes by [`change_bytes`], in
/// order. Always at least one part (an empty list gives one empty part). Only a
/// change that cannot be split and is larger than the budget alone (none is,
/// for any budget over a few kilobytes) makes a larger part, of itself.
pub fn cut(changes: Vec<Change>, budget: usize) -> Vec<Vec<Change>> {
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut size = 0;
    for change in changes {
        for piece in split(change, budget) {
            let bytes = change_bytes(&piece);
            if !part.is_empty() && size + bytes > budget {
                parts.push(std::mem::take(&mut part));
                size = 0;
            }
            size += bytes;
            part.push(piece);
        }
    }
    if !part.is_empty() || parts.is_empty() {
        parts.push(part);
    }
    parts
}

/// A change as pieces of at most `budget` bytes each, where it can be split.
fn split(change: Change, budget: usize) -> Vec<Change> {
    if change_bytes(&change) <= budget {
        return vec![change];
    }
    type Kind = fn(GroupId, Vec<UserId>) -> Change;
    let replaced: Kind = |group_id, administrator_ids| Change::AdministratorsChanged {
        group_id,
        administrator_ids,
    };
    let removed: Kind = |group_id, administrator_ids| Change::AdministratorsRemoved {
        group_id,
        administrator_ids,
    };
    // The first piece keeps the change's kind; after the first piece of a
    // replacement, the set grows.
    let (group_id, ids, first_kind, rest_kind): (GroupId, Vec<UserId>, Kind, Kind) = match change {
        Change::AdministratorsChanged {
            group_id,
            administrator_ids,
        } => (group_id, administrator_ids, replaced, added),
        Change::AdministratorsAdded {
            group_id,
            administrator_ids,
        } => (group_id, administrator_ids, added, added),
        Change::AdministratorsRemoved {
            group_id,
            administrator_ids,
        } => (group_id, administrator_ids, removed, removed),
        other => return vec![other],
    };
    // Room for the ids once the group and the envelopes (with their lengths at
    // their widest) are counted.
    let fixed = change_bytes(&first_kind(group_id, Vec::new())) + 2 * 4;
    let per_piece = (budget.saturating_sub(fixed) / ID).max(1);
    ids.chunks(per_piece)
        .enumerate()
        .map(|(i, chunk)| {
            let kind = if i == 0 { first_kind } else { rest_kind };
            kind(group_id, chunk.to_vec())
        })
        .collect()
}

/// An upper bound of the bytes of `event` as a feed message.
pub fn event_bytes(event: &FeedEvent) -> usize {
    match event {
        FeedEvent::Changes { set, .. } => {
            header_bytes(&set.actor) + set.changes.iter().map(change_bytes).sum::<usize>()
        }
        FeedEvent::SnapshotPart { changes, .. } => {
            header_bytes("") + changes.iter().map(change_bytes).sum::<usize>()
        }
        // A tenant id, a revision and a time, at most.
        FeedEvent::SnapshotBegin { .. }
        | FeedEvent::SnapshotEnd { .. }
        | FeedEvent::Checkpoint { .. }
        | FeedEvent::CaughtUp { .. } => 1 + 5 + ID + NUMBER + TIME,
    }
}

fn added(group_id: GroupId, administrator_ids: Vec<UserId>) -> Change {
    Change::AdministratorsAdded {
        group_id,
        administrator_ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn ids(n: usize) -> Vec<UserId> {
        (0..n).map(|_| UserId(Uuid::new_v4())).collect()
    }

    fn group() -> GroupId {
        GroupId(Uuid::new_v4())
    }

    fn removed(group_id: GroupId, administrator_ids: Vec<UserId>) -> Change {
        Change::AdministratorsRemoved {
            group_id,
            administrator_ids,
        }
    }

    /// The administrator set a list of changes leaves, from `start`.
    fn replay(start: &[UserId], changes: &[Change]) -> Vec<UserId> {
        let mut set: std::collections::BTreeSet<UserId> = start.iter().copied().collect();
        for change in changes {
            match change {
                Change::AdministratorsChanged {
                    administrator_ids, ..
                } => set = administrator_ids.iter().copied().collect(),
                Change::AdministratorsAdded {
                    administrator_ids, ..
                } => set.extend(administrator_ids.iter().copied()),
                Change::AdministratorsRemoved {
                    administrator_ids, ..
                } => {
                    for id in administrator_ids {
                        set.remove(id);
                    }
                }
                _ => {}
            }
        }
        set.into_iter().collect()
    }

    #[test]
    fn every_part_is_within_the_budget_and_the_changes_keep_their_effect() {
        let g = group();
        let start = ids(50);
        let replacement = ids(5_000);
        let more = ids(3_000);
        let changes = vec![
            removed(g, start[..10].to_vec()),
            Change::AdministratorsChanged {
                group_id: g,
                administrator_ids: replacement.clone(),
            },
            added(g, more.clone()),
            removed(g, replacement[..2_500].to_vec()),
            Change::GroupDeleted { group_id: group() },
        ];
        for budget in [1_000, 4_096, 32_768, 1 << 20] {
            let parts = cut(changes.clone(), budget);
            for part in &parts {
                let size: usize = part.iter().map(change_bytes).sum();
                assert!(size <= budget, "a part of {size} bytes over {budget}");
            }
            let flat: Vec<Change> = parts.into_iter().flatten().collect();
            assert_eq!(
                replay(&start, &flat),
                replay(&start, &changes),
                "budget {budget}"
            );
            assert!(
                matches!(flat.last(), Some(Change::GroupDeleted { .. })),
                "order kept"
            );
        }
    }

    #[test]
    fn small_lists_stay_whole_and_nothing_gives_one_empty_part() {
        let changes = vec![added(group(), ids(3)), removed(group(), ids(2))];
        assert_eq!(cut(changes.clone(), 1 << 20), vec![changes]);
        assert_eq!(cut(Vec::new(), 1 << 20), vec![Vec::<Change>::new()]);
    }
}
