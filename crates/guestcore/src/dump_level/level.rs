//! makedumpfile's dump level: a bitmask of page kinds to leave out of a dump.

use serde::Serialize;
use std::fmt;

/// Which kinds of pages a dump leaves out (`makedumpfile -d`), 0–31.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DumpLevel(u8);

impl DumpLevel {
    /// Pages filled with zeros.
    pub const ZERO: u8 = 1;
    /// Page cache pages without private data (not anonymous).
    pub const CACHE: u8 = 2;
    /// Page cache pages, private data or not.
    pub const CACHE_PRIVATE: u8 = 4;
    /// User-process data: anonymous pages and hugetlbfs pages.
    pub const USER: u8 = 8;
    /// Free pages (in the buddy allocator).
    pub const FREE: u8 = 16;
    /// Every bit.
    pub const ALL: u8 = 31;

    /// The level `n`, or [`Error::Parse`](crate::Error::Parse) saying why not (more than 31).
    pub fn new(n: u8) -> crate::Result<Self> {
        if n > Self::ALL {
            return Err(crate::Error::Parse {
                what: "dump level",
                detail: format!(
                    "{n}: levels are 0-31 (1 zero, 2 cache, 4 cache with private data, 8 user data, 16 free pages)"
                ),
            });
        }
        Ok(DumpLevel(n))
    }

    /// The bitmask.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// True when every bit of `mask` is set.
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }

    /// True when the level needs the kernel's page array (any bit but zero pages).
    pub(crate) fn needs_page_array(self) -> bool {
        self.0 & !Self::ZERO != 0
    }
}

impl fmt::Display for DumpLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for DumpLevel {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        let n: u8 = s.trim().parse().map_err(|_| crate::Error::Parse {
            what: "dump level",
            detail: format!("{s:?} is not a number from 0 to 31"),
        })?;
        DumpLevel::new(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_tell_what_they_need() {
        assert_eq!("31".parse::<DumpLevel>().unwrap().bits(), 31);
        assert!("32".parse::<DumpLevel>().is_err() && "x".parse::<DumpLevel>().is_err());
        assert!(!DumpLevel::new(1).unwrap().needs_page_array());
        assert!(DumpLevel::new(17).unwrap().needs_page_array());
        assert!(DumpLevel::new(17)
            .unwrap()
            .has(DumpLevel::FREE | DumpLevel::ZERO));
    }
}
