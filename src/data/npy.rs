//! NumPy's `.npy` format (versions 1 to 3), for exchanging arrays with Python: generated images
//! as `uint8 [N, H, W]` ([`write_npy_u8`], what `numpy.load` reads back), and [`read_npy`] for
//! `uint8`, `float32` and integer (label) arrays in either byte order.
//!
//! A file is the magic `\x93NUMPY`, a version, the length of a header, the header (a Python dict
//! literal: `descr`, `fortran_order`, `shape`) padded with spaces to a multiple of 64 bytes and
//! ended by a newline, then the raw data in C order.
//!
//! ```
//! use glimpse::data::npy::{read_npy, write_npy_u8, NpyData};
//! let path = std::env::temp_dir().join(format!("npy-doc-{}.npy", std::process::id()));
//! write_npy_u8(&path, &[2, 3], &[0, 1, 2, 3, 4, 255]).unwrap();
//! let array = read_npy(&path).unwrap();
//! assert_eq!(array.shape, vec![2, 3]);
//! assert_eq!(array.data, NpyData::U8(vec![0, 1, 2, 3, 4, 255]));
//! # std::fs::remove_file(&path).unwrap();
//! ```

use std::path::Path;

use super::DataError;

/// The first six bytes of every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The dimensions, outermost first (C order); empty for a scalar.
    pub shape: Vec<usize>,
    /// The values in C order.
    pub data: NpyData,
}

/// The values of an [`NpyArray`], by element type.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `uint8` (`|u1`).
    U8(Vec<u8>),
    /// `float32` (`<f4` or `>f4`).
    F32(Vec<f32>),
    /// Any other integer type (`i1`, `i2`, `u2`, `i4`, `u4`, `i8`, `u8`), e.g. class labels.
    Int(Vec<i64>),
}

