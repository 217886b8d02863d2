//! Reads that are consistent at one revision.
//!
//! The backend keeps only the *current* value of each key, plus a log of
//! events that each carry the value they replaced. The state as of an older
//! revision R is therefore "current values, with every change after R
//! undone": for each key touched after R, its value before the first such
//! change. We compute that overlay from the log, then merge it with a scan
//! of the current values, in key order.
//!
//! Both reads happen under the read side of the gate, so no batch is half
//! applied while we look; batches applied but not yet durable have
//! revisions above the published one and are undone like any other. If a
//! compaction removed log entries we needed while we read, the result is
//! discarded with `Expired`.

use std::collections::BTreeMap;

use super::write::value_before;
use super::{Backend, ScanEntry, Shared};
use crate::{Error, KeyValue, ListOptions, ListResult, Result, Revision};

/// The key range of one list call.
struct Range<'a> {
    prefix: &'a str,
    start_after: Option<&'a str>,
}

impl Range<'_> {
    fn contains(&self, key: &str) -> bool {
        key.starts_with(self.prefix) && self.start_after.is_none_or(|after| key > after)
    }
}

/// Collects up to `limit` items, then only counts.
struct Page {
    items: Vec<KeyValue>,
    limit: Option<usize>,
    more: bool,
    remaining: u64,
}

impl Page {
    fn new(limit: Option<usize>) -> Self {
        Page {
            items: Vec::new(),
            limit: limit.filter(|&limit| limit > 0),
            more: false,
            remaining: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.limit.is_some_and(|limit| self.items.len() >= limit)
    }

    fn offer(&mut self, load: impl FnOnce() -> Result<KeyValue>) -> Result<()> {
        if self.is_full() {
            self.more = true;
            self.remaining += 1;
        } else {
            self.items.push(load()?);
        }
        Ok(())
    }

    fn offer_value(&mut self, value: &Option<KeyValue>) -> Result<()> {
        match value {
            Some(kv) => self.offer(|| Ok(kv.clone())),
            None => Ok(()),
        }
    }
}

/// For each key in range touched after some revision: its value as of then.
type Overlay = BTreeMap<String, Option<KeyValue>>;

impl<B: Backend> Shared<B> {
    /// The current (published) value of `key`.
    pub(crate) fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let view = self.read_view();
        if let Some(value) = view.pending.get(key) {
            return Ok(value.clone());
        }
        self.backend.get(key)
    }

    pub(crate) fn list(&self, prefix: &str, options: &ListOptions) -> Result<ListResult> {
        let range = Range {
            prefix,
            start_after: options.start_after.as_deref(),
        };
        let view = self.read_view();
        let revision = self.list_revision(options.revision, view.current)?;
        let overlay = self.undo_overlay(revision, &range)?;
        let page = self.merge_scan(&range, &overlay, options.limit)?;
        drop(view);
        self.ensure_not_compacted(revision)?;
        Ok(ListResult {
            items: page.items,
            revision,
            more: page.more,
            remaining: page.remaining,
        })
    }

    fn list_revision(&self, requested: Option<Revision>, current: Revision) -> Result<Revision> {
        let Some(requested) = requested else {
            return Ok(current);
        };
        if requested > current {
            return Err(Error::FutureRevision { requested, current });
        }
        self.ensure_not_compacted(requested)?;
        Ok(requested)
    }

    /// Undo every logged change after `revision` to keys in `range`.
    fn undo_overlay(&self, revision: Revision, range: &Range<'_>) -> Result<Overlay> {
        let mut overlay = Overlay::new();
        self.backend.scan_log(revision, &mut |event| {
            if range.contains(event.key()) && !overlay.contains_key(event.key()) {
                overlay.insert(event.key().to_owned(), value_before(&event));
            }
            Ok(true)
        })?;
        Ok(overlay)
    }

    /// Merge the current values in `range` with the overlay, in key order.
    fn merge_scan(
        &self,
        range: &Range<'_>,
        overlay: &Overlay,
        limit: Option<usize>,
    ) -> Result<Page> {
        let mut page = Page::new(limit);
        let mut undone = overlay.iter().peekable();
        self.backend.scan(
            range.prefix,
            range.start_after,
            &mut |entry: &dyn ScanEntry| {
                let key = entry.key();
                while let Some((_, value)) = undone.next_if(|(k, _)| k.as_str() < key) {
                    page.offer_value(value)?;
                }
                match undone.next_if(|(k, _)| k.as_str() == key) {
                    Some((_, value)) => page.offer_value(value)?,
                    None => page.offer(|| entry.load())?,
                }
                Ok(true)
            },
        )?;
        for (_, value) in undone {
            page.offer_value(value)?;
        }
        Ok(page)
    }
}
