//! [`KeyHasher`]: the hash of keys in this crate's in-process maps.

/// Hashes keys in maps (the first level, hot-key sketches) with XXH3 under a random seed:
/// cheaper than SipHash for short keys, and not predictable from outside the process.
#[derive(Clone)]
pub(crate) struct KeyHasher(u64);

impl std::hash::BuildHasher for KeyHasher {
    type Hasher = KeyHash;

    fn build_hasher(&self) -> KeyHash {
        KeyHash(self.0)
    }
}

pub(crate) struct KeyHash(u64);

impl std::hash::Hasher for KeyHash {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u8(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl KeyHasher {
    /// A hasher under a fresh random seed.
    pub(crate) fn random() -> Self {
        KeyHasher(fastrand::u64(..))
    }
}
