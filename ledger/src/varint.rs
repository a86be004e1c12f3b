//! LEB128 varints and zigzag integers, the units of the ledger's blobs (task runs in
//! [`crate::store`], usage series in [`crate::timeline`]). A leaf: it imports nothing.

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

pub(crate) fn get_zigzag(b: &[u8], at: &mut usize) -> Option<i64> {
    let v = get_varint(b, at)?;
    Some(((v >> 1) as i64) ^ -((v & 1) as i64))
}
