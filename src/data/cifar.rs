//! The official binary releases of CIFAR-10 (`data_batch_1..5.bin`, `test_batch.bin`; records of
//! 1 label byte + 3072 pixel bytes) and CIFAR-100 (`train.bin`, `test.bin`; coarse label, fine
//! label, 3072 pixel bytes). Pixels are stored channel-major (R plane, G plane, B plane), as NCHW.
use super::{Dataset, Pixels, Split};
use anyhow::{bail, Context};
use std::path::Path;

pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
const PIXELS: usize = 3 * 32 * 32;

/// Labels and pixels of one binary file: [`parse_cifar10_file`] or [`parse_cifar100_file`].
type ParseFile = fn(&[u8], &str) -> crate::Result<(Vec<u8>, Vec<i64>)>;

/// Reads one binary file and parses it with `parse`.
fn read_records(path: &Path, parse: ParseFile) -> crate::Result<(Vec<u8>, Vec<i64>)> {
    if !path.exists() {
        bail!("{}: file not found (expected the official CIFAR binary release)", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse(&bytes, &path.display().to_string())
}

/// Parses the bytes of one binary file of `header` label bytes + 3072 pixel bytes per record, at
/// most `max_records` of them; `label_of` checks a record's label bytes and returns its label.
/// `name` is used in error messages.
fn parse_records(
    bytes: &[u8],
    name: &str,
    header: usize,
    max_records: usize,
    label_of: impl Fn(&[u8]) -> Result<i64, String>,
) -> crate::Result<(Vec<u8>, Vec<i64>)> {
    let record = header + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        bail!(
            "{name}: {} bytes is not a whole number of {record}-byte records (an official file has {} bytes); truncated or not a CIFAR binary file",
            bytes.len(),
            record * max_records
        );
    }
    let n = bytes.len() / record;
    if n > max_records {
        bail!("{name}: {n} records, more than the {max_records} of an official file");
    }
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = label_of(&rec[..header]).map_err(|e| anyhow::anyhow!("{name}: record {i} has {e}"))?;
        labels.push(label);
        pixels.extend_from_slice(&rec[header..]);
    }
    Ok((pixels, labels))
}

/// A CIFAR-10 record's label byte.
fn cifar10_label(h: &[u8]) -> Result<i64, String> {
    match h[0] {
        l @ 0..=9 => Ok(l as i64),
        l => Err(format!("label {l}, outside 0..10")),
    }
}

/// A CIFAR-100 record's label bytes: byte 0 is the coarse label (< 20), byte 1 the fine label
/// (< 100), which is returned.
fn cifar100_label(h: &[u8]) -> Result<i64, String> {
    match (h[0], h[1]) {
        (c, _) if c >= 20 => Err(format!("coarse label {c}, outside 0..20")),
        (_, f) if f >= 100 => Err(format!("fine label {f}, outside 0..100")),
        (_, f) => Ok(f as i64),
    }
}

/// Parses the bytes of one CIFAR-10 binary file (`data_batch_N.bin`, `test_batch.bin`) into
/// (NCHW pixels, labels); the file readers below use it.
pub fn parse_cifar10_file(bytes: &[u8], name: &str) -> crate::Result<(Vec<u8>, Vec<i64>)> {
    parse_records(bytes, name, 1, 10_000, cifar10_label)
}

/// Parses the bytes of one CIFAR-100 binary file (`train.bin`, `test.bin`) into (NCHW pixels,
/// fine labels).
pub fn parse_cifar100_file(bytes: &[u8], name: &str) -> crate::Result<(Vec<u8>, Vec<i64>)> {
    parse_records(bytes, name, 2, 50_000, cifar100_label)
}

/// Reads class names from a `*.meta.txt`/`*_names.txt` file of the release when present.
fn read_names(path: &Path, expected: usize) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    (names.len() == expected).then_some(names)
}

fn check_dir(dir: &Path) -> crate::Result<()> {
    if !dir.is_dir() {
        bail!("{}: not a folder (expected the folder holding the CIFAR binary files)", dir.display());
    }
    Ok(())
}

/// CIFAR-10 from `dir` (the `cifar-10-batches-bin` folder).
pub fn load_cifar10(dir: &Path, split: Split) -> crate::Result<Dataset> {
    check_dir(dir)?;
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in &files {
        let (p, l) = read_records(&dir.join(f), parse_cifar10_file)?;
        pixels.extend(p);
        labels.extend(l);
    }
    let classes = read_names(&dir.join("batches.meta.txt"), 10)
        .unwrap_or_else(|| CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    Dataset::new(dir.display().to_string(), Pixels::U8(pixels), vec![3, 32, 32], Some(labels), classes)
}

/// CIFAR-100 from `dir` (the `cifar-100-binary` folder), with its 100 fine labels.
pub fn load_cifar100(dir: &Path, split: Split) -> crate::Result<Dataset> {
    check_dir(dir)?;
    let file = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    let path = dir.join(file);
    let (pixels, labels) = read_records(&path, parse_cifar100_file)?;
    let classes = read_names(&dir.join("fine_label_names.txt"), 100)
        .unwrap_or_else(|| (0..100).map(|i| format!("class{i:02}")).collect());
    Dataset::new(dir.display().to_string(), Pixels::U8(pixels), vec![3, 32, 32], Some(labels), classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cifar10_file(path: &Path, labels: &[u8]) {
        let mut bytes = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            bytes.push(l);
            bytes.extend((0..PIXELS).map(|p| ((p + i) % 256) as u8));
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn reads_cifar10_layout_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        for b in 1..=5 {
            write_cifar10_file(&dir.path().join(format!("data_batch_{b}.bin")), &[b as u8, 9]);
        }
        write_cifar10_file(&dir.path().join("test_batch.bin"), &[3]);
        let train = load_cifar10(dir.path(), Split::Train).unwrap();
        assert_eq!(train.len(), 10);
        assert_eq!(train.labels.as_ref().unwrap()[..4], [1, 9, 2, 9]);
        assert_eq!(train.classes[0], "airplane");
        let test = load_cifar10(dir.path(), Split::Test).unwrap();
        assert_eq!(test.len(), 1);
        // The first pixel of the record is the R plane's first value, stored as NCHW.
        if let Pixels::U8(p) = &test.pixels {
            assert_eq!(p[0], 0);
            assert_eq!(p[1024], (1024 % 256) as u8);
        }
    }

    #[test]
    fn truncated_or_mislabelled_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10_file(&dir.path().join("test_batch.bin"), &[3, 4]);
        let path = dir.path().join("test_batch.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 100);
        std::fs::write(&path, &bytes).unwrap();
        let e = load_cifar10(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin") && e.contains("truncated"), "{e}");

        write_cifar10_file(&path, &[3, 12]);
        let e = load_cifar10(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("record 1 has label 12"), "{e}");

        let e = load_cifar10(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(e.contains("data_batch_1.bin: file not found"), "{e}");
    }

    #[test]
    fn reads_cifar100_fine_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for (coarse, fine) in [(3u8, 42u8), (19, 99)] {
            bytes.push(coarse);
            bytes.push(fine);
            bytes.extend(std::iter::repeat_n(7u8, PIXELS));
        }
        std::fs::write(dir.path().join("test.bin"), &bytes).unwrap();
        let ds = load_cifar100(dir.path(), Split::Test).unwrap();
        assert_eq!(ds.labels.unwrap(), vec![42, 99]);
        assert_eq!(ds.classes.len(), 100);
        bytes[1] = 100;
        std::fs::write(dir.path().join("test.bin"), &bytes).unwrap();
        let e = load_cifar100(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("fine label 100"), "{e}");
    }
}
