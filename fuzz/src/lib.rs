//! What the fuzz targets share: how one fuzz input also decides where the reads that deliver it end.

/// A tiny deterministic PRNG (xorshift64), so that a fuzz input replays exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u8) -> Rng {
        Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// End offsets of the reads that deliver `len` bytes: a mix of tiny reads, whole SRT-like runs of packets and
/// arbitrary sizes up to 1500, from `seed`. Seed 0 delivers everything in one read.
pub fn boundaries(len: usize, seed: u8) -> Vec<usize> {
    if seed == 0 {
        return vec![len];
    }
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let r = rng.next();
        let size = match r % 4 {
            0 => 1 + (r >> 8) % 8,
            1 => 188 * (1 + (r >> 8) % 7),
            _ => 1 + (r >> 8) % 1500,
        };
        at = at.saturating_add(size as usize).min(len);
        out.push(at);
    }
    out
}

/// The reads of `data` from offset `from` on, cut at the same absolute `boundaries` (the first read ends at the
/// first boundary past `from`).
pub fn pieces<'a>(data: &'a [u8], from: usize, boundaries: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut start = from;
    boundaries.iter().copied().filter(move |end| *end > from).map(move |end| {
        let piece = &data[start..end];
        start = end;
        piece
    })
}
