//! 8-bit images: grids of `[0, 1]` float images (samples, reconstructions) and PNG encoding
//! (feature `png`).

#[cfg(feature = "png")]
use std::path::Path;

/// Errors from building or encoding an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The pixel buffer does not match `width * height * channels`, or a size is zero.
    #[error("bad image shape: {0}")]
    Shape(String),
    /// The PNG encoder failed.
    #[cfg(feature = "png")]
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
    /// The GIF encoder failed.
    #[cfg(feature = "png")]
    #[error("GIF encoding failed: {0}")]
    Gif(#[from] gif::EncodingError),
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// An 8-bit image stored row-major, channels last (HWC): 1 = grey, 2 = grey+alpha, 3 = RGB, 4 = RGBA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channels per pixel (1 to 4).
    pub channels: usize,
    /// `height * width * channels` bytes.
    pub data: Vec<u8>,
}

impl Image {
    /// Wraps a pixel buffer, checking that its length matches the shape.
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<u8>) -> Result<Self, ImageError> {
        if width == 0 || height == 0 || !(1..=4).contains(&channels) {
            return Err(ImageError::Shape(format!("{width}x{height} with {channels} channels")));
        }
        if data.len() != width * height * channels {
            return Err(ImageError::Shape(format!(
                "{width}x{height}x{channels} needs {} bytes, got {}",
                width * height * channels,
                data.len()
            )));
        }
        Ok(Self { width, height, channels, data })
    }

    /// Converts a float image in `[0, 1]` (values outside are clamped, NaN becomes 0), HWC order.
    pub fn from_unit_f32(width: usize, height: usize, channels: usize, pixels: &[f32]) -> Result<Self, ImageError> {
        Self::new(width, height, channels, pixels.iter().map(|&v| unit_to_u8(v)).collect())
    }

    /// Tiles `count` float images in `[0, 1]` into a grid with `cols` columns and a 1-pixel black border.
    ///
    /// `images` holds the images one after another, each channels-first (CHW, dfdx's layout),
    /// so a batch of flattened MNIST digits `[count * 784]` with `channels = 1, height = width = 28` works.
    pub fn grid(
        images: &[f32],
        count: usize,
        channels: usize,
        height: usize,
        width: usize,
        cols: usize,
    ) -> Result<Self, ImageError> {
        let per = channels * height * width;
        if count == 0 || cols == 0 || images.len() != count * per {
            return Err(ImageError::Shape(format!(
                "grid of {count} images of {channels}x{height}x{width} in {cols} columns from {} values",
                images.len()
            )));
        }
        let rows = count.div_ceil(cols);
        let (gw, gh) = (cols * (width + 1) + 1, rows * (height + 1) + 1);
        let mut data = vec![0u8; gw * gh * channels];
        for (k, img) in images.chunks_exact(per).enumerate() {
            let (x0, y0) = ((k % cols) * (width + 1) + 1, (k / cols) * (height + 1) + 1);
            for c in 0..channels {
                for y in 0..height {
                    for x in 0..width {
                        let v = img[c * height * width + y * width + x];
                        data[((y0 + y) * gw + x0 + x) * channels + c] = unit_to_u8(v);
                    }
                }
            }
        }
        Self::new(gw, gh, channels, data)
    }

    /// Encodes the image as PNG.
    #[cfg(feature = "png")]
    pub fn to_png(&self) -> Result<Vec<u8>, ImageError> {
        encode_png(self.width, self.height, self.channels, &self.data)
    }

    /// Writes the image to a PNG file.
    #[cfg(feature = "png")]
    pub fn save_png(&self, path: &Path) -> Result<(), ImageError> {
        let bytes = self.to_png()?;
        crate::checkpoint::write_atomic(path, &bytes)
            .map_err(|source| ImageError::Io { path: path.display().to_string(), source })
    }
}

fn unit_to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Encodes an 8-bit HWC pixel buffer as PNG.
#[cfg(feature = "png")]
pub fn encode_png(width: usize, height: usize, channels: usize, data: &[u8]) -> Result<Vec<u8>, ImageError> {
    if width == 0 || height == 0 || data.len() != width * height * channels {
        return Err(ImageError::Shape(format!("{width}x{height}x{channels} from {} bytes", data.len())));
    }
    let color = match channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        _ => return Err(ImageError::Shape(format!("{channels} channels (expected 1 to 4)"))),
    };
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(data)?;
        w.finish()?;
    }
    Ok(out)
}

