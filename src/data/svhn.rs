//! SVHN, the Street View House Numbers' cropped digits (Netzer et al., "Reading Digits in Natural
//! Images with Unsupervised Feature Learning", 2011), as its authors publish them:
//! `train_32x32.mat` (73,257 images) and `test_32x32.mat` (26,032), MATLAB v5 files holding
//! - `X`, 32x32x3xN uint8, in MATLAB's column-major order: X(r, c, ch, n) is byte
//!   r + 32 c + 1024 ch + 3072 n (the row index varies fastest);
//! - `y`, Nx1, the digits 1..9 as themselves and 0 as 10 (torchvision maps 10 to 0 as well).
//!
//! The `matfile` crate parses the arrays (flags, dimensions, names, typed data). Before it sees a
//! byte, [`flatten`] walks the file's elements: the 128-byte header must say MATLAB v5 (v7.3 files
//! are HDF5), every element and sub-element must fit in what holds it (a truncated download is
//! named as such), compressed elements (`miCOMPRESSED`, zlib, as MATLAB writes them) are inflated
//! here with `flate2`, and array dimensions must be non-negative with a product that fits an i32;
//! matfile gets the uncompressed equivalent. This keeps matfile's unchecked arithmetic and its
//! messages on stdout/stderr away from damaged files, so every failure is one line naming the file.
use super::{Dataset, Pixels, Split};
use anyhow::{bail, Context};
use matfile::{MatFile, NumericData};
use std::io::Read;
use std::path::Path;

pub const SVHN_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const PIXELS: usize = 3 * 32 * 32;
/// The most bytes one compressed element may inflate to (SVHN's largest, train's X, is 225 MB).
const MAX_INFLATED: u64 = 1 << 31;
/// MATLAB v5 data types of the elements walked here (the MAT-file format reference, table 1-1).
const MI_INT32: u32 = 5;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// Reads u32s in the file's byte order.
#[derive(Clone, Copy)]
struct Order {
    little: bool,
}