impl NpyData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            NpyData::U8(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::Int(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes `bytes` as a `uint8` array of `shape` (C order) to `path`, atomically (a temporary file,
/// then a rename). The number of bytes must be the product of the shape.
pub fn write_npy_u8(path: &Path, shape: &[usize], bytes: &[u8]) -> Result<(), DataError> {
    let bad = |message: String| DataError::Npy { path: path.to_path_buf(), message };
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| bad("shape overflows".into()))?;
    if count != bytes.len() {
        return Err(bad(format!("shape {shape:?} holds {count} values, {} bytes were given", bytes.len())));
    }
    let file = encode_npy("|u1", shape, bytes);
    crate::checkpoint::write_atomic(path, &file).map_err(|source| DataError::Write { path: path.to_path_buf(), source })
}

/// The bytes of a version 1.0 `.npy` file of `data` (already in bytes) with element type `descr`
/// (NumPy's, e.g. `<f4`, `<i8`) and `shape`; nothing is checked (tests write odd files with it).
///
/// ```
/// use glimpse::data::npy::{encode_npy, parse_npy, NpyData};
/// let bytes = encode_npy("<i8", &[2], &[3i64.to_le_bytes(), 9i64.to_le_bytes()].concat());
/// assert_eq!(parse_npy(&bytes).unwrap().data, NpyData::Int(vec![3, 9]));
/// ```
pub fn encode_npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + header length (2) + header + newline, padded to 64 bytes.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.extend(std::iter::repeat_n(' ', unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Reads a `.npy` file holding `uint8`, `float32` or integers (C order, either byte order).
pub fn read_npy(path: &Path) -> Result<NpyArray, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    parse_npy(&bytes).map_err(|message| DataError::Npy { path: path.to_path_buf(), message })
}

/// Parses the bytes of a `.npy` file; the error says what is wrong.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (it does not start with \\x93NUMPY)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("format version {v}.{} is not supported (1 to 3 are)", bytes[7])),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| format!("truncated: the header announces {header_len} bytes, the file has {}", bytes.len()))?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "the header is not text".to_string())?;
    let header = Header::parse(header)?;
    let (kind, size, little) = element_type(&header.descr)?;
    if header.fortran_order && header.shape.len() > 1 {
        return Err("Fortran-ordered arrays are not supported (save with numpy.ascontiguousarray)".into());
    }
    let count = header.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("the shape overflows")?;
    let data = &bytes[end..];
    let expected = count.checked_mul(size).ok_or("the shape overflows")?;
    if data.len() != expected {
        let what = if data.len() < expected { "truncated" } else { "too long" };
        return Err(format!(
            "{what}: shape {:?} of {} needs {expected} data bytes, the file has {}",
            header.shape,
            header.descr,
            data.len()
        ));
    }
    let word = |chunk: &[u8]| {
        let mut b = [0u8; 8];
        if little {
            b[..size].copy_from_slice(chunk);
            u64::from_le_bytes(b)
        } else {
            b[8 - size..].copy_from_slice(chunk);
            u64::from_be_bytes(b)
        }
    };
    let data = match kind {
        'u' if size == 1 => NpyData::U8(data.to_vec()),
        'f' => NpyData::F32(data.chunks_exact(4).map(|c| f32::from_bits(word(c) as u32)).collect()),
        'u' => NpyData::Int(
            data.chunks_exact(size)
                .map(|c| i64::try_from(word(c)).map_err(|_| format!("value {} does not fit an i64", word(c))))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            // Signed: sign-extend from `size` bytes.
            let shift = 64 - 8 * size as u32;
            NpyData::Int(data.chunks_exact(size).map(|c| ((word(c) << shift) as i64) >> shift).collect())
        }
    };
    Ok(NpyArray { shape: header.shape, data })
}

/// `(kind, bytes, little-endian)` of a supported `descr`: `u1`, `f4`, or an integer type.
fn element_type(descr: &str) -> Result<(char, usize, bool), String> {
    let unsupported = || format!("element type '{descr}' is not supported (uint8, float32 or integers are)");
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => descr.split_at(1),
        _ => ("", descr),
    };
    let mut chars = code.chars();
    let kind = chars.next().ok_or_else(unsupported)?;
    let size: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    let ok = match kind {
        'u' | 'i' => [1, 2, 4, 8].contains(&size),
        'f' => size == 4,
        _ => false,
    };
    if !ok {
        return Err(unsupported());
    }
    Ok((kind, size, order != ">" || size == 1))
}

/// The three keys of a `.npy` header.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    /// Parses the dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
    fn parse(text: &str) -> Result<Self, String> {
        let bad = |what: &str| format!("bad header ({what}): {}", text.trim_end());
        let inner = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(|| bad("not a dict"))?;
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        let mut rest = inner.trim_start();
        while !rest.is_empty() {
            let (key, after) = quoted(rest).ok_or_else(|| bad("a key is not a quoted string"))?;
            let after = after.trim_start().strip_prefix(':').ok_or_else(|| bad("no ':' after a key"))?.trim_start();
            rest = match key {
                "descr" => {
                    let (value, after) = quoted(after).ok_or_else(|| bad("descr is not a string"))?;
                    descr = Some(value.to_string());
                    after
                }
                "fortran_order" => {
                    let (value, after) = match after {
                        a if a.starts_with("True") => (true, &a[4..]),
                        a if a.starts_with("False") => (false, &a[5..]),
                        _ => return Err(bad("fortran_order is not True or False")),
                    };
                    fortran_order = Some(value);
                    after
                }
                "shape" => {
                    let close = after.find(')').filter(|_| after.starts_with('(')).ok_or_else(|| bad("shape"))?;
                    let dims = after[1..close].split(',').map(str::trim).filter(|d| !d.is_empty());
                    shape = Some(dims.map(|d| d.parse().map_err(|_| bad("shape"))).collect::<Result<_, _>>()?);
                    &after[close + 1..]
                }
                other => return Err(bad(&format!("unknown key '{other}'"))),
            };
            rest = rest.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        match (descr, fortran_order, shape) {
            (Some(descr), Some(fortran_order), Some(shape)) => Ok(Self { descr, fortran_order, shape }),
            _ => Err(bad("descr, fortran_order and shape are all needed")),
        }
    }
}

/// A string in single or double quotes at the start of `text`, and what follows it.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let quote = text.chars().next().filter(|&c| c == '\'' || c == '"')?;
    let end = text[1..].find(quote)? + 1;
    Some((&text[1..end], &text[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[2, 3]` array of type `descr`, laid out as `numpy.save` lays one out (version 1.0).
    fn numpy_file(descr: &str, data: &[u8]) -> Vec<u8> {
        encode_npy(descr, &[2, 3], data)
    }

    #[test]
    fn u8_round_trip_header_and_alignment() {
        let dir = std::env::temp_dir().join(format!("glimpse-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let images: Vec<u8> = (0..3 * 28 * 28).map(|i| (i % 256) as u8).collect();
        write_npy_u8(&path, &[3, 28, 28], &images).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "data starts 64-byte aligned");
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert_eq!(header.trim_end(), "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 28, 28), }");
        assert!(header.ends_with('\n'));
        let array = read_npy(&path).unwrap();
        assert_eq!((array.shape, array.data), (vec![3, 28, 28], NpyData::U8(images)));
        write_npy_u8(&path, &[4], &[9, 8, 7, 6]).unwrap();
        let header = String::from_utf8_lossy(&std::fs::read(&path).unwrap()[10..]).into_owned();
        assert!(header.contains("'shape': (4,)"), "{header}");
        assert_eq!(read_npy(&path).unwrap().shape, vec![4]);
        let err = write_npy_u8(&path, &[2, 2], &[1, 2, 3]).unwrap_err().to_string();
        assert!(err.contains("holds 4 values, 3 bytes"), "{err}");
        let missing = dir.join("no-such-dir").join("x.npy");
        let err = write_npy_u8(&missing, &[1], &[0]).unwrap_err().to_string();
        assert!(err.starts_with("cannot write") && err.contains("no-such-dir"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn floats_and_integer_labels_in_both_byte_orders() {
        let floats: Vec<u8> = [0.0f32, 1.5, -2.0, 3.25, 1e-3, f32::MAX].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse_npy(&numpy_file("<f4", &floats)).unwrap();
        assert_eq!(a.data, NpyData::F32(vec![0.0, 1.5, -2.0, 3.25, 1e-3, f32::MAX]));
        let big: Vec<u8> = [7i64, -1, 0, 9, i64::MIN, 3].iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(parse_npy(&numpy_file(">i8", &big)).unwrap().data, NpyData::Int(vec![7, -1, 0, 9, i64::MIN, 3]));
        let i2: Vec<u8> = [-3i16, 2, 1, 0, -32768, 32767].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(parse_npy(&numpy_file("<i2", &i2)).unwrap().data, NpyData::Int(vec![-3, 2, 1, 0, -32768, 32767]));
        let u4: Vec<u8> = [0u32, 1, 2, 3, 4, u32::MAX].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            parse_npy(&numpy_file("<u4", &u4)).unwrap().data,
            NpyData::Int(vec![0, 1, 2, 3, 4, u32::MAX as i64])
        );
        let labels = parse_npy(&numpy_file("|i1", &[0, 1, 2, 255, 9, 5])).unwrap();
        assert_eq!(labels.data, NpyData::Int(vec![0, 1, 2, -1, 9, 5]));
        // Version 2 (4-byte header length) and double quotes, as other writers produce.
        let header = "{\"descr\": \"<u1\", \"fortran_order\": False, \"shape\": (2,)}\n";
        let mut v2 = MAGIC.to_vec();
        v2.extend_from_slice(&[2, 0]);
        v2.extend_from_slice(&(header.len() as u32).to_le_bytes());
        v2.extend_from_slice(header.as_bytes());
        v2.extend_from_slice(&[5, 6]);
        assert_eq!(parse_npy(&v2).unwrap(), NpyArray { shape: vec![2], data: NpyData::U8(vec![5, 6]) });
    }

    #[test]
    fn bad_files_are_errors_that_say_why() {
        let good = numpy_file("|u1", &[1, 2, 3, 4, 5, 6]);
        let err = |bytes: &[u8]| parse_npy(bytes).unwrap_err();
        assert!(err(b"PK\x03\x04 not numpy").contains("not a .npy file"));
        assert!(
            err(&good[..good.len() - 1]).contains("truncated: shape [2, 3] of |u1 needs 6 data bytes, the file has 5")
        );
        assert!(err(&[&good[..], &[0]].concat()).contains("too long"));
        assert!(err(&good[..40]).contains("the header announces"));
        assert!(err(&numpy_file("<f8", &[0; 48])).contains("'<f8' is not supported"));
        assert!(err(&numpy_file("<U3", &[0; 72])).contains("not supported"));
        let at = good.windows(5).position(|w| w == b"False").unwrap();
        let mut fortran = good.clone();
        fortran[at..at + 5].copy_from_slice(b"True ");
        assert!(err(&fortran).contains("Fortran"));
        let mut v9 = good.clone();
        v9[6] = 9;
        assert!(err(&v9).contains("version 9.0"));
        let huge: Vec<u8> = [u64::MAX; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(err(&numpy_file("<u8", &huge)).contains("does not fit an i64"));
        let missing = read_npy(Path::new("/nonexistent/x.npy")).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/x.npy"), "{missing}");
    }

    /// Files numpy itself writes (when `GLIMPSE_PYTHON` names a Python with numpy).
    #[test]
    fn files_numpy_writes_are_read() {
        let Some(py) = std::env::var("GLIMPSE_PYTHON").ok().filter(|p| !p.is_empty()) else {
            eprintln!("skipped: set GLIMPSE_PYTHON to a Python with numpy");
            return;
        };
        let dir = std::env::temp_dir().join(format!("glimpse-npy-numpy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = "import numpy as np, sys\nd = sys.argv[1]\n\
            np.save(d + '/u8.npy', (np.arange(2 * 3 * 4) * 11 % 256).astype(np.uint8).reshape(2, 3, 4))\n\
            np.save(d + '/f4.npy', np.array([[0.5, -1.25], [3e-8, 7.0]], dtype='<f4'))\n\
            np.save(d + '/f4be.npy', np.array([1.5, 2.5], dtype='>f4'))\n\
            np.save(d + '/labels.npy', np.array([3, 1, 4, 1, 5], dtype=np.int64))\n\
            np.save(d + '/i4be.npy', np.array([-7, 70000], dtype='>i4'))\n\
            np.save(d + '/scalar.npy', np.uint8(9))\n";
        let out = std::process::Command::new(&py).args(["-c", script, dir.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "numpy: {}", String::from_utf8_lossy(&out.stderr));
        let read = |name: &str| read_npy(&dir.join(name)).unwrap();
        let u8s: Vec<u8> = (0..24u32).map(|i| (i * 11 % 256) as u8).collect();
        assert_eq!(read("u8.npy"), NpyArray { shape: vec![2, 3, 4], data: NpyData::U8(u8s) });
        assert_eq!(read("f4.npy"), NpyArray { shape: vec![2, 2], data: NpyData::F32(vec![0.5, -1.25, 3e-8, 7.0]) });
        assert_eq!(read("f4be.npy").data, NpyData::F32(vec![1.5, 2.5]));
        assert_eq!(read("labels.npy"), NpyArray { shape: vec![5], data: NpyData::Int(vec![3, 1, 4, 1, 5]) });
        assert_eq!(read("i4be.npy").data, NpyData::Int(vec![-7, 70000]));
        assert_eq!(read("scalar.npy"), NpyArray { shape: vec![], data: NpyData::U8(vec![9]) });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
