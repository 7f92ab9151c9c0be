//! Prefix caching: KV caches of finished sequences, kept so that a later prompt that begins
//! with the same tokens — the same system prompt, the conversation so far plus a new turn, the
//! same question again — prefills only the tokens that follow.
//!
//! Keys and values at a position depend only on the tokens up to it, so the cache of any
//! earlier sequence that shares a prompt's first `k` tokens holds exactly what prefilling those
//! `k` tokens would write. A lookup copies the entry with the longest shared prefix and cuts
//! the copy to that length; the entry stays for the next request. At least the prompt's last
//! token is always prefilled again: its logits give the first generated token.

use lmlab_model::KvCache;

/// Fewer shared tokens than this are prefilled afresh: copying a cache's buffers costs about
/// as much as prefilling a handful of tokens.
pub const MIN_SHARED_TOKENS: usize = 8;

/// A KV cache and the tokens it holds keys and values for (`cache.seq_len() == tokens.len()`).
#[derive(Clone)]
pub struct Prefix {
    tokens: Vec<u32>,
    cache: KvCache,
}

impl Prefix {
    /// `cache` with the `tokens` it was filled from; None when their lengths differ.
    pub fn new(tokens: Vec<u32>, cache: KvCache) -> Option<Self> {
        (cache.seq_len() == tokens.len() && cache.batch_size() == 1).then_some(Self { tokens, cache })
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Memory its buffers hold, spare room included.
    pub fn bytes(&self) -> usize {
        self.cache.reserved_bytes()
    }

    /// Its tokens and cache.
    pub fn into_parts(self) -> (Vec<u32>, KvCache) {
        (self.tokens, self.cache)
    }
}

/// Finished sequences' caches, the least recently used evicted first.
pub struct PrefixCache {
    /// Entries with the tick of their last use.
    entries: Vec<(u64, Prefix)>,
    max_entries: usize,
    clock: u64,
}

impl PrefixCache {
    /// A store of at most `max_entries` caches (0: it keeps nothing).
    pub fn new(max_entries: usize) -> Self {
        Self { entries: Vec::new(), max_entries, clock: 0 }
    }