impl Order {
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.little {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    }
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Checks the sub-elements of a matrix element's data `m` (each tag and its data within `m`;
/// sizes of a sub-element's data are padded to 8 bytes, small-format tags hold at most 4 bytes),
/// and that the dimensions array, when it is the second sub-element, has non-negative entries
/// whose product fits an i32. `at` is the element's offset, for messages.
fn check_matrix(m: &[u8], o: Order, name: &str, at: usize) -> crate::Result<()> {
    let mut pos = 0;
    let mut k = 0;
    while pos < m.len() {
        if m.len() - pos < 8 {
            bail!("{name}: the array at byte {at} ends inside a sub-element's tag; the file is damaged");
        }
        let first = o.u32(m, pos);
        let (ty, data_at, size, next) = if first >> 16 != 0 {
            // Small format: type in the low 16 bits, size (<= 4) in the high 16, data in the tag.
            let size = (first >> 16) as usize;
            if size > 4 {
                bail!("{name}: the array at byte {at} has a malformed sub-element tag; the file is damaged");
            }
            (first & 0xffff, pos + 4, size, pos + 8)
        } else {
            let size = o.u32(m, pos + 4) as usize;
            if size > m.len() - pos - 8 {
                bail!("{name}: the array at byte {at} has a sub-element of {size} bytes that does not fit; the file is truncated or damaged");
            }
            (first, pos + 8, size, (pos + 8 + pad8(size)).min(m.len()))
        };
        if k == 1 && ty == MI_INT32 && size % 4 == 0 {
            let dims: Vec<i64> = (0..size / 4).map(|i| o.u32(m, data_at + 4 * i) as i32 as i64).collect();
            let product = dims.iter().try_fold(1i64, |p, &d| if d < 0 { None } else { p.checked_mul(d) });
            if product.is_none_or(|p| p > i32::MAX as i64) {
                bail!("{name}: the array at byte {at} has dimensions {dims:?}, out of range; the file is damaged");
            }
        }
        pos = next;
        k += 1;
    }
    Ok(())
}

/// The file's elements, compressed ones inflated, as an uncompressed MATLAB v5 file; see the top
/// of this file for what is checked.
pub fn flatten(bytes: &[u8], name: &str) -> crate::Result<Vec<u8>> {
    if bytes.len() < 128 {
        bail!(
            "{name}: {} bytes, too short for a MATLAB file's 128-byte header; truncated or not a .mat file",
            bytes.len()
        );
    }
    let o = match &bytes[126..128] {
        b"IM" => Order { little: true },
        b"MI" => Order { little: false },
        _ => bail!("{name}: not a MATLAB v5 .mat file (no MATLAB 5.0 header)"),
    };
    let version = if o.little {
        u16::from_le_bytes([bytes[124], bytes[125]])
    } else {
        u16::from_be_bytes([bytes[124], bytes[125]])
    };
    if version != 0x0100 {
        bail!("{name}: MATLAB file version {version:#06x}, not 5.0 (0x0100); MATLAB 7.3 files are HDF5, save with -v7 or -v6");
    }
    let mut out = bytes[..128].to_vec();
    let mut pos = 128;
    while pos < bytes.len() {
        if bytes.len() - pos < 8 {
            bail!("{name}: ends inside an element's tag at byte {pos}; the file is truncated");
        }
        let (ty, size) = (o.u32(bytes, pos), o.u32(bytes, pos + 4) as usize);
        let rest = bytes.len() - pos - 8;
        if size > rest {
            bail!("{name}: the element at byte {pos} declares {size} bytes, but {rest} remain; the file is truncated");
        }
        let body = &bytes[pos + 8..pos + 8 + size];
        let element = match ty {
            MI_MATRIX => bytes[pos..pos + 8 + size].to_vec(),
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                flate2::read::ZlibDecoder::new(body)
                    .take(MAX_INFLATED + 1)
                    .read_to_end(&mut inflated)
                    .map_err(|e| anyhow::anyhow!("{name}: the compressed element at byte {pos} does not inflate ({e}); the file is damaged"))?;
                if inflated.len() as u64 > MAX_INFLATED {
                    bail!("{name}: the compressed element at byte {pos} inflates to more than {MAX_INFLATED} bytes");
                }
                if inflated.len() < 8 || o.u32(&inflated, 0) != MI_MATRIX {
                    bail!("{name}: the compressed element at byte {pos} does not hold an array");
                }
                let inner = o.u32(&inflated, 4) as usize;
                if inner > inflated.len() - 8 {
                    bail!("{name}: the compressed element at byte {pos} declares {inner} bytes but inflates to {}; the file is damaged", inflated.len() - 8);
                }
                inflated.truncate(8 + inner);
                inflated
            }
            other => bail!("{name}: the element at byte {pos} is of MATLAB type {other}, not an array (14) or compressed array (15)"),
        };
        check_matrix(&element[8..], o, name, pos)?;
        let padded = out.len() + pad8(element.len());
        out.extend_from_slice(&element);
        out.resize(padded, 0);
        pos += 8 + if ty == MI_COMPRESSED { size } else { pad8(size).min(rest) };
    }
    Ok(out)
}

/// The values of a real numeric array as f64 (`None` for a complex one).
fn as_f64(data: &NumericData) -> Option<Vec<f64>> {
    fn real<T: Copy + Into<f64>>(real: &[T], imag: &Option<Vec<T>>) -> Option<Vec<f64>> {
        imag.is_none().then(|| real.iter().map(|&v| v.into()).collect())
    }
    match data {
        NumericData::Int8 { real: r, imag: i } => real(r, i),
        NumericData::UInt8 { real: r, imag: i } => real(r, i),
        NumericData::Int16 { real: r, imag: i } => real(r, i),
        NumericData::UInt16 { real: r, imag: i } => real(r, i),
        NumericData::Int32 { real: r, imag: i } => real(r, i),
        NumericData::UInt32 { real: r, imag: i } => real(r, i),
        NumericData::Single { real: r, imag: i } => real(r, i),
        NumericData::Double { real: r, imag: i } => real(r, i),
        NumericData::Int64 { real: r, imag: None } => Some(r.iter().map(|&v| v as f64).collect()),
        NumericData::UInt64 { real: r, imag: None } => Some(r.iter().map(|&v| v as f64).collect()),
        _ => None,
    }
}

