//! NumPy `.npy` files (format 1.0-3.0, C order): images as uint8 NHWC or float NCHW (values in
//! model space, [-1, 1]), points as float [N, D], labels as a 1-D integer array.
//!
//! The format (numpy.lib.format): the magic `\x93NUMPY`, a version (major, minor), the header's
//! length (u16 for 1.0, u32 for 2.0 and 3.0), a Python dict literal `{'descr': ..., 'fortran_order':
//! ..., 'shape': (...)}` ending in a newline, then the values in C or Fortran order. The
//! `ndarray-npy` crate parses the header and reads the values (either byte order); on top of it
//! this file keeps ebm's own checks and messages: the header length must fit in the file before
//! anything is allocated for it, only the ten plain numeric types, C order, and exactly the bytes
//! the shape needs (truncated and trailing bytes are both errors), checked before any value is read.
use super::{Dataset, Pixels};
use anyhow::{bail, Context};
use ndarray_npy::npy::header::{Header, Layout};
use ndarray_npy::ReadableElement;
use py_literal::Value as PyValue;
use std::io::{Cursor, Write};
use std::path::Path;

/// Element types the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    U8,
    I8,
    I16,
    I32,
    I64,
    U16,
    U32,
    U64,
    F32,
    F64,
}

impl Dtype {
    /// The type of a descr string (`<f4`, `|u1`, `>i8`, ...): byte order `<`, `>` or `|`, then the
    /// kind and size.
    fn parse(descr: &str) -> Option<Self> {
        // By characters: the header is untrusted text (an empty or non-ASCII descr is an error).
        let mut chars = descr.chars();
        if !matches!(chars.next()?, '<' | '>' | '|') {
            return None;
        }
        Some(match chars.as_str() {
            "u1" => Dtype::U8,
            "i1" => Dtype::I8,
            "i2" => Dtype::I16,
            "i4" => Dtype::I32,
            "i8" => Dtype::I64,
            "u2" => Dtype::U16,
            "u4" => Dtype::U32,
            "u8" => Dtype::U64,
            "f4" => Dtype::F32,
            "f8" => Dtype::F64,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }
}

/// The values of an array: bytes (uint8, the images), integers (every other integer type, as
/// labels use them; uint64 above i64::MAX saturates) or floats (float32, float64 rounded to it).
#[derive(Debug, Clone)]
pub enum Values {
    U8(Vec<u8>),
    Int(Vec<i64>),
    Float(Vec<f32>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::U8(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed array: the file's type, its shape and its values in C order.
#[derive(Debug)]
pub struct NpyArray {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub values: Values,
}

impl NpyArray {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.values {
            Values::U8(v) => v.iter().map(|&x| x as f32).collect(),
            Values::Int(v) => v.iter().map(|&x| x as f32).collect(),
            Values::Float(v) => v.clone(),
        }
    }

    /// The values as i64, or `None` for a float array.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match &self.values {
            Values::U8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            Values::Int(v) => Some(v.clone()),
            Values::Float(_) => None,
        }
    }
}

/// Reads `n` values of the file's type `descr` with the crate and widens them.
fn read_values(dtype: Dtype, data: &[u8], descr: &PyValue, n: usize) -> Result<Values, ndarray_npy::ReadDataError> {
    fn ints<T: ReadableElement + TryInto<i64>>(
        data: &[u8],
        descr: &PyValue,
        n: usize,
    ) -> Result<Values, ndarray_npy::ReadDataError> {
        let v = T::read_to_end_exact_vec(data, descr, n)?;
        Ok(Values::Int(v.into_iter().map(|x| x.try_into().unwrap_or(i64::MAX)).collect()))
    }
    Ok(match dtype {
        Dtype::U8 => Values::U8(u8::read_to_end_exact_vec(data, descr, n)?),
        Dtype::I8 => ints::<i8>(data, descr, n)?,
        Dtype::I16 => ints::<i16>(data, descr, n)?,
        Dtype::I32 => ints::<i32>(data, descr, n)?,
        Dtype::I64 => ints::<i64>(data, descr, n)?,
        Dtype::U16 => ints::<u16>(data, descr, n)?,
        Dtype::U32 => ints::<u32>(data, descr, n)?,
        Dtype::U64 => ints::<u64>(data, descr, n)?,
        Dtype::F32 => Values::Float(f32::read_to_end_exact_vec(data, descr, n)?),
        Dtype::F64 => {
            Values::Float(f64::read_to_end_exact_vec(data, descr, n)?.into_iter().map(|x| x as f32).collect())
        }
    })
}

/// Parses `.npy` bytes; `name` is used in error messages.
pub fn parse(bytes: &[u8], name: &str) -> crate::Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{name}: not a .npy file (missing the \\x93NUMPY magic)");
    }
    // The header's length must fit in the file before the crate allocates a buffer for it.
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => bail!("{name}: unsupported .npy format version {v}"),
    };
    if hstart.checked_add(hlen).is_none_or(|end| end > bytes.len()) {
        bail!("{name}: truncated .npy header");
    }
    let mut cursor = Cursor::new(bytes);
    let header = Header::from_reader(&mut cursor).map_err(|e| anyhow::anyhow!("{name}: bad .npy header: {e}"))?;
    let data = &bytes[cursor.position() as usize..];
    let descr = match &header.type_descriptor {
        PyValue::String(s) => s.clone(),
        other => other.to_string(),
    };
    let dtype = Dtype::parse(&descr).with_context(|| {
        format!("{name}: unsupported dtype `{descr}` (expected u1, i1-i8, u2-u8, f4 or f8, either byte order)")
    })?;
    if header.layout == Layout::Fortran {
        bail!("{name}: Fortran-ordered arrays are not supported (save with np.ascontiguousarray)");
    }
    let shape = header.shape;
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let expected = numel.and_then(|n| n.checked_mul(dtype.size()));
    let (Some(numel), Some(expected)) = (numel, expected) else { bail!("{name}: shape {shape:?} is too large") };
    let have = data.len();
    if have != expected {
        let what = if have < expected { "truncated" } else { "has trailing bytes" };
        bail!("{name}: {what}: shape {shape:?} of {descr} needs {expected} data bytes, the file has {have}");
    }
    // One-byte types have no byte order: numpy writes `|u1`, which is what the crate reads.
    let descr_read =
        if dtype.size() == 1 { PyValue::String(format!("|{}", &descr[1..])) } else { header.type_descriptor };
    let values = read_values(dtype, data, &descr_read, numel)
        .map_err(|e| anyhow::anyhow!("{name}: cannot read the {descr} values: {e}"))?;
    Ok(NpyArray { dtype, shape, values })
}

