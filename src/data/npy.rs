//! NumPy `.npy` files (format 1.0-3.0, C order): images as uint8 NHWC or float NCHW (values in
//! model space, [-1, 1]), points as float [N, D], labels as a 1-D integer array.
use super::{Dataset, Pixels};
use anyhow::{bail, Context};
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
    fn parse(descr: &str) -> Option<Self> {
        // By characters: the header is untrusted text (an empty or non-ASCII descr is an error).
        let mut chars = descr.chars();
        let order = chars.next()?;
        let code = chars.as_str();
        if order == '>' && !code.ends_with('1') {
            return None; // big-endian multi-byte types are not read
        }
        Some(match code {
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

    fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F64)
    }
}

/// A parsed array: its type, shape and raw little-endian data.
#[derive(Debug)]
pub struct NpyArray {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl NpyArray {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        self.values().collect()
    }

    /// The values as i64, or `None` for a float array.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        if self.dtype.is_float() {
            return None;
        }
        Some(self.values().map(|v: f64| v as i64).collect())
    }

    fn values<T: FromF64>(&self) -> impl Iterator<Item = T> + '_ {
        let size = self.dtype.size();
        self.data.chunks_exact(size).map(move |c| {
            T::from_f64(match self.dtype {
                Dtype::U8 => c[0] as f64,
                Dtype::I8 => c[0] as i8 as f64,
                Dtype::I16 => i16::from_le_bytes([c[0], c[1]]) as f64,
                Dtype::U16 => u16::from_le_bytes([c[0], c[1]]) as f64,
                Dtype::I32 => i32::from_le_bytes(c.try_into().unwrap()) as f64,
                Dtype::U32 => u32::from_le_bytes(c.try_into().unwrap()) as f64,
                Dtype::I64 => i64::from_le_bytes(c.try_into().unwrap()) as f64,
                Dtype::U64 => u64::from_le_bytes(c.try_into().unwrap()) as f64,
                Dtype::F32 => f32::from_le_bytes(c.try_into().unwrap()) as f64,
                Dtype::F64 => f64::from_le_bytes(c.try_into().unwrap()),
            })
        })
    }
}

trait FromF64 {
    fn from_f64(v: f64) -> Self;
}
impl FromF64 for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl FromF64 for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// Extracts the value text of `'key': value` from a header dict.
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(rest[..end].trim())
}

/// Parses `.npy` bytes; `name` is used in error messages.
pub fn parse(bytes: &[u8], name: &str) -> crate::Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{name}: not a .npy file (missing the \\x93NUMPY magic)");
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => bail!("{name}: unsupported .npy format version {v}"),
    };
    let data_start = hstart.checked_add(hlen).filter(|&e| e <= bytes.len());
    let Some(data_start) = data_start else { bail!("{name}: truncated .npy header") };
    let header =
        std::str::from_utf8(&bytes[hstart..data_start]).with_context(|| format!("{name}: .npy header is not text"))?;
    let descr = header_field(header, "descr").with_context(|| format!("{name}: .npy header has no 'descr'"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let dtype = Dtype::parse(descr).with_context(|| {
        format!("{name}: unsupported dtype `{descr}` (expected u1, i1-i8, u2-u8, f4 or f8, little-endian)")
    })?;
    let fortran =
        header_field(header, "fortran_order").with_context(|| format!("{name}: .npy header has no 'fortran_order'"))?;
    if fortran != "False" {
        bail!("{name}: Fortran-ordered arrays are not supported (save with np.ascontiguousarray)");
    }
    let shape_text = header_field(header, "shape").with_context(|| format!("{name}: .npy header has no 'shape'"))?;
    let shape: Vec<usize> = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{name}: bad shape `{shape_text}` in .npy header"))?;
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let expected = numel.and_then(|n| n.checked_mul(dtype.size()));
    let Some(expected) = expected else { bail!("{name}: shape {shape:?} is too large") };
    let have = bytes.len() - data_start;
    if have != expected {
        let what = if have < expected { "truncated" } else { "has trailing bytes" };
        bail!("{name}: {what}: shape {shape:?} of {descr} needs {expected} data bytes, the file has {have}");
    }
    Ok(NpyArray { dtype, shape, data: bytes[data_start..].to_vec() })
}

/// Reads and parses a `.npy` file.
pub fn read(path: &Path) -> crate::Result<NpyArray> {
    if !path.exists() {
        bail!("{}: file not found", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse(&bytes, &path.display().to_string())
}

/// Writes a C-ordered `.npy` (version 1.0) of the given dtype descriptor and raw data.
pub fn write(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> crate::Result<()> {
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
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
    let (pixels, shape) = match (arr.dtype, arr.shape.as_slice()) {
        (Dtype::U8, &[n, h, w, c]) => {
            if !matches!(c, 1 | 3) {
                bail!("{name}: uint8 images must be NHWC with 1 or 3 channels; shape is {:?}", arr.shape);
            }
            let mut chw = vec![0u8; arr.data.len()];
            for i in 0..n {
                for y in 0..h {
                    for x in 0..w {
                        for ch in 0..c {
                            chw[((i * c + ch) * h + y) * w + x] = arr.data[((i * h + y) * w + x) * c + ch];
                        }
                    }
                }
            }
            (Pixels::U8(chw), vec![c, h, w])
        }
        (d, &[_, c, h, w]) if d.is_float() => (Pixels::F32(arr.to_f32()), vec![c, h, w]),
        (d, &[_, dim]) if d.is_float() => (Pixels::F32(arr.to_f32()), vec![dim]),
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
            let k = l.iter().copied().max().unwrap_or(0) as usize + 1;
            if k > 100_000 {
                bail!("{lname}: label {} is implausibly large", k - 1);
            }
            (Some(l), (0..k).map(|i| i.to_string()).collect())
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

        std::fs::write(&pts, b"hello").unwrap();
        let e = load_npy_dataset(&pts, None).unwrap_err().to_string();
        assert!(e.contains("not a .npy file"), "{e}");

        let e = load_npy_dataset(&dir.path().join("missing.npy"), None).unwrap_err().to_string();
        assert!(e.contains("missing.npy: file not found"), "{e}");
    }

    #[test]
    fn empty_or_non_ascii_dtypes_are_errors() {
        // Found by `cargo fuzz run npy`: an empty descr panicked on slicing.
        for descr in ["", "\u{e9}", "<"] {
            let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}\n");
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend((header.len() as u16).to_le_bytes());
            bytes.extend(header.as_bytes());
            bytes.push(0);
            let e = parse(&bytes, "d.npy").unwrap_err().to_string();
            assert!(e.contains("unsupported dtype"), "{descr:?}: {e}");
        }
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