/// Parses the bytes of one SVHN file (`train_32x32.mat`, `test_32x32.mat`) into (NCHW pixels,
/// labels 0..9); `name` is used in error messages.
pub fn parse_svhn_file(bytes: &[u8], name: &str) -> crate::Result<(Vec<u8>, Vec<i64>)> {
    let flat = flatten(bytes, name)?;
    let mat = MatFile::parse(flat.as_slice())
        .map_err(|e| anyhow::anyhow!("{name}: cannot read its arrays ({e}); the file is damaged or not SVHN's"))?;
    drop(flat);
    let layout = "SVHN's files hold X, 32x32x3xN uint8 images, and y, N labels";
    let Some(x) = mat.find_by_name("X") else { bail!("{name}: no array named X ({layout})") };
    let Some(y) = mat.find_by_name("y") else { bail!("{name}: no array named y ({layout})") };
    let n = match x.size().as_slice() {
        &[32, 32, 3, n] if n > 0 => n,
        other => bail!("{name}: X is {other:?}, expected [32, 32, 3, N] ({layout})"),
    };
    let NumericData::UInt8 { real: px, imag: None } = x.data() else {
        bail!("{name}: X is not a real uint8 array ({layout})");
    };
    if !matches!(y.size().as_slice(), &[a, 1] | &[1, a] if a == n) {
        bail!("{name}: y is {:?} for {n} images, expected [{n}, 1] ({layout})", y.size());
    }
    let y = as_f64(y.data()).with_context(|| format!("{name}: y is complex ({layout})"))?;
    let mut labels = Vec::with_capacity(n);
    for (i, &v) in y.iter().enumerate() {
        if v.fract() != 0.0 || !(1.0..=10.0).contains(&v) {
            bail!("{name}: image {i} has label {v}, outside 1..10 (10 is the digit 0)");
        }
        labels.push(v as i64 % 10);
    }
    // Column-major 32x32 planes to row-major: out[r * 32 + c] = in[r + 32 * c].
    let mut pixels = vec![0u8; n * PIXELS];
    for (plane_in, plane_out) in px.chunks_exact(1024).zip(pixels.chunks_exact_mut(1024)) {
        for r in 0..32 {
            for c in 0..32 {
                plane_out[r * 32 + c] = plane_in[r + 32 * c];
            }
        }
    }
    Ok((pixels, labels))
}

