//! The result cache: answers of deterministic explanation requests, kept by (model
//! id, sha256 of the method and the encoded request with its model reference
//! replaced by the resolved id). Ids are content hashes, so an answer can never
//! belong to other bytes: a name moved to a new model resolves to a new id and
//! misses. Bounded in bytes (the encoded answers' sizes) with moka's TinyLFU
//! admission and LRU eviction; entries are stored encoded, so one cache holds every
//! response type and its weight is exactly what it costs.

use layerlens_proto as proto;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Which answer an entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    model_id: String,
    /// sha256 of the method name and the encoded request.
    digest: [u8; 32],
    /// For metrics only.
    method: &'static str,
}

/// What `Status` reports about the cache.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStats {
    pub capacity_bytes: u64,
    pub size_bytes: u64,
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
}

pub struct ResultCache {
    /// `None` when `--cache-bytes 0` turned the cache off.
    entries: Option<moka::sync::Cache<CacheKey, Arc<Vec<u8>>>>,
    capacity_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Told about every lookup (method, hit): the metrics layer's counter, or nothing.
    on_lookup: LookupObserver,
}

/// Called with (method, hit) for every lookup of a cacheable request.
pub type LookupObserver = Box<dyn Fn(&'static str, bool) + Send + Sync>;

impl ResultCache {
    pub fn new(capacity_bytes: u64, on_lookup: LookupObserver) -> ResultCache {
        let entries = (capacity_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(capacity_bytes)
                // The key's id and digest count too, so many tiny answers cannot
                // exceed the bound by their bookkeeping.
                .weigher(|key: &CacheKey, answer: &Arc<Vec<u8>>| u32::try_from(answer.len() + key.model_id.len() + 64).unwrap_or(u32::MAX))
                .support_invalidation_closures()
                .build()
        });
        ResultCache { entries, capacity_bytes, hits: AtomicU64::new(0), misses: AtomicU64::new(0), on_lookup }
    }

    /// The key of `request` (already carrying the resolved model id) for `method`,
    /// or `None` when the cache is off.
    pub fn key<R: CanonicalBytes>(&self, method: &'static str, model_id: &str, request: &R) -> Option<CacheKey> {
        self.entries.as_ref()?;
        let mut hasher = Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update([0]);
        hasher.update(request.canonical_bytes());
        Some(CacheKey { model_id: model_id.to_string(), digest: hasher.finalize().into(), method })
    }

    /// The cached answer under `key`, counting a hit or a miss. No key (cache off or
    /// a request that must run) counts nothing.
    pub fn get<M: prost::Message + Default>(&self, key: Option<&CacheKey>) -> Option<M> {
        let (entries, key) = (self.entries.as_ref()?, key?);
        let answer = entries.get(key).and_then(|bytes| match M::decode(bytes.as_slice()) {
            Ok(answer) => Some(answer),
            Err(error) => {
                // Cannot happen for bytes this cache encoded; treat it as a miss.
                tracing::error!(%error, "a cached answer did not decode");
                None
            }
        });
        let hit = answer.is_some();
        if hit { &self.hits } else { &self.misses }.fetch_add(1, Ordering::Relaxed);
        (self.on_lookup)(key.method, hit);
        answer
    }

    /// Keeps `answer` under `key` (nothing without a key).
    pub fn put<M: prost::Message>(&self, key: Option<CacheKey>, answer: &M) {
        if let (Some(entries), Some(key)) = (self.entries.as_ref(), key) {
            entries.insert(key, Arc::new(answer.encode_to_vec()));
        }
    }

    /// Drops every answer about `model_id` (the model was deleted).
    pub fn forget_model(&self, model_id: &str) {
        if let Some(entries) = &self.entries {
            let model_id = model_id.to_string();
            if let Err(error) = entries.invalidate_entries_if(move |key, _| key.model_id == model_id) {
                tracing::warn!(%error, "dropping a deleted model's cached answers failed");
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        let (size_bytes, entries) = match &self.entries {
            Some(entries) => {
                // moka applies inserts and evictions in batches; settle them so the
                // numbers reported are the current ones.
                entries.run_pending_tasks();
                (entries.weighted_size(), entries.entry_count())
            }
            None => (0, 0),
        };
        CacheStats {
            capacity_bytes: self.capacity_bytes,
            size_bytes,
            entries,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// Bytes that identify a request: equal requests give equal bytes. The protobuf
/// encoding does, except for map fields: prost writes a map in its `HashMap`'s
/// iteration order, which differs between two equal maps, so those are written in
/// key order instead.
pub trait CanonicalBytes: prost::Message + Clone {
    fn canonical_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

impl CanonicalBytes for proto::SummaryRequest {}
impl CanonicalBytes for proto::ParametersRequest {}
impl CanonicalBytes for proto::ActivationsRequest {}
impl CanonicalBytes for proto::PredictRequest {}
impl CanonicalBytes for proto::GraphRequest {}

impl CanonicalBytes for proto::AttributeRequest {
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut rest = self.clone();
        let params: std::collections::BTreeMap<_, _> = std::mem::take(&mut rest.params).into_iter().collect();
        let tensor_params: std::collections::BTreeMap<_, _> = std::mem::take(&mut rest.tensor_params).into_iter().collect();
        let mut bytes = prost::Message::encode_to_vec(&rest);
        // Length-prefixed, so no two different maps write the same bytes.
        let mut push = |part: &[u8]| {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        };
        push(b"params");
        for (key, value) in &params {
            push(key.as_bytes());
            push(value.as_bytes());
        }
        push(b"tensor_params");
        for (key, tensor) in &tensor_params {
            push(key.as_bytes());
            push(&prost::Message::encode_to_vec(tensor));
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(model: &str, bins: u32) -> proto::ParametersRequest {
        proto::ParametersRequest { model: model.to_string(), bins, figure_format: 0 }
    }

    #[test]
    fn answers_repeat_requests_and_keeps_to_its_bound() {
        let cache = ResultCache::new(10_000, Box::new(|_, _| {}));
        let key = cache.key("Parameters", "abc", &request("abc", 30));
        assert!(cache.get::<proto::ParametersResponse>(key.as_ref()).is_none());
        let answer = proto::ParametersResponse { model_id: "abc".into(), ..Default::default() };
        cache.put(key.clone(), &answer);
        assert_eq!(cache.get::<proto::ParametersResponse>(key.as_ref()), Some(answer));
        // Another option, method or model is another entry.
        assert_ne!(key, cache.key("Parameters", "abc", &request("abc", 31)));
        assert_ne!(key, cache.key("Predict", "abc", &request("abc", 30)));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));

        // Many answers of 1000 bytes never hold more than the bound.
        for bins in 0..100 {
            let filler = proto::ParametersResponse { model_id: "x".repeat(1000), ..Default::default() };
            cache.put(cache.key("Parameters", "abc", &request("abc", 1000 + bins)), &filler);
        }
        assert!(cache.stats().size_bytes <= 10_000, "{:?}", cache.stats());

        cache.forget_model("abc");
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn equal_maps_give_equal_keys() {
        let cache = ResultCache::new(10_000, Box::new(|_, _| {}));
        let pairs: Vec<(String, String)> = (0..20).map(|index| (format!("key{index}"), index.to_string())).collect();
        let forward = proto::AttributeRequest { params: pairs.iter().cloned().collect(), ..Default::default() };
        let backward = proto::AttributeRequest { params: pairs.iter().rev().cloned().collect(), ..Default::default() };
        assert_eq!(cache.key("Attribute", "abc", &forward), cache.key("Attribute", "abc", &backward));
        let other = proto::AttributeRequest { params: pairs[1..].iter().cloned().collect(), ..Default::default() };
        assert_ne!(cache.key("Attribute", "abc", &forward), cache.key("Attribute", "abc", &other));
    }

    #[test]
    fn zero_bytes_turns_it_off() {
        let cache = ResultCache::new(0, Box::new(|_, _| {}));
        let key = cache.key("Parameters", "abc", &request("abc", 30));
        assert!(key.is_none());
        cache.put(key.clone(), &proto::ParametersResponse::default());
        assert!(cache.get::<proto::ParametersResponse>(key.as_ref()).is_none());
        assert_eq!(cache.stats().misses, 0);
    }
}
