//! The record store behind the simulated list APIs: records ordered by
//! (update time, id), as the vendors' databases return them, so keyset
//! paging (`updatedAfter` + `afterId`) works as it does against the real
//! systems, and a changed record moves to the end of the order.

use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Debug)]
pub(crate) struct KeysetStore {
    by_update: BTreeMap<(String, String), Value>,
    /// id → its current update time.
    index: BTreeMap<String, String>,
    update_field: &'static str,
    id_field: &'static str,
}

impl KeysetStore {
    pub(crate) fn new(update_field: &'static str, id_field: &'static str) -> Self {
        Self {
            by_update: BTreeMap::new(),
            index: BTreeMap::new(),
            update_field,
            id_field,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn insert(&mut self, record: Value) {
        let id = record[self.id_field]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let update = record[self.update_field]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(old) = self.index.insert(id.clone(), update.clone()) {
            self.by_update.remove(&(old, id.clone()));
        }
        self.by_update.insert((update, id), record);
    }

    /// The id of the `n`-th record in id order.
    pub(crate) fn nth_id(&self, n: usize) -> Option<String> {
        self.index.keys().nth(n).cloned()
    }

    /// Changes a record and gives it a new update time.
    pub(crate) fn update(&mut self, id: &str, update: String, change: impl FnOnce(&mut Value)) {
        let Some(old) = self.index.get(id).cloned() else {
            return;
        };
        let Some(mut record) = self.by_update.remove(&(old, id.to_owned())) else {
            return;
        };
        change(&mut record);
        record[self.update_field] = Value::String(update);
        self.insert(record);
    }

    /// Up to `size` records strictly after `(updated_after, after_id)`; with
    /// no id, strictly after the time; with neither, from the start.
    pub(crate) fn after(
        &self,
        updated_after: Option<&str>,
        after_id: Option<&str>,
        size: usize,
    ) -> Vec<Value> {
        let lower = match (updated_after, after_id) {
            (Some(t), Some(id)) => Bound::Excluded((t.to_owned(), id.to_owned())),
            (Some(t), None) => Bound::Excluded((t.to_owned(), String::from("\u{10FFFF}"))),
            _ => Bound::Unbounded,
        };
        self.by_update
            .range((lower, Bound::Unbounded))
            .take(size)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Page `page` (1-based) of the records updated at or after `since`.
    pub(crate) fn page(&self, since: &str, page: usize, size: usize) -> Vec<Value> {
        self.by_update
            .range((since.to_owned(), String::new())..)
            .skip(page.saturating_sub(1) * size)
            .take(size)
            .map(|(_, v)| v.clone())
            .collect()
    }
}