/// Reads and parses a `.npy` file.
pub fn read(path: &Path) -> crate::Result<NpyArray> {
    if !path.exists() {
        bail!("{}: file not found", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse(&bytes, &path.display().to_string())
}

/// Writes a C-ordered `.npy` of the given dtype descriptor (`<f4`, `|u1`, `<i8`, ...) and raw
/// values in that type's byte order; the crate writes the header (version 1.0 unless the header
/// needs more, padded so the data starts at a multiple of 64 bytes).
pub fn write(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> crate::Result<()> {
    let dtype = Dtype::parse(descr).with_context(|| format!("{}: cannot write dtype `{descr}`", path.display()))?;
    let needed = shape.iter().product::<usize>() * dtype.size();
    if data.len() != needed {
        bail!("{}: shape {shape:?} of {descr} needs {needed} bytes, got {}", path.display(), data.len());
    }
    let header =
        Header { type_descriptor: PyValue::String(descr.into()), layout: Layout::Standard, shape: shape.to_vec() };
    let mut out = header.to_bytes().map_err(|e| anyhow::anyhow!("{}: cannot write the header: {e}", path.display()))?;
    out.write_all(data)?;
    std::fs::write(path, out).with_context(|| format!("{}: cannot write", path.display()))
}

/// `npy:IMAGES.npy[,LABELS.npy]` as a data set.
pub fn load_npy_dataset(images: &Path, labels: Option<&Path>) -> crate::Result<Dataset> {
    let arr = read(images)?;
    let labels = labels.map(|l| read(l).map(|a| (a, l.display().to_string()))).transpose()?;
    let labels = labels.as_ref().map(|(a, n)| (a, n.as_str()));
    dataset_from_arrays(&arr, &images.display().to_string(), labels)
}

/// Parsed image (or point) and label arrays as a data set; `name` and the label array's name are
/// used in error messages.
pub fn dataset_from_arrays(arr: &NpyArray, name: &str, labels: Option<(&NpyArray, &str)>) -> crate::Result<Dataset> {
    let (pixels, shape) = match (&arr.values, arr.shape.as_slice()) {
        (Values::U8(data), &[n, h, w, c]) => {
            if !matches!(c, 1 | 3) {
                bail!("{name}: uint8 images must be NHWC with 1 or 3 channels; shape is {:?}", arr.shape);
            }
            let mut chw = vec![0u8; data.len()];
            for i in 0..n {
                for y in 0..h {
                    for x in 0..w {
                        for ch in 0..c {
                            chw[((i * c + ch) * h + y) * w + x] = data[((i * h + y) * w + x) * c + ch];
                        }
                    }
                }
            }
            (Pixels::U8(chw), vec![c, h, w])
        }
        (Values::Float(v), &[_, c, h, w]) => (Pixels::F32(v.clone()), vec![c, h, w]),
        (Values::Float(v), &[_, dim]) => (Pixels::F32(v.clone()), vec![dim]),
        _ => bail!(
            "{name}: expected uint8 images [N, H, W, C], float images [N, C, H, W] or float points [N, D]; got {:?} of {:?}",
            arr.shape,
            arr.dtype
        ),
    };
    let n = arr.shape[0];
    if n == 0 {
        bail!("{name}: the array holds no examples");
    }
    if let Pixels::F32(v) = &pixels {
        if let Some(bad) = v.iter().position(|x| !x.is_finite()) {
            bail!("{name}: value {bad} is not finite");
        }
    }
    let (labels, classes) = match labels {
        None => (None, Vec::new()),
        Some((larr, lname)) => {
            if larr.shape.len() != 1 {
                bail!("{lname}: labels must be a 1-D array; shape is {:?}", larr.shape);
            }
            if larr.shape[0] != n {
                bail!("{lname}: {} labels for {n} images in {name}", larr.shape[0]);
            }
            let l = larr.to_i64().with_context(|| format!("{lname}: labels must be integers, not {:?}", larr.dtype))?;
            if let Some(bad) = l.iter().find(|&&v| v < 0) {
                bail!("{lname}: negative label {bad}");
            }
            let max = l.iter().copied().max().unwrap_or(0);
            if max >= 100_000 {
                bail!("{lname}: label {max} is implausibly large");
            }
            (Some(l), (0..=max).map(|i| i.to_string()).collect())
        }
    };
    Dataset::new(name, pixels, shape, labels, classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_uint8_nhwc_to_nchw() {
        let dir = tempfile::tempdir().unwrap();
        let (n, h, w, c) = (2, 2, 3, 3);
        let data: Vec<u8> = (0..n * h * w * c).map(|i| i as u8).collect();
        let img = dir.path().join("x.npy");
        write(&img, "|u1", &[n, h, w, c], &data).unwrap();
        let labels = dir.path().join("y.npy");
        let l: Vec<u8> = [1i64, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        write(&labels, "<i8", &[2], &l).unwrap();
        let ds = load_npy_dataset(&img, Some(&labels)).unwrap();
        assert_eq!(ds.shape, vec![3, 2, 3]);
        assert_eq!(ds.labels, Some(vec![1, 4]));
        assert_eq!(ds.num_classes(), 5);
        let Pixels::U8(p) = &ds.pixels else { panic!() };
        // NCHW[0, 1, 0, 2] = NHWC[0, 0, 2, 1] = (0*3 + 2)*3 + 1 = 7
        assert_eq!(p[h * w + 2], 7);
    }

    #[test]
    fn float_points_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let pts = dir.path().join("p.npy");
        let data: Vec<u8> = [0.5f32, -1.0, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        write(&pts, "<f4", &[2, 2], &data).unwrap();
        let ds = load_npy_dataset(&pts, None).unwrap();
        assert_eq!((ds.len(), ds.shape.clone()), (2, vec![2]));

        let mut bytes = std::fs::read(&pts).unwrap();
        bytes.pop();
        std::fs::write(&pts, &bytes).unwrap();
        let e = load_npy_dataset(&pts, None).unwrap_err().to_string();
        assert!(e.contains("p.npy") && e.contains("truncated"), "{e}");
        bytes.extend([0, 0]);
        std::fs::write(&pts, &bytes).unwrap();
        let e = load_npy_dataset(&pts, None).unwrap_err().to_string();
        assert!(e.contains("p.npy: has trailing bytes"), "{e}");

        std::fs::write(&pts, b"hello").unwrap();
        let e = load_npy_dataset(&pts, None).unwrap_err().to_string();
        assert!(e.contains("not a .npy file"), "{e}");

        let e = load_npy_dataset(&dir.path().join("missing.npy"), None).unwrap_err().to_string();
        assert!(e.contains("missing.npy: file not found"), "{e}");
    }

    /// The bytes of a version 1.0 file with this header text (a newline is added) and data.
    fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
        let header = format!("{header}\n");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn empty_or_non_ascii_dtypes_are_errors() {
        // Found by `cargo fuzz run npy` in the hand-written parser: an empty descr panicked on slicing.
        for descr in ["", "\u{e9}", "<", "<c8", "|O"] {
            let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}");
            let e = parse(&npy_bytes(&header, &[0]), "d.npy").unwrap_err().to_string();
            // A non-ASCII version 1.0 header is the crate's error; the rest are ours.
            assert!(e.contains("unsupported dtype") || e.contains("bad .npy header"), "{descr:?}: {e}");
        }
    }

    #[test]
    fn headers_that_lie_are_errors_not_allocations() {
        // A version 2.0 header length of 4 GiB in a 20-byte file: refused before any allocation.
        let mut bytes = b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec();
        bytes.extend([b' '; 8]);
        let e = parse(&bytes, "h.npy").unwrap_err().to_string();
        assert!(e.contains("truncated .npy header"), "{e}");
        // A shape whose size overflows, and one far larger than the data.
        let e = parse(
            &npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }", &[]),
            "s.npy",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("too large"), "{e}");
        let e =
            parse(&npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000), }", &[0; 8]), "s.npy")
                .unwrap_err()
                .to_string();
        assert!(e.contains("s.npy: truncated") && e.contains("needs 8000000000 data bytes"), "{e}");
        let e = parse(&npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", &[0; 4]), "f.npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Fortran-ordered"), "{e}");
        let e = parse(&npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ", &[0; 4]), "b.npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.npy: bad .npy header"), "{e}");
    }

    #[test]
    fn big_endian_and_wide_types_read_as_numpy_writes_them() {
        // numpy: np.array([[1.5, -2.0]], dtype='>f8') and np.array([3, 7], dtype='>u2').
        let f = npy_bytes(
            "{'descr': '>f8', 'fortran_order': False, 'shape': (1, 2), }",
            &[1.5f64, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>(),
        );
        let a = parse(&f, "f.npy").unwrap();
        assert_eq!((a.dtype, a.shape.clone(), a.to_f32()), (Dtype::F64, vec![1, 2], vec![1.5, -2.0]));
        let l = npy_bytes("{'descr': '>u2', 'fortran_order': False, 'shape': (2,), }", &[0, 3, 0, 7]);
        assert_eq!(parse(&l, "l.npy").unwrap().to_i64(), Some(vec![3, 7]));
        let signed = npy_bytes("{'descr': '<i1', 'fortran_order': False, 'shape': (2,), }", &[0xff, 5]);
        assert_eq!(parse(&signed, "i.npy").unwrap().to_i64(), Some(vec![-1, 5]));
        let big = npy_bytes("{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }", &u64::MAX.to_le_bytes());
        assert_eq!(parse(&big, "u.npy").unwrap().to_i64(), Some(vec![i64::MAX]));
    }

    #[test]
    fn the_writer_refuses_data_of_the_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.npy");
        let e = write(&p, "<f4", &[2, 2], &[0; 15]).unwrap_err().to_string();
        assert!(e.contains("needs 16 bytes, got 15"), "{e}");
        assert!(write(&p, "<c8", &[1], &[0; 8]).is_err());
        assert!(!p.exists());
        // What it writes is what numpy writes: the data starts at a multiple of 64.
        write(&p, "<f4", &[3], &[0; 12]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        assert_eq!((bytes.len() - 12) % 64, 0);
        assert!(std::str::from_utf8(&bytes[10..bytes.len() - 12]).unwrap().contains("'shape': (3,)"));
    }

    #[test]
    fn label_count_mismatch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("x.npy");
        write(&img, "|u1", &[2, 1, 1, 3], &[0; 6]).unwrap();
        let labels = dir.path().join("y.npy");
        write(&labels, "|u1", &[3], &[0, 1, 2]).unwrap();
        let e = load_npy_dataset(&img, Some(&labels)).unwrap_err().to_string();
        assert!(e.contains("y.npy: 3 labels for 2 images"), "{e}");
    }
}
