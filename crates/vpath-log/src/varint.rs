//! LEB128 varints and zigzag, on byte slices.

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
#[inline]
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes `v` into `buf` at `*n`; `buf` must have 10 bytes of room.
#[inline]
pub fn put_arr(buf: &mut [u8], n: &mut usize, mut v: u64) {
    while v >= 0x80 {
        buf[*n] = v as u8 | 0x80;
        *n += 1;
        v >>= 7;
    }
    buf[*n] = v as u8;
    *n += 1;
}

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline]
pub fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
pub fn unzigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the varint.
    Eof,
    /// More than 10 bytes, or a 10th byte above 1: not a u64.
    Overlong,
}

impl VarintError {
    pub fn describe(self) -> &'static str {
        match self {
            VarintError::Eof => "the data ends inside a varint",
            VarintError::Overlong => "varint does not fit in 64 bits",
        }
    }
}

/// Reads an unsigned LEB128 varint from `buf` at `*pos`, advancing `*pos`.
#[inline(always)]
pub fn get(buf: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    let p = *pos;
    // Fast path: one byte.
    if let Some(&b) = buf.get(p) {
        if b < 0x80 {
            *pos = p + 1;
            return Ok(b as u64);
        }
    }
    // Fast path: 10 bytes available, no bounds checks per byte.
    if let Some(w) = buf.get(p..p + 10) {
        let w: &[u8; 10] = w.try_into().expect("10 bytes");
        let mut v: u64 = 0;
        for (i, &b) in w.iter().enumerate() {
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(VarintError::Overlong);
                }
                *pos = p + i + 1;
                return Ok(v);
            }
        }
        return Err(VarintError::Overlong);
    }
    get_slow(buf, pos)
}

#[cold]
#[inline(never)]
fn get_slow(buf: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    let mut i = *pos;
    loop {
        let Some(&b) = buf.get(i) else {
            return Err(VarintError::Eof);
        };
        i += 1;
        if shift == 63 && b > 1 {
            return Err(VarintError::Overlong);
        }
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            *pos = i;
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err(VarintError::Overlong);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put(&mut out, v);
            let mut arr = [0u8; 10];
            let mut n = 0;
            put_arr(&mut arr, &mut n, v);
            assert_eq!(&arr[..n], &out[..]);
            let mut pos = 0;
            assert_eq!(get(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
            // Every strict prefix is an EOF.
            for cut in 0..out.len() {
                let mut pos = 0;
                assert_eq!(get(&out[..cut], &mut pos), Err(VarintError::Eof));
            }
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        for v in [0i32, -1, 1, i32::MIN, i32::MAX] {
            assert_eq!(unzigzag32(zigzag32(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn fast_and_slow_paths_agree() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put(&mut out, v);
            let short_len = out.len();
            out.extend_from_slice(&[0xaa; 12]);
            let (mut p1, mut p2) = (0, 0);
            assert_eq!(get(&out, &mut p1), Ok(v));
            assert_eq!(get_slow(&out[..short_len], &mut p2), Ok(v));
            assert_eq!((p1, p2), (short_len, short_len));
        }
        let mut ten = [0x80u8; 12];
        ten[9] = 0x02;
        assert_eq!(get(&ten, &mut 0), Err(VarintError::Overlong));
        assert_eq!(get_slow(&ten, &mut 0), Err(VarintError::Overlong));
    }

    #[test]
    fn rejects_overlong() {
        let mut pos = 0;
        let eleven = [0xffu8; 11];
        assert_eq!(get(&eleven, &mut pos), Err(VarintError::Overlong));
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        assert_eq!(get(&ten, &mut pos), Err(VarintError::Overlong));
        ten[9] = 0x01;
        assert_eq!(get(&ten, &mut pos), Ok(u64::MAX));
    }
}
