//! What a seeded tenant is made of, written by `seed` and read by load runs: the
//! ids calls pick from.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::seed::Shape;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub tenant_id: String,
    pub shape: Shape,
    /// Every user, in creation order.
    pub users: Vec<String>,
    /// Every group by level: `levels[0]` holds the organizations (level 1).
    pub levels: Vec<Vec<String>>,
    /// Users who administer a group.
    pub administrators: Vec<String>,
    /// The tenant's revision when the seed was done.
    pub revision: i64,
}

impl Manifest {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let raw = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading the manifest {}: {e}", path.display()))?;
        Ok(serde_json::from_slice(&raw)?)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec(self)?)
            .map_err(|e| anyhow::anyhow!("writing the manifest {}: {e}", path.display()))
    }

    /// The groups of a level (1 = organizations); the deepest when it has fewer.
    pub fn level(&self, level: usize) -> &[String] {
        let i = level.clamp(1, self.levels.len()) - 1;
        &self.levels[i]
    }

    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.levels.iter().flatten()
    }
}
