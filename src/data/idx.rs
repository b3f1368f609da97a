//! The IDX format of MNIST-style files: a big-endian header (magic number, dimensions) then `u8` data.
//!
//! Files may be raw or gzipped (name ending in `.gz`). Structure is checked before the checksum, so a
//! truncated file or a wrong magic number is reported as such rather than as a checksum mismatch.
//!
//! Files are read as a stream bounded by the size the header announces: that size is computed with
//! checked arithmetic and must stay under [`MAX_IDX_BYTES`] and the memory available, so a gzip bomb or
//! a huge sparse file is an error after a few bytes, not gigabytes of memory.

use super::DataError;
use md5::{Digest, Md5};
use std::io::{BufReader, Read};
use std::path::Path;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The largest data an IDX file may announce (1 GiB; MNIST's largest file holds 47 MB).
pub const MAX_IDX_BYTES: u64 = 1 << 30;
/// The most trailing bytes counted past the announced end before reporting them (the rest is not read).
const TRAILING_COUNT_CAP: u64 = 1 << 20;

/// Images read from an IDX file: `count` images of `rows x cols` bytes, row-major, one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// `count * rows * cols` grey levels (0 = background, 255 = ink).
    pub pixels: Vec<u8>,
}

/// Reads a file whole (at most [`MAX_IDX_BYTES`]), decompressing it when its name ends in `.gz`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let (mut reader, raw_len) = open(path)?;
    if let Some(len) = raw_len.filter(|&len| len > MAX_IDX_BYTES) {
        return Err(too_large(path, format!("it holds {len} bytes, more than the {MAX_IDX_BYTES} allowed")));
    }
    let mut out = Vec::new();
    read_up_to(path, &mut reader, MAX_IDX_BYTES, &mut out, 0)?;
    if count_rest(path, &mut reader, 1, out.len())? > 0 {
        return Err(too_large(path, format!("it holds more than {} bytes", MAX_IDX_BYTES)));
    }
    Ok(out)
}

/// Lower-case hexadecimal md5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an IDX images file (raw or `.gz`), checking its md5 when `expected_md5` is given.
pub fn read_idx_images(path: &Path, expected_md5: Option<&str>) -> Result<IdxImages, DataError> {
    let (dims, pixels) = read_idx(path, IMAGES_MAGIC, 3, "images", expected_md5)?;
    Ok(IdxImages { count: dims[0], rows: dims[1], cols: dims[2], pixels })
}

/// Reads an IDX labels file (raw or `.gz`), checking its md5 when `expected_md5` is given.
pub fn read_idx_labels(path: &Path, expected_md5: Option<&str>) -> Result<Vec<u8>, DataError> {
    Ok(read_idx(path, LABELS_MAGIC, 1, "labels", expected_md5)?.1)
}

/// Parses the bytes of an uncompressed IDX images file; `path` only names the file in errors.
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<IdxImages, DataError> {
    let dims = parse_header(path, bytes, IMAGES_MAGIC, 3, "images")?;
    let body = checked_body(path, bytes, 16, body_len(path, &dims)?)?;
    Ok(IdxImages { count: dims[0], rows: dims[1], cols: dims[2], pixels: body.to_vec() })
}

/// Parses the bytes of an uncompressed IDX labels file; `path` only names the file in errors.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    let dims = parse_header(path, bytes, LABELS_MAGIC, 1, "labels")?;
    Ok(checked_body(path, bytes, 8, body_len(path, &dims)?)?.to_vec())
}

/// Opens a file as a byte stream (decompressed when it ends in `.gz`), with its length when raw.
fn open(path: &Path) -> Result<(Box<dyn Read>, Option<u64>), DataError> {
    let io_err = |source| DataError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io_err)?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok((Box::new(flate2::read::GzDecoder::new(BufReader::new(file))), None))
    } else {
        let len = file.metadata().map_err(io_err)?.len();
        Ok((Box::new(BufReader::new(file)), Some(len)))
    }
}

