//! An object's JSON as the watch cache keeps it: LZ4-compressed against a
//! dictionary, the JSON of another recent object of the same resource.
//!
//! Why: the cache holds every object of the cluster as JSON, and a
//! running pod's JSON is ~4 KB, most of it the same keys and values as the
//! next pod's (the managedFields repeat the field names of the spec and
//! status). Compressed alone, LZ4 halves it; against a pod of the same
//! shape it shrinks ~8-fold (6,000 running pods of a benchmark: 3,990
//! bytes each, 1,882 alone, 497 against one of them). Decompressing runs
//! at memory speed and happens where a list or a watch line is written.
//!
//! The dictionary: a [`Packer`] (one per resource) takes the JSON of the
//! object it packs as its dictionary at first and again every
//! [`DICTIONARY_EVERY`] objects, so it follows the shape objects have now
//! (a pod's first version has no status; the one the cache keeps longest
//! does). Each object holds an `Arc` of the dictionary it was packed
//! against, so a dictionary lives exactly as long as some object needs it.

use std::borrow::Cow;
use std::sync::Arc;

/// Objects packed against one dictionary before the next object packed
/// becomes the new one. At ~4 KB a dictionary, this costs at most ~4
/// bytes per object packed for the dictionaries still referenced.
pub const DICTIONARY_EVERY: usize = 1024;

/// The JSON of an object a dictionary was taken from.
#[derive(Debug)]
struct Dictionary(Box<[u8]>);

/// An object's JSON, compressed or as is.
#[derive(Debug)]
pub struct CachedJson(Repr);

#[derive(Debug)]
enum Repr {
    /// Not compressed: objects outside the cache (storage reads), and
    /// JSON that LZ4 does not make smaller.
    Plain(Box<[u8]>),
    /// LZ4 block of `len` bytes of JSON, compressed against `dictionary`.
    Packed {
        block: Box<[u8]>,
        len: u32,
        dictionary: Arc<Dictionary>,
    },
}

impl CachedJson {
    /// JSON kept as is.
    pub fn plain(json: Vec<u8>) -> Self {
        CachedJson(Repr::Plain(json.into_boxed_slice()))
    }

    /// The JSON's length in bytes.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Plain(json) => json.len(),
            Repr::Packed { len, .. } => *len as usize,
        }
    }

    /// Whether the JSON is empty (it never is for an object).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append the JSON to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Repr::Plain(json) => out.extend_from_slice(json),
            Repr::Packed {
                block,
                len,
                dictionary,
            } => {
                let start = out.len();
                out.resize(start + *len as usize, 0);
                let written = lz4_flex::block::decompress_into_with_dict(
                    block,
                    &mut out[start..],
                    &dictionary.0,
                );
                if written.as_ref().ok() != Some(&(*len as usize)) {
                    // Only a bug could get here: the block was made by
                    // `Packer::pack` from this very length and dictionary.
                    tracing::error!(?written, len, "cached JSON does not decompress");
                    out.truncate(start);
                    out.extend_from_slice(b"null");
                }
            }
        }
    }

    /// The JSON, decompressed if it is packed.
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match &self.0 {
            Repr::Plain(json) => Cow::Borrowed(json),
            Repr::Packed { .. } => {
                let mut out = Vec::with_capacity(self.len());
                self.write_to(&mut out);
                Cow::Owned(out)
            }
        }
    }

    /// `json`, kept as this JSON is: packed against the same dictionary,
    /// or plain. For another version of the same object (its deletion).
    pub fn sibling(&self, json: Vec<u8>) -> Self {
        match &self.0 {
            Repr::Plain(_) => CachedJson::plain(json),
            Repr::Packed { dictionary, .. } => pack(json, dictionary, &mut Vec::new()),
        }
    }

    /// Whether the JSON is compressed.
    #[cfg(test)]
    fn is_packed(&self) -> bool {
        matches!(self.0, Repr::Packed { .. })
    }

    /// Bytes held for this JSON itself, without its dictionary.
    #[cfg(test)]
    fn stored_len(&self) -> usize {
        match &self.0 {
            Repr::Plain(json) => json.len(),
            Repr::Packed { block, .. } => block.len(),
        }
    }
}

/// Packs one resource's objects, choosing their dictionary.
#[derive(Debug, Default)]
pub struct Packer {
    dictionary: Option<Arc<Dictionary>>,
    /// Objects packed against the current dictionary.
    packed: usize,
    /// Compression output, reused: LZ4 needs room for its worst case.
    scratch: Vec<u8>,
}

