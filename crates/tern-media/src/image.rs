//! What the server reads from images: the format of the bytes, the pixel
//! size from the header, thumbnails. Decoding is bounded (`Limits`): an
//! image declaring more pixels than allowed is refused before any pixel
//! memory is taken.

use image::{ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// The image formats Tern recognises, by MIME type.
pub fn format_of_mime(mime: &str) -> Option<ImageFormat> {
    match mime {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// The format the bytes start as, among those of [`format_of_mime`].
pub fn sniff(head: &[u8]) -> Option<ImageFormat> {
    match image::guess_format(head).ok()? {
        f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) => {
            Some(f)
        }
        _ => None,
    }
}

/// The pixel size the image's header declares, read from its first
/// bytes (`None` when they do not hold it).
pub fn dimensions(head: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    ImageReader::with_format(Cursor::new(head), format)
        .into_dimensions()
        .ok()
}

#[derive(Debug)]
pub enum ThumbError {
    /// Over the limits (pixels or memory).
    TooLarge(String),
    /// Not decodable.
    Bad(String),
}

/// A JPEG whose longest side is `n` (never larger than the image), from
/// the whole image, decoding within `max_side` per side and `max_alloc`
/// bytes.
pub fn thumbnail(
    bytes: &[u8],
    format: ImageFormat,
    n: u32,
    max_side: u32,
    max_alloc: u64,
) -> Result<Vec<u8>, ThumbError> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(max_alloc);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => ThumbError::TooLarge(l.to_string()),
        e => ThumbError::Bad(e.to_string()),
    })?;
    let (w, h) = (img.width(), img.height());
    let small = if w.max(h) > n {
        img.thumbnail(n, n)
    } else {
        img
    };
    let rgb = small.into_rgb8();
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
    rgb.write_with_encoder(enc)
        .map_err(|e| ThumbError::Bad(e.to_string()))?;
    Ok(out)
}
