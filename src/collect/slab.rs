//! memcached's slab classes and item accounting: where a stored item lands
//! and how many bytes of its chunk it leaves unused.
//!
//! The class table follows memcached 1.6's `slabs_init`: the first chunk is
//! the item header plus `-n` (48) bytes, each next one `-f` (1.25) times the
//! last rounded up to 8 bytes, until a class would pass
//! `slab_chunk_max / factor`; the last class is `slab_chunk_max` (512 KiB)
//! itself. `memcached -vv` prints the same table (a test compares).

/// `sizeof(item)` on a 64-bit build: the header every item carries.
pub const ITEM_HEADER: u64 = 48;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlabConfig {
    /// `-f`: chunk size growth factor.
    pub factor: f64,
    /// `-n`: minimum space for key, value and flags in the smallest chunk.
    pub min_space: u64,
    /// `slab_chunk_max`: the largest chunk; bigger items are chained.
    pub chunk_max: u64,
}

impl Default for SlabConfig {
    fn default() -> Self {
        SlabConfig {
            factor: 1.25,
            min_space: 48,
            chunk_max: 512 * 1024,
        }
    }
}

/// The chunk sizes of every class, smallest first.
#[derive(Debug, Clone)]
pub struct SlabClasses {
    pub sizes: Vec<u64>,
    pub chunk_max: u64,
}

impl SlabClasses {
    pub fn new(c: &SlabConfig) -> SlabClasses {
        let factor = if c.factor > 1.0 { c.factor } else { 1.25 };
        let chunk_max = c.chunk_max.max(ITEM_HEADER + c.min_space);
        let mut sizes = Vec::new();
        let mut size = (ITEM_HEADER + c.min_space) as f64;
        // memcached stops at 63 classes (MAX_NUMBER_OF_SLAB_CLASSES - 1).
        while sizes.len() < 62 {
            if chunk_max as f64 / factor < size {
                break;
            }
            let s = (size as u64).div_ceil(8) * 8;
            sizes.push(s);
            size = s as f64 * factor;
        }
        sizes.push(chunk_max);
        SlabClasses { sizes, chunk_max }
    }

    /// The class (index into `sizes`) an item of `total` bytes is stored
    /// in, and the bytes it occupies there: its chunk, or for an item
    /// larger than `chunk_max` the whole chunks its chain takes.
    pub fn place(&self, total: u64) -> (usize, u64) {
        match self.sizes.partition_point(|&s| s < total) {
            i if i < self.sizes.len() => (i, self.sizes[i]),
            _ => (
                self.sizes.len() - 1,
                total.div_ceil(self.chunk_max) * self.chunk_max,
            ),
        }
    }
}

/// Bytes memcached 1.6 accounts for an item: header, key and its NUL, the
/// value with its `\r\n`, the CAS, and 4 bytes of client flags when they
/// are not 0 (memtap does not keep flags: it assumes 0).
pub fn item_size(key_len: usize, value_len: u64) -> u64 {
    super::mrc::item_bytes(key_len, value_len, false) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classes_are_memcached_1_6s() {
        // `memcached -vv` (1.6.18, defaults): 39 classes.
        let c = SlabClasses::new(&SlabConfig::default());
        assert_eq!(c.sizes.len(), 39);
        assert_eq!(&c.sizes[..6], &[96, 120, 152, 192, 240, 304]);
        assert_eq!(c.sizes[37], 394_840);
        assert_eq!(c.sizes[38], 524_288);
        // `memcached -vv -f 1.1 -n 32`.
        let c = SlabClasses::new(&SlabConfig {
            factor: 1.1,
            min_space: 32,
            ..SlabConfig::default()
        });
        assert_eq!(&c.sizes[..5], &[80, 88, 96, 112, 128]);
    }

    #[test]
    fn items_land_in_the_first_class_they_fit() {
        let c = SlabClasses::new(&SlabConfig::default());
        // A 10-byte key with a 20-byte value: 48+10+1+22+8 = 89 bytes.
        assert_eq!(item_size(10, 20), 89);
        assert_eq!(c.place(89), (0, 96));
        assert_eq!(c.place(96), (0, 96));
        assert_eq!(c.place(97), (1, 120));
        // A 1 MiB item is chained over two 512 KiB chunks.
        assert_eq!(c.place(1 << 20), (38, 1 << 20));
        assert_eq!(c.place((1 << 20) + 1), (38, 3 << 19));
    }
}
