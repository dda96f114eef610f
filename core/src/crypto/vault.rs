//! Where a process keeps its master keys: pages of their own, locked into memory so that they
//! are never written to swap, and zeroed when the keyring they belong to is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::SecretKey;

/// Keys per page: a 4 KiB page holds 128 keys of 32 bytes.
const PER_PAGE: usize = 128;

/// One page of keys, aligned to a page so that locking it locks nothing else and unlocking it
/// (when the keyring is dropped) unlocks nothing another keyring still holds.
#[repr(C, align(4096))]
struct Page([SecretKey; PER_PAGE]);

impl Page {
    fn empty() -> Self {
        Self(std::array::from_fn(|_| SecretKey::from_bytes([0; 32])))
    }
}

struct Pages {
    pages: Vec<Page>,
    /// Held while the pages live; `None` when the system refused to lock them (a
    /// `RLIMIT_MEMLOCK` too small), which start-up reports.
    _lock: Option<region::LockGuard>,
}

/// The master keys by version, in locked pages. [`SecretKey`] zeroes itself on drop, so the
/// pages are zeroed when the last keyring sharing them goes.
#[derive(Clone)]
pub(super) struct Vault {
    index: BTreeMap<i32, usize>,
    pages: Arc<Pages>,
}

impl Vault {
    pub(super) fn new(keys: BTreeMap<i32, SecretKey>) -> Self {
        let mut pages: Vec<Page> = (0..keys.len().div_ceil(PER_PAGE).max(1))
            .map(|_| Page::empty())
            .collect();
        let lock = region::lock(pages.as_ptr(), pages.len() * std::mem::size_of::<Page>()).ok();
        let mut index = BTreeMap::new();
        // Copied from where they are, which `keys` then zeroes as it drops them in place
        // (moving them out would leave their bytes in freed memory).
        for (slot, (version, key)) in keys.iter().enumerate() {
            pages[slot / PER_PAGE].0[slot % PER_PAGE] = key.clone();
            index.insert(*version, slot);
        }
        drop(keys);
        Self {
            index,
            pages: Arc::new(Pages { pages, _lock: lock }),
        }
    }

    pub(super) fn get(&self, version: i32) -> Option<&SecretKey> {
        let slot = *self.index.get(&version)?;
        self.pages
            .pages
            .get(slot / PER_PAGE)
            .map(|page| &page.0[slot % PER_PAGE])
    }

    pub(super) fn versions(&self) -> impl DoubleEndedIterator<Item = i32> + '_ {
        self.index.keys().copied()
    }

    pub(super) fn is_locked(&self) -> bool {
        self.pages._lock.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_version_across_pages() {
        let keys: BTreeMap<i32, SecretKey> = (1..=300)
            .map(|v| {
                (
                    v,
                    SecretKey::from_bytes([u8::try_from(v % 251).unwrap_or(0); 32]),
                )
            })
            .collect();
        let vault = Vault::new(keys);
        assert_eq!(vault.pages.pages.len(), 3);
        for v in [1, 128, 129, 256, 300] {
            let expected = u8::try_from(v % 251).unwrap_or(0);
            assert_eq!(vault.get(v).map(|k| k.expose()[0]), Some(expected), "{v}");
        }
        assert!(vault.get(301).is_none());
        assert_eq!(vault.versions().next_back(), Some(300));
        assert_eq!(std::mem::align_of::<Page>(), 4096);
        assert_eq!(std::mem::size_of::<Page>(), 4096);
    }

    #[test]
    fn the_pages_are_locked_in_memory() {
        // Linux's smallest RLIMIT_MEMLOCK (64 KiB) holds sixteen pages.
        let vault = Vault::new(BTreeMap::from([(1, SecretKey::generate())]));
        assert!(vault.is_locked());
    }
}