/// Writes `frames` (RGB, all of one size, at most 65535 pixels a side) as an animated GIF that
/// loops, `delay_ms` per frame (GIF counts hundredths of a second), atomically. No frames: no
/// file.
#[cfg(feature = "png")]
pub fn write_gif(frames: &[Image], delay_ms: u16, path: &Path) -> Result<(), ImageError> {
    let Some(first) = frames.first() else { return Ok(()) };
    let mut gif = GifWriter::new(first.width, first.height, delay_ms)?;
    for frame in frames {
        gif.push(frame)?;
    }
    gif.finish(path)
}

/// An animated GIF built one frame at a time (frames are compressed as they come, so a long
/// episode need not be held in memory), written atomically by [`GifWriter::finish`].
#[cfg(feature = "png")]
pub struct GifWriter {
    encoder: gif::Encoder<Vec<u8>>,
    size: (u16, u16),
    delay: u16,
}

#[cfg(feature = "png")]
impl GifWriter {
    /// A looping GIF of `width` × `height` RGB frames, `delay_ms` each.
    pub fn new(width: usize, height: usize, delay_ms: u16) -> Result<Self, ImageError> {
        let side = |v: usize| {
            u16::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| ImageError::Shape(format!("a GIF cannot be {v} pixels wide or high")))
        };
        let size = (side(width)?, side(height)?);
        let mut encoder = gif::Encoder::new(Vec::new(), size.0, size.1, &[])?;
        encoder.set_repeat(gif::Repeat::Infinite)?;
        Ok(Self { encoder, size, delay: delay_ms / 10 })
    }

    /// Appends `frame`, which must be RGB and of the GIF's size.
    pub fn push(&mut self, frame: &Image) -> Result<(), ImageError> {
        let (w, h) = self.size;
        if (frame.width, frame.height, frame.channels) != (w as usize, h as usize, 3) {
            return Err(ImageError::Shape(format!(
                "GIF frames must be RGB and {w}×{h}, got {}×{}×{}",
                frame.width, frame.height, frame.channels
            )));
        }
        let mut gif_frame = gif::Frame::from_rgb_speed(w, h, &frame.data, 10);
        gif_frame.delay = self.delay;
        Ok(self.encoder.write_frame(&gif_frame)?)
    }

    /// Writes the GIF to `path` (atomically).
    pub fn finish(self, path: &Path) -> Result<(), ImageError> {
        let io = |source| ImageError::Io { path: path.display().to_string(), source };
        let bytes = self.encoder.into_inner().map_err(io)?;
        crate::checkpoint::write_atomic(path, &bytes).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "png")]
    #[test]
    fn png_round_trips_a_non_square_image() {
        let (w, h) = (5, 3);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7) as u8).collect();
        let bytes = encode_png(w, h, 3, &data).unwrap();
        let mut reader = png::Decoder::new(&bytes[..]).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height, info.color_type), (5, 3, png::ColorType::Rgb));
        assert_eq!(&buf[..info.buffer_size()], &data[..]);
    }

    #[test]
    fn grid_places_each_image_in_its_cell() {
        // 3 grey 2x2 images in 2 columns -> 2 rows; image k is filled with k/2.
        let imgs: Vec<f32> = (0..3).flat_map(|k| [k as f32 / 2.0; 4]).collect();
        let g = Image::grid(&imgs, 3, 1, 2, 2, 2).unwrap();
        assert_eq!((g.width, g.height), (7, 7));
        let px = |x: usize, y: usize| g.data[y * g.width + x];
        assert_eq!(px(1, 1), 0);
        assert_eq!(px(4, 2), 128);
        assert_eq!(px(2, 5), 255);
        assert_eq!(px(3, 3), 0); // border
        assert_eq!(px(5, 5), 0); // empty cell
        assert!(Image::grid(&imgs, 4, 1, 2, 2, 2).is_err());
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(Image::new(2, 2, 1, vec![0; 3]).is_err());
        assert!(Image::new(2, 2, 5, vec![0; 20]).is_err());
        #[cfg(feature = "png")]
        assert!(encode_png(0, 2, 1, &[]).is_err());
    }
}
