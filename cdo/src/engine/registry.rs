//! Where the engine keeps offered objects, behind a small trait so that a
//! host may bring its own matching of names.

use crate::config::DuplicateOffers;
use crate::ipc::fasthash::FastMap;

use crate::ipc::wire::Attributes;

/// Identifier of a joined client.
pub type ClientId = u64;

/// One offered object as the manager sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The client that offered it.
    pub owner: ClientId,
    /// Its size in bytes.
    pub size: u64,
    /// The manager's identifier of the segment holding it.
    pub segment: u64,
    /// Its offset in that segment.
    pub offset: u64,
    /// Its attributes.
    pub attrs: Attributes,
    /// The manager's identifier of this offer (unique for the manager's life).
    pub object: u64,
}

/// Offered objects by name.
pub trait Registry: Send {
    /// Adds `entry` under `name`; gives it back if the name is taken and
    /// the registry does not keep versions.
    fn insert(&mut self, name: String, entry: Entry) -> Result<(), Entry>;
    /// The object offered under `name` (the newest version).
    fn get(&self, name: &str) -> Option<&Entry>;
    /// The object `owner` offered under `name` (the one
    /// [`Registry::remove`] would remove).
    fn get_of(&self, name: &str, owner: ClientId) -> Option<&Entry>;
    /// Removes and returns the object `owner` offered under `name`.
    fn remove(&mut self, name: &str, owner: ClientId) -> Option<Entry>;
    /// Hands the object `from` offered under `name` to `to`, keeping its
    /// place among the versions; false when `from` offered none.
    fn set_owner(&mut self, name: &str, from: ClientId, to: ClientId) -> bool;
    /// Names of the objects `owner` offered.
    fn names_of(&self, owner: ClientId) -> Vec<String>;
    /// Calls `f` on every offered object (every version) with its name.
    fn for_each(&self, f: &mut dyn FnMut(&str, &Entry));
    /// Number of offered objects.
    fn len(&self) -> usize;
    /// Whether nothing is offered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The default [`Registry`]: exact name matching in a hash map; a second
/// offer of a name on offer is refused or kept as a newer version, as
/// configured (each client offers a name at most once at a time).
#[derive(Debug, Default)]
pub struct NameRegistry {
    /// Versions of each name, oldest first.
    entries: FastMap<String, Vec<Entry>>,
    duplicates: DuplicateOffers,
    len: usize,
}

impl NameRegistry {
    /// An empty registry treating second offers as `duplicates` says.
    pub fn new(duplicates: DuplicateOffers) -> Self {
        NameRegistry {
            duplicates,
            ..NameRegistry::default()
        }
    }
}

impl Registry for NameRegistry {
    fn insert(&mut self, name: String, entry: Entry) -> Result<(), Entry> {
        let versions = self.entries.entry(name).or_default();
        if !versions.is_empty() && self.duplicates == DuplicateOffers::Reject {
            return Err(entry);
        }
        versions.push(entry);
        self.len += 1;
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)?.last()
    }

    fn get_of(&self, name: &str, owner: ClientId) -> Option<&Entry> {
        self.entries
            .get(name)?
            .iter()
            .rev()
            .find(|e| e.owner == owner)
    }

    fn remove(&mut self, name: &str, owner: ClientId) -> Option<Entry> {
        let versions = self.entries.get_mut(name)?;
        let i = versions.iter().rposition(|e| e.owner == owner)?;
        let entry = versions.remove(i);
        if versions.is_empty() {
            self.entries.remove(name);
        }
        self.len -= 1;
        Some(entry)
    }

    fn set_owner(&mut self, name: &str, from: ClientId, to: ClientId) -> bool {
        let Some(versions) = self.entries.get_mut(name) else {
            return false;
        };
        match versions.iter_mut().rev().find(|e| e.owner == from) {
            Some(e) => {
                e.owner = to;
                true
            }
            None => false,
        }
    }

    fn names_of(&self, owner: ClientId) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, v)| v.iter().any(|e| e.owner == owner))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn for_each(&self, f: &mut dyn FnMut(&str, &Entry)) {
        for (name, versions) in &self.entries {
            versions.iter().for_each(|e| f(name, e));
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}