/// SVHN from `dir` (the folder holding `train_32x32.mat` and `test_32x32.mat`).
pub fn load_svhn(dir: &Path, split: Split) -> crate::Result<Dataset> {
    if !dir.is_dir() {
        bail!(
            "{}: not a folder (expected the folder holding SVHN's train_32x32.mat and test_32x32.mat)",
            dir.display()
        );
    }
    let path = dir.join(match split {
        Split::Train => "train_32x32.mat",
        Split::Test => "test_32x32.mat",
    });
    if !path.exists() {
        bail!("{}: file not found (expected SVHN's official file; `ebm download svhn` fetches it)", path.display());
    }
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (pixels, labels) = parse_svhn_file(&bytes, &path.display().to_string())?;
    let classes = SVHN_CLASSES.iter().map(|s| s.to_string()).collect();
    Dataset::new(dir.display().to_string(), Pixels::U8(pixels), vec![3, 32, 32], Some(labels), classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fixture_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/svhn")
    }

    #[test]
    fn reads_the_scipy_written_fixture_in_svhns_layout() {
        // tests/data/make-svhn-fixture.py: X[r, c, ch, n] = (r + 2c + 50ch + 7n) % 256, compressed.
        let test = load_svhn(&fixture_dir(), Split::Test).unwrap();
        assert_eq!((test.len(), test.shape.clone()), (3, vec![3, 32, 32]));
        assert_eq!(test.labels.as_ref().unwrap(), &vec![3, 0, 7]);
        assert_eq!(test.classes[0], "0");
        let Pixels::U8(p) = &test.pixels else { panic!("uint8") };
        for (n, ch, r, c) in [(0, 0, 0, 1), (0, 0, 1, 0), (1, 2, 5, 9), (2, 1, 31, 30)] {
            assert_eq!(p[n * 3072 + ch * 1024 + r * 32 + c] as usize, (r + 2 * c + 50 * ch + 7 * n) % 256);
        }
        let train = load_svhn(&fixture_dir(), Split::Train).unwrap();
        assert_eq!(train.labels.unwrap(), vec![0, 1, 5, 9]);
    }

    /// One MATLAB v5 array element (miMATRIX) of class `class` (9 uint8, 6 double) with data
    /// type `mi` (2 uint8, 9 double) and the raw little-endian `data`.
    fn matrix(name: &str, dims: &[i32], class: u32, mi: u32, data: &[u8]) -> Vec<u8> {
        fn sub(out: &mut Vec<u8>, ty: u32, body: &[u8]) {
            out.extend(ty.to_le_bytes());
            out.extend((body.len() as u32).to_le_bytes());
            out.extend(body);
            out.resize(pad8(out.len()), 0);
        }
        let mut m = Vec::new();
        sub(&mut m, 6, &[class.to_le_bytes(), 0u32.to_le_bytes()].concat());
        sub(&mut m, MI_INT32, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<_>>());
        sub(&mut m, 1, name.as_bytes());
        sub(&mut m, mi, data);
        let mut e = MI_MATRIX.to_le_bytes().to_vec();
        e.extend((m.len() as u32).to_le_bytes());
        e.extend(m);
        e
    }

    /// A MATLAB v5 file of the given elements, each compressed or not.
    fn mat_file(elements: &[Vec<u8>], compress: bool) -> Vec<u8> {
        let mut f = b"MATLAB 5.0 MAT-file, written by ebm's tests".to_vec();
        f.resize(124, b' ');
        f.extend([0x00, 0x01, b'I', b'M']);
        for e in elements {
            if compress {
                let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                z.write_all(e).unwrap();
                let z = z.finish().unwrap();
                f.extend(MI_COMPRESSED.to_le_bytes());
                f.extend((z.len() as u32).to_le_bytes());
                f.extend(z);
            } else {
                f.extend(e);
            }
        }
        f
    }

    /// X of shape `x_dims` (X(r, c, ch, k) = r + c + ch + k) and y (as doubles) in one file.
    fn svhn_like(labels: &[f64], x_dims: &[i32], compress: bool) -> Vec<u8> {
        let count: usize = x_dims.iter().map(|&d| d as usize).product();
        let px: Vec<u8> = (0..count).map(|i| ((i % 32) + (i / 32) % 32 + i / 1024) as u8).collect();
        let y: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        mat_file(&[matrix("X", x_dims, 9, 2, &px), matrix("y", &[labels.len() as i32, 1], 6, 9, &y)], compress)
    }

    #[test]
    fn compressed_and_plain_files_read_alike() {
        for compress in [false, true] {
            let bytes = svhn_like(&[10.0, 4.0], &[32, 32, 3, 2], compress);
            let (px, labels) = parse_svhn_file(&bytes, "t.mat").unwrap();
            assert_eq!(labels, vec![0, 4]);
            // Image 1, channel 2, row 3, column 5: source index 3 + 32*5 + 1024*2 + 3072.
            let i: usize = 3 + 32 * 5 + 1024 * 2 + 3072;
            assert_eq!(px[3072 + 2 * 1024 + 3 * 32 + 5], ((i % 32) + (i / 32) % 32 + i / 1024) as u8);
        }
    }

    #[test]
    fn wrong_shapes_labels_and_truncation_are_named() {
        let err = |bytes: &[u8]| parse_svhn_file(bytes, "s.mat").unwrap_err().to_string();
        let e = err(&svhn_like(&[11.0], &[32, 32, 3, 1], true));
        assert!(e.contains("s.mat: image 0 has label 11, outside 1..10"), "{e}");
        let e = err(&svhn_like(&[0.0], &[32, 32, 3, 1], false));
        assert!(e.contains("label 0, outside"), "{e}");
        let e = err(&svhn_like(&[2.5], &[32, 32, 3, 1], false));
        assert!(e.contains("label 2.5"), "{e}");
        let e = err(&svhn_like(&[1.0], &[28, 28, 3, 1], true));
        assert!(e.contains("X is [28, 28, 3, 1], expected [32, 32, 3, N]"), "{e}");
        let e = err(&svhn_like(&[1.0], &[32, 32, 3, 2], true));
        assert!(e.contains("y is [1, 1] for 2 images"), "{e}");
        // Only X: y is missing.
        let px = vec![0u8; 3072];
        let e = err(&mat_file(&[matrix("X", &[32, 32, 3, 1], 9, 2, &px)], true));
        assert!(e.contains("no array named y"), "{e}");
        // Truncated: in a plain file, in a compressed one, and the header.
        for compress in [false, true] {
            let full = svhn_like(&[3.0], &[32, 32, 3, 1], compress);
            let e = err(&full[..full.len() - 100]);
            assert!(e.contains("s.mat") && e.contains("truncated"), "{e}");
        }
        let e = err(&svhn_like(&[3.0], &[32, 32, 3, 1], true)[..100]);
        assert!(e.contains("too short"), "{e}");
        let e = err(&[b'x'; 300]);
        assert!(e.contains("not a MATLAB v5 .mat file"), "{e}");
        // Dimensions whose product overflows an i32 never reach matfile.
        let e = err(&mat_file(&[matrix("X", &[65536, 65536, 3, 1], 9, 2, &[0; 8])], false));
        assert!(e.contains("dimensions [65536, 65536, 3, 1], out of range"), "{e}");
    }

    #[test]
    fn a_missing_file_or_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_svhn(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(e.contains("train_32x32.mat: file not found") && e.contains("ebm download svhn"), "{e}");
        let e = load_svhn(&dir.path().join("nope"), Split::Test).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
    }

    #[test]
    fn mangled_files_are_errors_not_panics() {
        // The fuzz target's check in miniature: truncations and byte flips of both kinds of file.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        for compress in [false, true] {
            let valid = svhn_like(&[3.0], &[32, 32, 3, 1], compress);
            for _ in 0..300 {
                let mut m = valid.clone();
                match rng.gen_range(0..3) {
                    0 => m.truncate(rng.gen_range(0..m.len())),
                    1 => {
                        for _ in 0..rng.gen_range(1..4) {
                            let i = rng.gen_range(0..m.len());
                            m[i] = rng.gen();
                        }
                    }
                    _ => {
                        let i = rng.gen_range(128..m.len() - 4);
                        m[i..i + 4].copy_from_slice(&rng.gen::<u32>().to_le_bytes());
                    }
                }
                if let Ok((px, labels)) = parse_svhn_file(&m, "m.mat") {
                    assert_eq!(px.len(), labels.len() * PIXELS);
                    assert!(labels.iter().all(|l| (0..10).contains(l)));
                }
            }
        }
    }
}
