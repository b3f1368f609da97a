//! TensorBoard event files: scalars, histograms and images that the `tensorboard` package reads.
//!
//! We write the format ourselves rather than use a crate: tensorboard-rs panics on histograms
//! (`unimplemented!()`) and transposes images, and `tfrecord` pulls in a protobuf code generator
//! for the handful of messages we need. An event file is a sequence of records
//! `len: u64 LE | masked_crc32c(len) | Event protobuf | masked_crc32c(event)`, and the
//! four messages used here (`Event`, `Summary`, `Summary.Value`, `Summary.Image`, `HistogramProto`)
//! are encoded by hand below.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(feature = "png")]
use crate::image::Image;

/// Writes TensorBoard event files into one directory.
///
/// ```no_run
/// let mut w = glimpse::log::SummaryWriter::new(std::path::Path::new("runs/demo")).unwrap();
/// w.scalar("charts/episodic_return", 21.0, 100).unwrap();
/// w.flush().unwrap();
/// ```
pub struct SummaryWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl SummaryWriter {
    /// Creates `dir` if needed and opens a new `events.out.tfevents.*` file in it.
    pub fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        // Several writers may be created in one second by one process: the counter keeps names unique.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("events.out.tfevents.{}.{}.{}.{}", now.as_secs(), host, std::process::id(), n);
        let path = dir.join(name);
        let file = BufWriter::new(File::create(&path)?);
        let mut writer = Self { file, path };
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.write_record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs one scalar value.
    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) -> io::Result<()> {
        let mut v = Vec::new();
        put_bytes(&mut v, 1, tag.as_bytes());
        put_float(&mut v, 2, value as f32);
        self.write_summary_value(&v, step)
    }

    /// Logs a histogram of `values` (30 equal-width buckets between their min and max).
    ///
    /// Non-finite values are left out; an empty or all-NaN slice logs nothing.
    pub fn histogram(&mut self, tag: &str, values: &[f32], step: u64) -> io::Result<()> {
        let finite: Vec<f64> = values.iter().filter(|v| v.is_finite()).map(|&v| v as f64).collect();
        if finite.is_empty() {
            return Ok(());
        }
        let min = finite.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = finite.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        const BUCKETS: usize = 30;
        let width = if max > min { (max - min) / BUCKETS as f64 } else { 1.0 };
        let mut counts = [0.0f64; BUCKETS];
        for &x in &finite {
            let i = (((x - min) / width) as usize).min(BUCKETS - 1);
            counts[i] += 1.0;
        }
        // Bucket i holds values up to and including limit i; the last limit is the max itself.
        let limits: Vec<f64> =
            (1..=BUCKETS).map(|i| if i == BUCKETS { max.max(min + width) } else { min + width * i as f64 }).collect();
        let mut h = Vec::new();
        put_double(&mut h, 1, min);
        put_double(&mut h, 2, max);
        put_double(&mut h, 3, finite.len() as f64);
        put_double(&mut h, 4, finite.iter().sum());
        put_double(&mut h, 5, finite.iter().map(|x| x * x).sum());
        put_packed_doubles(&mut h, 6, &limits);
        put_packed_doubles(&mut h, 7, &counts);
        let mut v = Vec::new();
        put_bytes(&mut v, 1, tag.as_bytes());
        put_bytes(&mut v, 5, &h);
        self.write_summary_value(&v, step)
    }

    /// Logs an image (8-bit grey, grey+alpha, RGB or RGBA), stored as PNG (feature `png`).
    #[cfg(feature = "png")]
    pub fn image(&mut self, tag: &str, image: &Image, step: u64) -> io::Result<()> {
        let png = image.to_png().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut img = Vec::new();
        put_varint_field(&mut img, 1, image.height as u64);
        put_varint_field(&mut img, 2, image.width as u64);
        put_varint_field(&mut img, 3, image.channels as u64);
        put_bytes(&mut img, 4, &png);
        let mut v = Vec::new();
        put_bytes(&mut v, 1, tag.as_bytes());
        put_bytes(&mut v, 4, &img);
        self.write_summary_value(&v, step)
    }

    /// Writes buffered events to disk.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn write_summary_value(&mut self, value: &[u8], step: u64) -> io::Result<()> {
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, value);
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_varint_field(&mut event, 2, step);
        put_bytes(&mut event, 5, &summary);
        self.write_record(&event)
    }

    fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.file.write_all(&len)?;
        self.file.write_all(&masked_crc(&len).to_le_bytes())?;
        self.file.write_all(data)?;
        self.file.write_all(&masked_crc(data).to_le_bytes())
    }
}

impl Drop for SummaryWriter {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

fn wall_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// TFRecord's masked CRC-32C.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, ((field as u64) << 3) | wire_type as u64);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u32, v: f32) {
    put_key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_packed_doubles(out: &mut Vec<u8>, field: u32, values: &[f64]) {
    put_key(out, field, 2);
    put_varint(out, (values.len() * 8) as u64);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // Values from tensorboard's own `masked_crc32c` (tensorflow_stub.pywrap_tensorflow).
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc(b"glimpse event"), 0x9b19_52f1);
    }

    #[test]
    fn varints_encode_like_protobuf() {
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut v = Vec::new();
        put_varint_field(&mut v, 2, 1);
        assert_eq!(v, [0x10, 0x01]);
    }
}
