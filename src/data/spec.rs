//! Data set specs (`cifar10:DIR:test`, `svhn:DIR:test`, `folder:DIR`, `npy:X.npy,Y.npy`, `synthetic:shapes:N`, ...)
//! parsed and resolved to a [`Dataset`].
use super::{builtin, cifar, folder, npy, svhn, toy2d, Dataset};
use anyhow::{bail, Context};
use std::path::PathBuf;

// Split lives in data/mod.rs so cifar.rs need not import this file; `data::spec::Split` still names it.
pub use super::Split;

/// A parsed data set spec.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSpec {
    Cifar10 { dir: PathBuf, split: Split },
    Cifar100 { dir: PathBuf, split: Split },
    Svhn { dir: PathBuf, split: Split },
    Folder { dir: PathBuf },
    Npy { images: PathBuf, labels: Option<PathBuf> },
    Shapes { n: usize, split: Split },
    NoiseUniform { n: usize },
    NoiseGaussian { n: usize },
    Constant { n: usize },
    Interp { inner: Box<DataSpec> },
    Toy2d { name: toy2d::Toy, n: usize, split: Split },
}

/// What every loader may need besides the spec.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Seed of the built-in generators (the `:test` split uses a different stream).
    pub seed: u64,
    /// Where decode caches go (`datasets/.cache`); `None` disables caching.
    pub cache_dir: Option<PathBuf>,
    /// Image folders: resize other sizes to this square size instead of failing.
    pub resize: Option<u32>,
    /// Image folders: the expected side length.
    pub image_size: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { seed: 0, cache_dir: default_cache_dir(), resize: None, image_size: 32 }
    }
}

/// `$EBM_CACHE_DIR`, else `datasets/.cache` under the working directory.
pub fn default_cache_dir() -> Option<PathBuf> {
    match std::env::var_os("EBM_CACHE_DIR") {
        Some(d) if d.is_empty() => None,
        Some(d) => Some(PathBuf::from(d)),
        None => Some(PathBuf::from("datasets/.cache")),
    }
}

const SPEC_HELP: &str = "cifar10:DIR[:train|test], cifar100:DIR[:train|test], svhn:DIR[:train|test], folder:DIR, \
npy:IMAGES.npy[,LABELS.npy], synthetic:shapes[:N][:train|test], noise:uniform[:N], noise:gaussian[:N], \
constant[:N], interp:SPEC, toy2d:NAME[:N][:train|test]";

fn parse_count(s: &str, spec: &str) -> crate::Result<usize> {
    let n: usize = s.parse().with_context(|| format!("data spec `{spec}`: `{s}` is not a number of examples"))?;
    if n == 0 {
        bail!("data spec `{spec}`: the number of examples must be positive");
    }
    Ok(n)
}

/// Splits a trailing `:train`/`:test` off a path-like remainder.
fn split_suffix(rest: &str) -> (&str, Split) {
    if let Some(p) = rest.strip_suffix(":test") {
        (p, Split::Test)
    } else if let Some(p) = rest.strip_suffix(":train") {
        (p, Split::Train)
    } else {
        (rest, Split::Train)
    }
}

/// Parses `[:N][:train|test]` after a built-in's name.
fn count_and_split(parts: &[&str], default_n: usize, spec: &str) -> crate::Result<(usize, Split)> {
    let mut n = default_n;
    let mut split = Split::Train;
    for (k, p) in parts.iter().enumerate() {
        match *p {
            "train" => split = Split::Train,
            "test" => split = Split::Test,
            s if k == 0 => n = parse_count(s, spec)?,
            s => bail!("data spec `{spec}`: unexpected `{s}` (expected a count, then train or test)"),
        }
    }
    Ok((n, split))
}

impl DataSpec {
    /// Parses a spec string; an unknown one gets an error listing what is accepted.
    pub fn parse(spec: &str) -> crate::Result<Self> {
        let spec = spec.trim();
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let need_rest = |what: &str| -> crate::Result<()> {
            if rest.is_empty() {
                bail!("data spec `{spec}`: expected {what}");
            }
            Ok(())
        };
        Ok(match kind {
            "cifar10" | "cifar100" => {
                need_rest("a folder after the colon, as in cifar10:DIR[:train|test]")?;
                let (dir, split) = split_suffix(rest);
                let dir = PathBuf::from(dir);
                if kind == "cifar10" {
                    DataSpec::Cifar10 { dir, split }
                } else {
                    DataSpec::Cifar100 { dir, split }
                }
            }
            "svhn" => {
                need_rest("a folder after the colon, as in svhn:DIR[:train|test]")?;
                let (dir, split) = split_suffix(rest);
                DataSpec::Svhn { dir: PathBuf::from(dir), split }
            }
            "folder" => {
                need_rest("a folder, as in folder:DIR")?;
                DataSpec::Folder { dir: PathBuf::from(rest) }
            }
            "npy" => {
                need_rest("a file, as in npy:IMAGES.npy[,LABELS.npy]")?;
                let (images, labels) = match rest.split_once(',') {
                    Some((i, l)) => (PathBuf::from(i), Some(PathBuf::from(l))),
                    None => (PathBuf::from(rest), None),
                };
                DataSpec::Npy { images, labels }
            }
            "synthetic" => {
                let parts: Vec<&str> = rest.split(':').collect();
                if parts[0] != "shapes" {
                    bail!("data spec `{spec}`: unknown synthetic set `{}` (expected synthetic:shapes[:N])", parts[0]);
                }
                let (n, split) = count_and_split(&parts[1..], 10_000, spec)?;
                DataSpec::Shapes { n, split }
            }
            "noise" => {
                let parts: Vec<&str> = rest.split(':').collect();
                let n = match parts.get(1) {
                    Some(s) => parse_count(s, spec)?,
                    None => 10_000,
                };
                if parts.len() > 2 {
                    bail!("data spec `{spec}`: expected noise:uniform[:N] or noise:gaussian[:N]");
                }
                match parts[0] {
                    "uniform" => DataSpec::NoiseUniform { n },
                    "gaussian" => DataSpec::NoiseGaussian { n },
                    other => bail!("data spec `{spec}`: unknown noise `{other}` (expected uniform or gaussian)"),
                }
            }
            "constant" => {
                let n = if rest.is_empty() { 10_000 } else { parse_count(rest, spec)? };
                DataSpec::Constant { n }
            }
            "interp" => {
                need_rest("another spec, as in interp:cifar10:DIR:test")?;
                let inner = DataSpec::parse(rest)?;
                if matches!(inner, DataSpec::Toy2d { .. }) {
                    bail!("data spec `{spec}`: interp needs an image set");
                }
                DataSpec::Interp { inner: Box::new(inner) }
            }
            "toy2d" => {
                let parts: Vec<&str> = rest.split(':').collect();
                let name = toy2d::Toy::parse(parts[0]).with_context(|| format!("data spec `{spec}`"))?;
                let (n, split) = count_and_split(&parts[1..], 10_000, spec)?;
                DataSpec::Toy2d { name, n, split }
            }
            _ => bail!("unknown data spec `{spec}`; expected one of: {SPEC_HELP}"),
        })
    }
}