impl Packer {
    /// `json`, compressed against this resource's current dictionary.
    pub fn pack(&mut self, json: Vec<u8>) -> CachedJson {
        let dictionary = match &self.dictionary {
            Some(d) if self.packed < DICTIONARY_EVERY => d.clone(),
            _ => {
                let d = Arc::new(Dictionary(json.clone().into_boxed_slice()));
                self.dictionary = Some(d.clone());
                self.packed = 0;
                d
            }
        };
        self.packed += 1;
        pack(json, &dictionary, &mut self.scratch)
    }
}

/// `json` compressed against `dictionary`, or plain when that is no
/// smaller (or too long for the length field).
fn pack(json: Vec<u8>, dictionary: &Arc<Dictionary>, scratch: &mut Vec<u8>) -> CachedJson {
    let Ok(len) = u32::try_from(json.len()) else {
        return CachedJson::plain(json);
    };
    scratch.clear();
    scratch.resize(lz4_flex::block::get_maximum_output_size(json.len()), 0);
    match lz4_flex::block::compress_into_with_dict(&json, scratch, &dictionary.0) {
        Ok(n) if n < json.len() => CachedJson(Repr::Packed {
            block: scratch[..n].into(),
            len,
            dictionary: dictionary.clone(),
        }),
        _ => CachedJson::plain(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "default",
                "labels": {"app": "web"},
                "uid": format!("uid-{name}"),
            },
            "spec": {
                "containers": [{
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }],
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
            },
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn packed_json_reads_back_the_same() {
        let mut packer = Packer::default();
        let originals: Vec<Vec<u8>> = (0..50)
            .map(|i| pod(&format!("web-{i}"), "Running"))
            .collect();
        let packed: Vec<CachedJson> = originals.iter().map(|j| packer.pack(j.clone())).collect();
        for (original, packed) in originals.iter().zip(&packed) {
            assert!(packed.is_packed());
            assert_eq!(packed.len(), original.len());
            assert_eq!(&*packed.bytes(), &original[..]);
            // Appending keeps what is already written.
            let mut out = b"[".to_vec();
            packed.write_to(&mut out);
            assert_eq!(&out[1..], &original[..]);
        }
        // Against a pod of the same shape, a pod is a fraction of its size.
        let last = packed.last().unwrap();
        assert!(last.stored_len() * 4 < last.len(), "{}", last.stored_len());
    }

    #[test]
    fn the_dictionary_follows_the_objects() {
        let mut packer = Packer::default();
        let first = packer.pack(pod("a", "Pending"));
        for i in 0..DICTIONARY_EVERY - 1 {
            packer.pack(pod(&format!("p-{i}"), "Pending"));
        }
        let Repr::Packed {
            dictionary: old, ..
        } = &first.0
        else {
            panic!("not packed")
        };
        let next = packer.pack(pod("b", "Running"));
        let Repr::Packed {
            dictionary: new, ..
        } = &next.0
        else {
            panic!("not packed")
        };
        assert!(!Arc::ptr_eq(old, new));
        // Objects packed before keep reading against their own dictionary.
        assert_eq!(&*first.bytes(), &pod("a", "Pending")[..]);
        assert_eq!(&*next.bytes(), &pod("b", "Running")[..]);
    }

    #[test]
    fn a_sibling_shares_the_dictionary_and_plain_stays_plain() {
        let mut packer = Packer::default();
        let running = packer.pack(pod("a", "Running"));
        let gone = running.sibling(pod("a", "Succeeded"));
        assert!(gone.is_packed());
        assert_eq!(&*gone.bytes(), &pod("a", "Succeeded")[..]);

        let plain = CachedJson::plain(b"{\"a\":1}".to_vec());
        assert!(!plain.is_packed());
        let sibling = plain.sibling(b"{\"a\":2}".to_vec());
        assert!(!sibling.is_packed());
        assert_eq!(&*sibling.bytes(), b"{\"a\":2}");
    }

    #[test]
    fn what_does_not_shrink_is_kept_plain() {
        let mut packer = Packer::default();
        packer.pack(pod("a", "Running"));
        // Nothing in common with the dictionary and nothing repeated.
        let noise: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(97) ^ 0x5a).collect();
        let kept = packer.pack(noise.clone());
        assert!(!kept.is_packed());
        assert_eq!(&*kept.bytes(), &noise[..]);
    }
}
