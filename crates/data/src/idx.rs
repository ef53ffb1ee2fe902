//! The IDX format MNIST ships in: a 4-byte magic (two zero bytes, a type code, the number of
//! dimensions), one big-endian `u32` per dimension, then the values. Only unsigned bytes
//! (type `0x08`) occur in MNIST, so that is the only type accepted.

use crate::{DataError, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

const TYPE_U8: u8 = 0x08;
/// Larger than any MNIST file (the training images are 47 MB); guards against gzip bombs.
const MAX_DECOMPRESSED: u64 = 256 << 20;

/// A decoded IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads a file, transparently decompressing it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    GzDecoder::new(raw.as_slice())
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            DataError::malformed(path, format!("gzip stream is damaged or truncated: {e}"))
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(DataError::malformed(
            path,
            format!("decompresses to more than {MAX_DECOMPRESSED} bytes"),
        ));
    }
    Ok(out)
}

/// Parses IDX bytes; `path` is only used to name the file in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(DataError::malformed(
            path,
            format!(
                "truncated: {} bytes, too short for an IDX header",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::malformed(
            path,
            format!(
                "wrong magic {:02x} {:02x} {:02x} {:02x}: not an IDX file",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != TYPE_U8 {
        return Err(DataError::malformed(
            path,
            format!(
                "IDX value type 0x{:02x} is not unsigned bytes (0x08)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err(DataError::malformed(
            path,
            "IDX header declares zero dimensions",
        ));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::malformed(
            path,
            format!(
                "truncated: header needs {header} bytes, file has {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::malformed(path, format!("dimensions {dims:?} overflow")))?;
    let body = bytes.len() - header;
    if body < expected {
        return Err(DataError::malformed(
            path,
            format!("truncated: dimensions {dims:?} need {expected} bytes of data, found {body}"),
        ));
    }
    if body > expected {
        return Err(DataError::malformed(
            path,
            format!(
                "{} unexpected trailing bytes after the data of dimensions {dims:?}",
                body - expected
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Encodes an array of bytes as IDX: how tests and tools write their own small files.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, TYPE_U8, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Checks that images (`n x 28 x 28`) and labels (`n` digits) belong together.
pub fn check_pair(images: &Path, img: &IdxArray, labels: &Path, lab: &IdxArray) -> Result<()> {
    if img.dims.len() != 3 || img.dims[1] != crate::SIDE || img.dims[2] != crate::SIDE {
        return Err(DataError::malformed(
            images,
            format!("expected images of shape N x 28 x 28, found {:?}", img.dims),
        ));
    }
    if lab.dims.len() != 1 {
        return Err(DataError::malformed(
            labels,
            format!(
                "expected a 1-dimensional label file, found dimensions {:?}",
                lab.dims
            ),
        ));
    }
    if img.dims[0] != lab.dims[0] {
        return Err(DataError::Invalid(format!(
            "label/image count mismatch: {} holds {} images but {} holds {} labels",
            images.display(),
            img.dims[0],
            labels.display(),
            lab.dims[0]
        )));
    }
    if let Some(bad) = lab.data.iter().find(|&&l| l as usize >= crate::CLASSES) {
        return Err(DataError::malformed(
            labels,
            format!("label {bad} is not a digit 0-9"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn read_pair(images: &Path, labels: &Path) -> Result<()> {
        let img = parse(images, &read_maybe_gz(images)?)?;
        let lab = parse(labels, &read_maybe_gz(labels)?)?;
        check_pair(images, &img, labels, &lab)
    }

    fn images(n: usize) -> Vec<u8> {
        encode(
            &[n, 28, 28],
            &(0..n * 784).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn raw_and_gz_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = images(3);
        let raw = write(dir.path(), "a", &bytes);
        let packed = write(dir.path(), "a.gz", &gz(&bytes));
        let a = parse(&raw, &read_maybe_gz(&raw).unwrap()).unwrap();
        let b = parse(&packed, &read_maybe_gz(&packed).unwrap()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dims, vec![3, 28, 28]);
        assert_eq!(a.data[785], (785 % 251) as u8);
    }

    #[test]
    fn truncated_body_is_named() {
        let mut bytes = images(2);
        bytes.truncate(bytes.len() - 10);
        let err = parse(Path::new("x.idx"), &bytes).unwrap_err().to_string();
        assert!(err.contains("x.idx") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn truncated_header_and_wrong_magic() {
        let err = parse(Path::new("h"), &[0, 0]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let err = parse(Path::new("h"), &[0, 0, 8, 3, 0, 0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        let err = parse(Path::new("m"), b"PNG\x89rest")
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrong magic"), "{err}");
        let err = parse(Path::new("t"), &[0, 0, 0x0d, 1, 0, 0, 0, 0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("0x0d"), "{err}");
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut bytes = encode(&[2], &[1, 2]);
        bytes.push(9);
        assert!(parse(Path::new("l"), &bytes)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let packed = gz(&images(4));
        let p = write(dir.path(), "t.gz", &packed[..packed.len() / 2]);
        let err = read_maybe_gz(&p).unwrap_err().to_string();
        assert!(err.contains("t.gz") && err.contains("gzip"), "{err}");
    }

    #[test]
    fn pair_mismatch_and_bad_labels() {
        let dir = tempfile::tempdir().unwrap();
        let img = write(dir.path(), "img", &images(3));
        let lab = write(dir.path(), "lab", &encode(&[2], &[1, 2]));
        let err = read_pair(&img, &lab).unwrap_err().to_string();
        assert!(
            err.contains("mismatch") && err.contains("3 images") && err.contains("2 labels"),
            "{err}"
        );
        let lab = write(dir.path(), "lab2", &encode(&[3], &[1, 2, 12]));
        let err = read_pair(&img, &lab).unwrap_err().to_string();
        assert!(err.contains("label 12"), "{err}");
        let lab = write(dir.path(), "lab3", &encode(&[3], &[1, 2, 3]));
        assert!(read_pair(&img, &lab).is_ok());
    }

    #[test]
    fn wrong_image_shape() {
        let dir = tempfile::tempdir().unwrap();
        let img = write(dir.path(), "img", &encode(&[2, 4, 4], &[0; 32]));
        let lab = write(dir.path(), "lab", &encode(&[2], &[1, 2]));
        assert!(read_pair(&img, &lab)
            .unwrap_err()
            .to_string()
            .contains("N x 28 x 28"));
    }
}
