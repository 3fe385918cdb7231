//! zlib (RFC 1950) for `compressed = true` images, as albatross' `Vmm_compress`.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use super::error::ImageError;

/// Compress an image (level 9, like albatross-client's default for remote use).
pub fn compress_image(image: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::with_capacity(image.len() / 2), Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(image);
    enc.finish().unwrap_or_default()
}

/// Decompress an image, refusing to produce more than `max` bytes (a zlib bomb
/// from a misbehaving server must not exhaust memory).
pub fn decompress_image(data: &[u8], max: usize) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    ZlibDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    if out.len() > max {
        return Err(ImageError::TooLarge { max });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let img: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let z = compress_image(&img);
        assert!(z.len() < img.len());
        assert_eq!(decompress_image(&z, img.len()).unwrap(), img);
        assert_eq!(
            decompress_image(&z, img.len() - 1),
            Err(ImageError::TooLarge { max: img.len() - 1 })
        );
        assert!(matches!(
            decompress_image(b"not zlib", 100),
            Err(ImageError::Corrupt(_))
        ));
        // The 8-byte empty image of the protocol vectors.
        assert_eq!(
            decompress_image(&[0x78, 0x9c, 0x03, 0, 0, 0, 0, 1], 0).unwrap(),
            b""
        );
    }
}
