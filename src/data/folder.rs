//! Image folders: one sub-folder per class (sorted names are the labels), PNG or JPEG images.
//! Decoding runs on all cores once; the result is cached (see [`super::cache`]) keyed by the
//! folder's content, so later runs start in about a second.
use super::{cache, Dataset, LoadOptions, Pixels};
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// Image files with their labels.
type LabelledFiles = Vec<(PathBuf, i64)>;

/// Lists (class names, files with their labels), both sorted.
fn list(dir: &Path) -> crate::Result<(Vec<String>, LabelledFiles)> {
    if !dir.is_dir() {
        bail!("{}: not a folder (expected one sub-folder of images per class)", dir.display());
    }
    let mut classes: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!("{}: no class sub-folders (expected DIR/<class>/<image>.png|jpg)", dir.display());
    }
    let mut files = Vec::new();
    for (label, (name, path)) in classes.iter().enumerate() {
        let mut imgs: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot list", path.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        imgs.sort();
        if imgs.is_empty() {
            bail!("{}: class folder `{name}` holds no PNG or JPEG images", path.display());
        }
        files.extend(imgs.into_iter().map(|p| (p, label as i64)));
    }
    Ok((classes.into_iter().map(|(n, _)| n).collect(), files))
}

/// Decodes one image file's bytes (PNG or JPEG) to RGB [C, H, W] bytes, checking (or, when
/// asked, fixing) its size; `path` is used in error messages.
pub fn decode(bytes: &[u8], path: &Path, opts: &LoadOptions) -> crate::Result<Vec<u8>> {
    let img = image::load_from_memory(bytes).with_context(|| format!("{}: cannot decode image", path.display()))?;
    let side = opts.resize.unwrap_or(opts.image_size);
    let img = if img.width() != side || img.height() != side {
        if opts.resize.is_none() {
            bail!(
                "{}: image is {}x{}, expected {side}x{side} (pass --resize {side} to resize)",
                path.display(),
                img.width(),
                img.height()
            );
        }
        img.resize_exact(side, side, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut chw = vec![0u8; 3 * h * w];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            chw[c * h * w + i] = px.0[c];
        }
    }
    Ok(chw)
}

/// Loads an image folder, using or filling the decode cache.
pub fn load_folder(dir: &Path, opts: &LoadOptions) -> crate::Result<Dataset> {
    let (classes, files) = list(dir)?;
    // Read every file once: its bytes feed both the content key and the decoder.
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|(p, _)| std::fs::read(p).with_context(|| format!("{}: cannot read", p.display())))
        .collect::<crate::Result<_>>()?;
    let mut hasher = Sha256::new();
    hasher.update(format!("size={:?} resize={:?};", opts.image_size, opts.resize));
    for ((path, label), bytes) in files.iter().zip(&contents) {
        let rel = path.strip_prefix(dir).unwrap_or(path);
        hasher.update(format!("{}|{label}|{}|", rel.display(), bytes.len()));
        hasher.update(bytes);
    }
    let key: String = hasher.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    let name = format!("folder:{}", dir.display());
    let cache_file = opts.cache_dir.as_ref().map(|d| cache::cache_path(d, "folder", &key));
    if let Some(cf) = cache_file.as_ref().filter(|cf| cf.exists()) {
        match cache::read(cf, &name) {
            Ok(ds) => return Ok(ds),
            Err(e) => eprintln!("warning: {e:#}; decoding the images again"),
        }
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = contents.len().div_ceil(threads);
    let decoded: Vec<crate::Result<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = contents
            .chunks(chunk)
            .zip(files.chunks(chunk))
            .map(|(cs, fs)| {
                s.spawn(move || cs.iter().zip(fs).map(|(b, (p, _))| decode(b, p, opts)).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("decoder thread panicked")).collect()
    });
    let side = opts.resize.unwrap_or(opts.image_size) as usize;
    let mut pixels = Vec::with_capacity(files.len() * 3 * side * side);
    for d in decoded {
        pixels.extend(d?);
    }
    let labels = files.iter().map(|(_, l)| *l).collect();
    let ds = Dataset::new(name, Pixels::U8(pixels), vec![3, side, side], Some(labels), classes)?;
    if let Some(cf) = cache_file {
        if let Err(e) = cache::write(&cf, &ds) {
            eprintln!("warning: could not write the decode cache: {e:#}");
        }
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
        img.save(path).unwrap();
    }

    fn opts(cache: Option<PathBuf>) -> LoadOptions {
        LoadOptions { cache_dir: cache, ..LoadOptions::default() }
    }

    #[test]
    fn loads_sorted_classes_and_uses_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        for (cls, colour) in [("b_dog", [0, 255, 0]), ("a_cat", [255, 0, 0])] {
            std::fs::create_dir(dir.path().join(cls)).unwrap();
            for i in 0..3 {
                write_png(&dir.path().join(cls).join(format!("{i}.png")), 32, 32, colour);
            }
        }
        let cache_dir = tempfile::tempdir().unwrap();
        let ds = load_folder(dir.path(), &opts(Some(cache_dir.path().into()))).unwrap();
        assert_eq!(ds.classes, vec!["a_cat", "b_dog"]);
        assert_eq!(ds.labels.as_ref().unwrap(), &vec![0, 0, 0, 1, 1, 1]);
        let Pixels::U8(p) = &ds.pixels else { panic!() };
        // a_cat is red: R plane 255, G plane 0.
        assert_eq!((p[0], p[1024]), (255, 0));
        assert_eq!(std::fs::read_dir(cache_dir.path()).unwrap().count(), 1);
        let again = load_folder(dir.path(), &opts(Some(cache_dir.path().into()))).unwrap();
        assert_eq!(again.labels, ds.labels);
        // Changing a file changes the key: a second cache file appears.
        write_png(&dir.path().join("a_cat/0.png"), 32, 32, [1, 2, 3]);
        load_folder(dir.path(), &opts(Some(cache_dir.path().into()))).unwrap();
        assert_eq!(std::fs::read_dir(cache_dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn wrong_sizes_fail_unless_resizing_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        write_png(&dir.path().join("c/x.png"), 40, 30, [9, 9, 9]);
        let e = load_folder(dir.path(), &opts(None)).unwrap_err().to_string();
        assert!(e.contains("x.png") && e.contains("40x30"), "{e}");
        let ds = load_folder(dir.path(), &LoadOptions { resize: Some(32), cache_dir: None, ..LoadOptions::default() })
            .unwrap();
        assert_eq!(ds.shape, vec![3, 32, 32]);
    }

    #[test]
    fn corrupt_images_and_empty_folders_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_folder(dir.path(), &opts(None)).unwrap_err().to_string();
        assert!(e.contains("no class sub-folders"), "{e}");
        std::fs::create_dir(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("c/bad.jpg"), b"not a jpeg").unwrap();
        let e = format!("{:#}", load_folder(dir.path(), &opts(None)).unwrap_err());
        assert!(e.contains("bad.jpg") && e.contains("cannot decode"), "{e}");
    }
}
