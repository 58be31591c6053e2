//! Sets of CPUs and of NUMA nodes (OS indexes), printed and parsed as
//! compact lists such as `0-3,8`.

use super::error::{AffinityError, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Parses `0-3,8` into ids; the empty text is the empty list.
fn parse_list(text: &str) -> Result<BTreeSet<u32>> {
    let bad = || AffinityError::BadList(text.to_owned());
    let mut ids = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: u32 = lo.parse().map_err(|_| bad())?;
        let hi: u32 = hi.parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(bad());
        }
        ids.extend(lo..=hi);
    }
    Ok(ids)
}

macro_rules! id_set {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(BTreeSet<u32>);

        impl $name {
            /// The empty set.
            pub fn new() -> Self {
                Self::default()
            }

            /// Whether `id` is in the set.
            pub fn contains(&self, id: u32) -> bool {
                self.0.contains(&id)
            }

            /// Adds `id`; false when it was there already.
            pub fn insert(&mut self, id: u32) -> bool {
                self.0.insert(id)
            }

            /// Number of ids.
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// Whether the set has no id.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }

            /// The ids in increasing order.
            pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
                self.0.iter().copied()
            }

            /// The smallest id.
            pub fn first(&self) -> Option<u32> {
                self.0.first().copied()
            }

            /// Whether every id of `self` is in `other`.
            pub fn is_subset(&self, other: &Self) -> bool {
                self.0.is_subset(&other.0)
            }

            /// Whether the two sets share an id.
            pub fn intersects(&self, other: &Self) -> bool {
                !self.0.is_disjoint(&other.0)
            }

            /// The ids in both sets.
            pub fn intersection(&self, other: &Self) -> Self {
                Self(self.0.intersection(&other.0).copied().collect())
            }

            /// The ids as a vector, in increasing order.
            pub fn to_vec(&self) -> Vec<u32> {
                self.iter().collect()
            }
        }

        impl FromIterator<u32> for $name {
            fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
                Self(iter.into_iter().collect())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&crate::tier::compact_list(&self.to_vec()))
            }
        }

        impl FromStr for $name {
            type Err = AffinityError;

            fn from_str(text: &str) -> Result<Self> {
                parse_list(text).map(Self)
            }
        }
    };
}

id_set!(
    /// A set of CPUs (OS indexes of processing units).
    CpuSet
);
id_set!(
    /// A set of NUMA nodes (OS indexes).
    NodeSet
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_through_text() {
        let set: CpuSet = "0-3, 8,10-11".parse().unwrap();
        assert_eq!(set.to_vec(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(set.to_string(), "0-3,8,10-11");
        assert!("".parse::<NodeSet>().unwrap().is_empty());
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in ["a", "3-1", "1-", "-2", "1,,x"] {
            assert!(
                matches!(bad.parse::<CpuSet>(), Err(AffinityError::BadList(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn set_relations() {
        let a: CpuSet = [0, 1].into_iter().collect();
        let b: CpuSet = [0, 1, 2, 3].into_iter().collect();
        assert!(a.is_subset(&b) && !b.is_subset(&a));
        assert!(a.intersects(&b));
        assert_eq!(b.intersection(&a), a);
        assert_eq!(b.first(), Some(0));
    }
}