/// Streams a whole IDX file: header, then exactly the data it announces, then the md5 check.
fn read_idx(
    path: &Path,
    magic: u32,
    dims: usize,
    what: &'static str,
    expected_md5: Option<&str>,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let (mut reader, raw_len) = open(path)?;
    let header_len = 4 + 4 * dims;
    let mut header = Vec::with_capacity(header_len);
    read_up_to(path, &mut reader, header_len as u64, &mut header, 0)?;
    let sizes = parse_header(path, &header, magic, dims, what)?;
    let len = body_len(path, &sizes)?;
    let expected = header_len + len;
    if let Some(found) = raw_len {
        // A raw file's size is known: compare it before reading (a sparse 8 GiB file costs nothing).
        let found = usize::try_from(found).unwrap_or(usize::MAX);
        if found > expected {
            return Err(DataError::TrailingBytes { path: path.to_path_buf(), expected, found });
        }
    }
    let mut body = Vec::new();
    read_up_to(path, &mut reader, len as u64, &mut body, header_len)?;
    if body.len() < len {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected, found: header_len + body.len() });
    }
    let extra = count_rest(path, &mut reader, TRAILING_COUNT_CAP, expected)?;
    if extra > 0 {
        return Err(DataError::TrailingBytes { path: path.to_path_buf(), expected, found: expected + extra });
    }
    if let Some(expected) = expected_md5 {
        let mut hasher = Md5::new();
        hasher.update(&header);
        hasher.update(&body);
        let found = hex(&hasher.finalize());
        if found != expected {
            return Err(DataError::Checksum { path: path.to_path_buf(), expected: expected.to_string(), found });
        }
    }
    Ok((sizes, body))
}

/// Appends at most `max` bytes of `reader` to `out`; `before` bytes were read earlier (for messages).
fn read_up_to(path: &Path, reader: &mut dyn Read, max: u64, out: &mut Vec<u8>, before: usize) -> Result<(), DataError> {
    let start = out.len();
    reader.take(max).read_to_end(out).map(|_| ()).map_err(|e| stream_error(path, e, before + out.len() - start))
}

/// Counts (without keeping) up to `cap` bytes left in `reader`; `before` bytes were read earlier.
fn count_rest(path: &Path, reader: &mut dyn Read, cap: u64, before: usize) -> Result<usize, DataError> {
    let n = std::io::copy(&mut reader.take(cap), &mut std::io::sink()).map_err(|e| stream_error(path, e, before))?;
    Ok(n as usize)
}

/// The error for a failed read: an early end of a gzip stream, a corrupt one, or an I/O error.
fn stream_error(path: &Path, e: std::io::Error, found: usize) -> DataError {
    let is_gz = path.extension().is_some_and(|e| e == "gz");
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof if is_gz => DataError::TruncatedGzip { path: path.to_path_buf(), found },
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData if is_gz => {
            DataError::BadGzip { path: path.to_path_buf(), message: e.to_string() }
        }
        _ => DataError::Io { path: path.to_path_buf(), source: e },
    }
}

fn too_large(path: &Path, message: String) -> DataError {
    DataError::TooLarge { path: path.to_path_buf(), message }
}

/// The data size a header announces (the product of its dimensions), checked against overflow,
/// [`MAX_IDX_BYTES`] and the memory available.
fn body_len(path: &Path, dims: &[usize]) -> Result<usize, DataError> {
    let shown = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" × ");
    let len = dims.iter().try_fold(1u128, |acc, &d| acc.checked_mul(d as u128));
    let len = match len {
        Some(len) if len <= u128::from(MAX_IDX_BYTES) => len,
        _ => {
            let limit = crate::limits::format_bytes(u128::from(MAX_IDX_BYTES));
            return Err(too_large(path, format!("its header announces {shown} bytes, more than the {limit} allowed")));
        }
    };
    crate::limits::check_memory(&format!("its header ({shown})"), len, 1).map_err(|m| too_large(path, m))?;
    Ok(len as usize)
}

/// Checks the magic number and returns the `dims` dimension sizes that follow it.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    magic: u32,
    dims: usize,
    what: &'static str,
) -> Result<Vec<usize>, DataError> {
    let header_len = 4 + 4 * dims;
    if bytes.len() < header_len {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected: header_len, found: bytes.len() });
    }
    let word = |i: usize| u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    if word(0) != magic {
        return Err(DataError::BadMagic { path: path.to_path_buf(), expected: magic, found: word(0), what });
    }
    Ok((1..=dims).map(|i| word(i) as usize).collect())
}