/// Parses and loads a spec.
pub fn load(spec: &str, opts: &LoadOptions) -> crate::Result<Dataset> {
    let parsed = DataSpec::parse(spec)?;
    let mut ds = load_spec(&parsed, opts)?;
    ds.name = spec.to_string();
    if ds.is_empty() {
        bail!("data spec `{spec}`: the data set is empty");
    }
    Ok(ds)
}

/// Loads an already parsed spec.
pub fn load_spec(spec: &DataSpec, opts: &LoadOptions) -> crate::Result<Dataset> {
    let stream = |split: Split| match split {
        Split::Train => opts.seed,
        Split::Test => opts.seed ^ 0x7e57_7e57_7e57_7e57,
    };
    match spec {
        DataSpec::Cifar10 { dir, split } => cifar::load_cifar10(dir, *split),
        DataSpec::Cifar100 { dir, split } => cifar::load_cifar100(dir, *split),
        DataSpec::Svhn { dir, split } => svhn::load_svhn(dir, *split),
        DataSpec::Folder { dir } => folder::load_folder(dir, opts),
        DataSpec::Npy { images, labels } => npy::load_npy_dataset(images, labels.as_deref()),
        DataSpec::Shapes { n, split } => Ok(builtin::shapes(*n, stream(*split))),
        DataSpec::NoiseUniform { n } => Ok(builtin::noise_uniform(*n, opts.seed)),
        DataSpec::NoiseGaussian { n } => Ok(builtin::noise_gaussian(*n, opts.seed)),
        DataSpec::Constant { n } => Ok(builtin::constant(*n, opts.seed)),
        DataSpec::Interp { inner } => {
            let base = load_spec(inner, opts)?;
            builtin::interp(&base)
        }
        DataSpec::Toy2d { name, n, split } => Ok(toy2d::sample_dataset(*name, *n, stream(*split))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            DataSpec::parse("cifar10:/d:test").unwrap(),
            DataSpec::Cifar10 { dir: "/d".into(), split: Split::Test }
        );
        assert_eq!(
            DataSpec::parse("cifar100:/d").unwrap(),
            DataSpec::Cifar100 { dir: "/d".into(), split: Split::Train }
        );
        assert_eq!(DataSpec::parse("svhn:/d:test").unwrap(), DataSpec::Svhn { dir: "/d".into(), split: Split::Test });
        assert_eq!(DataSpec::parse("svhn:/d").unwrap(), DataSpec::Svhn { dir: "/d".into(), split: Split::Train });
        assert!(DataSpec::parse("svhn").unwrap_err().to_string().contains("svhn:DIR[:train|test]"));
        assert_eq!(
            DataSpec::parse("npy:a.npy,b.npy").unwrap(),
            DataSpec::Npy { images: "a.npy".into(), labels: Some("b.npy".into()) }
        );
        assert_eq!(
            DataSpec::parse("synthetic:shapes:500:test").unwrap(),
            DataSpec::Shapes { n: 500, split: Split::Test }
        );
        assert_eq!(DataSpec::parse("noise:gaussian:7").unwrap(), DataSpec::NoiseGaussian { n: 7 });
        assert_eq!(DataSpec::parse("constant").unwrap(), DataSpec::Constant { n: 10_000 });
        assert!(matches!(DataSpec::parse("interp:synthetic:shapes:10").unwrap(), DataSpec::Interp { .. }));
    }

    #[test]
    fn rejects_unknown_specs_clearly() {
        let e = DataSpec::parse("mnist:/x").unwrap_err().to_string();
        assert!(e.contains("unknown data spec `mnist:/x`") && e.contains("cifar10:DIR"), "{e}");
        let e = DataSpec::parse("noise:pink").unwrap_err().to_string();
        assert!(e.contains("unknown noise `pink`"), "{e}");
        let e = DataSpec::parse("synthetic:shapes:zero").unwrap_err().to_string();
        assert!(e.contains("not a number"), "{e}");
        let e = DataSpec::parse("toy2d:spiral").unwrap_err().to_string();
        assert!(e.contains("spiral"), "{e}");
    }
}