    /// Caches held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Memory the held caches take.
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|(_, p)| p.bytes()).sum()
    }

    /// A copy of the held cache that shares the most leading tokens with `prompt`, cut to the
    /// shared length and to at most `prompt.len() - 1` positions, in buffers sized as a fresh
    /// prefill of `prompt` would size them; None when no entry shares [`MIN_SHARED_TOKENS`].
    pub fn lookup(&mut self, prompt: &[u32]) -> candle_core::Result<Option<Prefix>> {
        let limit = prompt.len().saturating_sub(1);
        let shared = |p: &Prefix| p.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(limit);
        // The longest shared prefix; among equals, the most recently used entry.
        let best = self.entries.iter().enumerate().map(|(i, (tick, p))| (i, shared(p), *tick)).max_by_key(|&(_, len, tick)| (len, tick));
        let Some((best, len, _)) = best.filter(|&(_, len, _)| len >= MIN_SHARED_TOKENS) else {
            return Ok(None);
        };
        self.clock += 1;
        self.entries[best].0 = self.clock;
        let cache = self.entries[best].1.cache.copy_prefix(len, prompt.len())?;
        Ok(Some(Prefix { tokens: prompt[..len].to_vec(), cache }))
    }

    /// Keeps `prefix`. An entry it extends (or equals) is dropped, since every lookup that
    /// entry answers the new one answers as well; beyond `max_entries`, the least recently used
    /// goes.
    pub fn insert(&mut self, prefix: Prefix) {
        if self.max_entries == 0 || prefix.len() < MIN_SHARED_TOKENS {
            return;
        }
        self.entries.retain(|(_, p)| !prefix.tokens.starts_with(&p.tokens));
        self.clock += 1;
        self.entries.push((self.clock, prefix));
        while self.entries.len() > self.max_entries {
            self.evict_oldest();
        }
    }

    /// Drops the least recently used entry; false when there was none.
    pub fn evict_oldest(&mut self) -> bool {
        let Some(i) = self.entries.iter().enumerate().min_by_key(|(_, (tick, _))| *tick).map(|(i, _)| i) else {
            return false;
        };
        self.entries.swap_remove(i);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{decode_step, GenerateRequest, Sequence};
    use crate::sampler::SamplingParams;
    use candle_core::{DType, Device};
    use lmlab_model::checkpoint::init_trainable;
    use lmlab_model::{CausalLm, Gpt, GptConfig};

    fn model() -> Gpt {
        let cfg = GptConfig { n_kv_head: 1, ..GptConfig::gpt2_style(64, 64, 2, 2, 16, 32) };
        init_trainable(&cfg, 5, DType::F32, &Device::Cpu).unwrap().0
    }

    /// A prefix of `tokens` with a cache the model filled from them.
    fn filled(model: &Gpt, tokens: &[u32]) -> Prefix {
        let mut cache = model.new_cache();
        let ids = candle_core::Tensor::new(tokens, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        model.forward_cached(&ids, &mut cache).unwrap();
        Prefix::new(tokens.to_vec(), cache).unwrap()
    }

    /// Greedy tokens of `prompt`, decoded to the end, started from `prefix`.
    fn greedy(model: &Gpt, prompt: &[u32], prefix: Option<Prefix>) -> (Vec<u32>, Sequence) {
        let req = GenerateRequest::new(prompt.to_vec(), 12, SamplingParams { temperature: 0.0, ..Default::default() });
        let mut seqs = Sequence::start_from(model, &req, prefix, |_, _| false).unwrap();
        seqs[0].keep_cache();
        while decode_step(model, &mut seqs.iter_mut().collect::<Vec<_>>(), |_, _| false).unwrap() > 0 {}
        (seqs[0].tokens().to_vec(), seqs.remove(0))
    }

    #[test]
    fn lookup_takes_the_longest_shared_prefix_and_leaves_the_last_prompt_token() {
        let m = model();
        let system: Vec<u32> = (1..=10).collect();
        let mut store = PrefixCache::new(4);
        store.insert(filled(&m, &system));
        store.insert(filled(&m, &[system.clone(), vec![20, 21, 22]].concat()));
        store.insert(filled(&m, &[5, 5, 5, 5, 5, 5, 5, 5, 5]));
        assert_eq!(store.len(), 2, "the 13-token entry replaced the 10-token one it extends");
        // Shares 12 tokens with the 13-token entry.
        let p = store.lookup(&[system.clone(), vec![20, 21, 30]].concat()).unwrap().unwrap();
        assert_eq!(p.tokens(), &[system.clone(), vec![20, 21]].concat()[..]);
        assert_eq!(p.cache.seq_len(), 12);
        // The whole entry is the prompt: all but its last token come from the cache.
        let p = store.lookup(&[system.clone(), vec![20, 21, 22]].concat()).unwrap().unwrap();
        assert_eq!(p.len(), 12);
        // Fewer than MIN_SHARED_TOKENS shared: nothing.
        assert!(store.lookup(&[1, 2, 3, 4, 5, 6, 7, 99, 99, 99]).unwrap().is_none());
        assert!(store.lookup(&[42; 20]).unwrap().is_none());
        // The entry is still there for the next request.
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let m = model();
        let prompts: Vec<Vec<u32>> = (0..3u32).map(|k| (0..9).map(|i| i + 10 * k).collect()).collect();
        let mut store = PrefixCache::new(2);
        store.insert(filled(&m, &prompts[0]));
        store.insert(filled(&m, &prompts[1]));
        // Using the older one makes the other the oldest.
        assert!(store.lookup(&[prompts[0].clone(), vec![63]].concat()).unwrap().is_some());
        store.insert(filled(&m, &prompts[2]));
        assert!(store.lookup(&[prompts[1].clone(), vec![63]].concat()).unwrap().is_none(), "prompt 1's entry was evicted");
        assert!(store.lookup(&[prompts[0].clone(), vec![63]].concat()).unwrap().is_some());
        let before = store.bytes();
        assert!(store.evict_oldest() && store.len() == 1 && store.bytes() < before);
        assert!(PrefixCache::new(0).lookup(&prompts[0]).unwrap().is_none());
        let mut off = PrefixCache::new(0);
        off.insert(filled(&m, &prompts[0]));
        assert!(off.is_empty(), "a store of no entries keeps nothing");
    }

    #[test]
    fn a_sequence_started_from_a_kept_cache_generates_what_a_fresh_one_does() {
        let m = model();
        let first: Vec<u32> = (1..=14).collect();
        let (tokens, mut seq) = greedy(&m, &first, None);
        // The finished sequence hands over its prompt and every token fed back (not the last).
        let kept = seq.take_prefix().expect("it kept its cache");
        assert_eq!(kept.tokens(), &[first.clone(), tokens[..tokens.len() - 1].to_vec()].concat()[..]);
        assert!(seq.take_prefix().is_none(), "taken once");
        let mut store = PrefixCache::new(4);
        store.insert(kept);
        // The next turn: the conversation so far and a new message.
        let next = [first.clone(), tokens.clone(), vec![40, 41, 42]].concat();
        let prefix = store.lookup(&next).unwrap().expect("shares the first turn");
        assert_eq!(prefix.len(), first.len() + tokens.len() - 1);
        let (reused, _) = greedy(&m, &next, Some(prefix));
        let (fresh, _) = greedy(&m, &next, None);
        assert_eq!(reused, fresh);
        // A prefix that is not the prompt's is refused, naming both lengths.
        let wrong = filled(&m, &[9; 10]);
        let req = GenerateRequest::new(next.clone(), 4, SamplingParams::default());
        let err = Sequence::start_from(&m, &req, Some(wrong), |_, _| false).err().unwrap();
        assert!(err.to_string().contains("not a proper prefix"), "{err}");
    }
}
