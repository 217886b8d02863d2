//! [`PackedMap`]: a string map in two allocations, for the label and
//! annotation maps the fake runtime keeps on every sandbox and container.
//!
//! Hollow nodes hold tens of thousands of these records in one process. As
//! a `BTreeMap<String, String>`, a container's eight labels cost a 544-byte
//! tree node plus sixteen string allocations (~1.3 KB in all); packed, the
//! same labels are one string of their text and one slice of offsets.

use std::collections::BTreeMap;

use super::StrMap;

/// An immutable string-to-string map, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedMap {
    /// Every key followed by its value, in key order.
    text: Box<str>,
    /// For each entry, where its key ends and where its value ends in
    /// `text`.
    ends: Box<[(u32, u32)]>,
}

impl PackedMap {
    /// Pack `entries`, which must be sorted by key without duplicates (a
    /// `BTreeMap`'s order).
    fn from_sorted<'a>(entries: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Self {
        let len: usize = entries.clone().map(|(k, v)| k.len() + v.len()).sum();
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(entries.clone().count());
        for (k, v) in entries {
            text.push_str(k);
            let key_end = text.len();
            text.push_str(v);
            // Labels and annotations are bounded far below 4 GiB (the API
            // server caps an object at a few MiB); saturate rather than wrap.
            let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            ends.push((offset(key_end), offset(text.len())));
        }
        PackedMap {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let (key_end, value_end) = (key_end as usize, value_end as usize);
            let entry = (
                self.text.get(start..key_end).unwrap_or_default(),
                self.text.get(key_end..value_end).unwrap_or_default(),
            );
            start = value_end;
            entry
        })
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The map as CRI messages carry it.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `map` packed, with `defaults`' entries added where `map` has no
    /// such key.
    pub fn with_defaults(map: &BTreeMap<String, String>, defaults: &PackedMap) -> PackedMap {
        let mut merged: BTreeMap<&str, &str> = defaults.iter().collect();
        merged.extend(map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let merged: Vec<(&str, &str)> = merged.into_iter().collect();
        PackedMap::from_sorted(merged.iter().copied())
    }
}

impl From<&BTreeMap<String, String>> for PackedMap {
    fn from(map: &BTreeMap<String, String>) -> Self {
        PackedMap::from_sorted(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl StrMap for PackedMap {
    fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_packed_map_gives_back_what_it_was_made_of() {
        let labels = map(&[
            ("io.kubernetes.pod.name", "web-1"),
            ("app", "web"),
            ("empty", ""),
            ("", "empty key"),
            ("ünïcode", "välue"),
        ]);
        let packed = PackedMap::from(&labels);
        assert_eq!(packed.to_map(), labels);
        assert_eq!(packed.get("app"), Some("web"));
        assert_eq!(packed.get("empty"), Some(""));
        assert_eq!(packed.get(""), Some("empty key"));
        assert_eq!(packed.get("ünïcode"), Some("välue"));
        assert_eq!(packed.get("missing"), None);
        let keys: Vec<&str> = packed.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["", "app", "empty", "io.kubernetes.pod.name", "ünïcode"]
        );
        assert_eq!(PackedMap::from(&BTreeMap::new()).to_map(), BTreeMap::new());
    }

    #[test]
    fn merging_keeps_our_values_and_adds_the_others() {
        let container = map(&[("c", "1"), ("shared", "container")]);
        let sandbox = PackedMap::from(&map(&[("s", "2"), ("shared", "sandbox")]));
        assert_eq!(
            PackedMap::with_defaults(&container, &sandbox).to_map(),
            map(&[("c", "1"), ("s", "2"), ("shared", "container")])
        );
    }
}
