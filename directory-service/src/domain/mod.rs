//! Domain layer: validated types and the rules that need no I/O (`rules`: every
//! business rule a write can break, as pure functions). No proto types and
//! no SQL here; the gRPC layer converts into these types and the storage layer
//! persists them.

mod change;
mod fields;
mod page;
mod resources;
pub mod rules;

pub use change::{Change, ChangeSet};
pub use fields::{
    CatalogId, DisplayName, Email, Etag, GroupId, RequestId, TenantId, UserId, ValidationError,
};
pub use page::{Page, PageRequest};
pub use resources::{
    CatalogAssignment, Group, GroupFilter, GroupUpdate, Membership, NewGroup, NewTenant, NewUser,
    Tenant, User, UserFilter, UserState, UserUpdate, WriteContext,
};

/// A tenant's revision: the number of changes committed in it so far.
pub type Revision = i64;
