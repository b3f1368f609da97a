//! The IDX format of MNIST-style files: a big-endian header (magic number, dimensions) then `u8` data.
//!
//! Files may be raw or gzipped (name ending in `.gz`). Structure is checked before the checksum, so a
//! truncated file or a wrong magic number is reported as such rather than as a checksum mismatch.

use super::DataError;
use md5::{Digest, Md5};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

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

/// Reads a file whole, decompressing it when its name ends in `.gz`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let io_err = |source| DataError::Io { path: path.to_path_buf(), source };
    let file = std::fs::read(path).map_err(io_err)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::with_capacity(file.len() * 5);
        flate2::read::GzDecoder::new(&file[..]).read_to_end(&mut out).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                DataError::TruncatedGzip { path: path.to_path_buf(), found: out.len() }
            }
            _ => DataError::BadGzip { path: path.to_path_buf(), message: e.to_string() },
        })?;
        Ok(out)
    } else {
        Ok(file)
    }
}

/// Lower-case hexadecimal md5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an IDX images file (raw or `.gz`), checking its md5 when `expected_md5` is given.
pub fn read_idx_images(path: &Path, expected_md5: Option<&str>) -> Result<IdxImages, DataError> {
    let bytes = read_bytes(path)?;
    let images = parse_images(path, &bytes)?;
    verify_md5(path, &bytes, expected_md5)?;
    Ok(images)
}

/// Reads an IDX labels file (raw or `.gz`), checking its md5 when `expected_md5` is given.
pub fn read_idx_labels(path: &Path, expected_md5: Option<&str>) -> Result<Vec<u8>, DataError> {
    let bytes = read_bytes(path)?;
    let labels = parse_labels(path, &bytes)?;
    verify_md5(path, &bytes, expected_md5)?;
    Ok(labels)
}

/// Parses the bytes of an uncompressed IDX images file; `path` only names the file in errors.
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<IdxImages, DataError> {
    let header = parse_header(path, bytes, IMAGES_MAGIC, 3, "images")?;
    let (count, rows, cols) = (header[0], header[1], header[2]);
    let body = checked_body(path, bytes, 16, count * rows * cols)?;
    Ok(IdxImages { count, rows, cols, pixels: body.to_vec() })
}

/// Parses the bytes of an uncompressed IDX labels file; `path` only names the file in errors.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    let count = parse_header(path, bytes, LABELS_MAGIC, 1, "labels")?[0];
    Ok(checked_body(path, bytes, 8, count)?.to_vec())
}

fn verify_md5(path: &Path, bytes: &[u8], expected: Option<&str>) -> Result<(), DataError> {
    let Some(expected) = expected else { return Ok(()) };
    let found = md5_hex(bytes);
    if found != expected {
        return Err(DataError::Checksum { path: path.to_path_buf(), expected: expected.to_string(), found });
    }
    Ok(())
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
    let path: PathBuf = path.to_path_buf();
    match bytes.len() {
        n if n < expected => Err(DataError::Truncated { path, expected, found: n }),
        n if n > expected => Err(DataError::TrailingBytes { path, expected, found: n }),
        _ => Ok(&bytes[header_len..]),
    }
}