/// Returns the data after the header, checking that its length is exactly `len`.
fn checked_body<'a>(path: &Path, bytes: &'a [u8], header_len: usize, len: usize) -> Result<&'a [u8], DataError> {
    let expected = header_len + len;
    let path = path.to_path_buf();
    match bytes.len() {
        n if n < expected => Err(DataError::Truncated { path, expected, found: n }),
        n if n > expected => Err(DataError::TrailingBytes { path, expected, found: n }),
        _ => Ok(&bytes[header_len..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("glimpse-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        std::iter::once(magic).chain(dims.iter().copied()).flat_map(u32::to_be_bytes).collect()
    }

    fn gzip(parts: &[&[u8]], zeros: usize) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for part in parts {
            encoder.write_all(part).unwrap();
        }
        let block = vec![0u8; 1 << 20];
        for _ in 0..zeros / block.len() {
            encoder.write_all(&block).unwrap();
        }
        encoder.finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_is_refused_after_reading_what_the_header_announces() {
        // 10 labels announced, then 32 MiB of zeros (a 32 KB file).
        let bomb = gzip(&[&header(LABELS_MAGIC, &[10]), &[1; 10]], 32 << 20);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let path = temp_file("bomb-labels.gz", &bomb);
        let started = std::time::Instant::now();
        let err = read_idx_labels(&path, None).unwrap_err();
        assert!(
            matches!(err, DataError::TrailingBytes { expected: 18, found, .. } if found as u64 == 18 + TRAILING_COUNT_CAP),
            "{err:?}"
        );
        // Only about a megabyte past the end was decompressed, not the 32 MiB.
        assert!(started.elapsed().as_secs_f64() < 2.0, "{:?}", started.elapsed());
        // A bomb that announces its size honestly is over the cap before any data is read.
        let path = temp_file("bomb-images.gz", &gzip(&[&header(IMAGES_MAGIC, &[1 << 20, 64, 64])], 0));
        let err = read_idx_images(&path, None).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("1048576 × 64 × 64 bytes, more than the 1.0 GiB allowed"), "{err}");
        // A small valid gzip file reads whole.
        let path = temp_file("ok-labels.gz", &gzip(&[&header(LABELS_MAGIC, &[3]), &[1, 2, 3]], 0));
        assert_eq!(read_bytes(&path).unwrap().len(), 11);
        assert_eq!(read_idx_labels(&path, None).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn a_header_whose_size_product_overflows_is_an_error() {
        let bytes = header(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX]);
        let err = parse_images(Path::new("overflow"), &bytes).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("4294967295 × 4294967295 × 4294967295 bytes"), "{err}");
        let path = temp_file("overflow-images", &bytes);
        assert!(matches!(read_idx_images(&path, None), Err(DataError::TooLarge { .. })));
        // A product that fits but exceeds the memory cap, through the byte parser.
        let err = parse_labels(Path::new("big"), &header(LABELS_MAGIC, &[u32::MAX])).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn a_huge_sparse_file_is_refused_without_being_read() {
        let path = temp_file("sparse-labels", &header(LABELS_MAGIC, &[4]));
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(8 << 30).unwrap(); // 8 GiB of holes: costs no disk
        let started = std::time::Instant::now();
        let err = read_idx_labels(&path, None).unwrap_err();
        assert!(matches!(err, DataError::TrailingBytes { expected: 12, found, .. } if found == 8 << 30), "{err:?}");
        assert!(started.elapsed().as_secs_f64() < 1.0);
        let err = read_bytes(&path).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn valid_truncated_and_corrupt_streams() {
        let mut file = header(IMAGES_MAGIC, &[2, 2, 3]);
        file.extend(0..12u8);
        let raw = temp_file("ok-images", &file);
        let images = read_idx_images(&raw, Some(&md5_hex(&file))).unwrap();
        assert_eq!((images.count, images.rows, images.cols, images.pixels.len()), (2, 2, 3, 12));
        assert!(matches!(read_idx_images(&raw, Some("00")), Err(DataError::Checksum { .. })));
        let cut = temp_file("cut-images", &file[..20]);
        assert!(matches!(read_idx_images(&cut, None), Err(DataError::Truncated { expected: 28, found: 20, .. })));
        let gz = gzip(&[&file], 0);
        let cut = temp_file("cut-images.gz", &gz[..gz.len() - 12]);
        assert!(matches!(read_idx_images(&cut, None), Err(DataError::TruncatedGzip { .. })));
        let mut bad = gz.clone();
        bad[12] ^= 0xff;
        let bad = temp_file("bad-images.gz", &bad);
        let err = read_idx_images(&bad, None).unwrap_err();
        assert!(
            matches!(err, DataError::BadGzip { .. } | DataError::TruncatedGzip { .. } | DataError::BadMagic { .. }),
            "{err:?}"
        );
    }
}
