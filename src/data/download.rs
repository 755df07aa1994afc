//! `ebm download cifar10|cifar100|svhn`: the official releases, fetched into the layout the data
//! specs read (`cifar10:DIR/cifar-10-batches-bin`, `cifar100:DIR/cifar-100-binary`, `svhn:DIR/svhn`).
//!
//! Each file goes to `NAME.part` first and is resumed from there (an HTTP `Range: bytes=N-`
//! request; a server that ignores it answers 200 and the file starts over); when complete, its
//! MD5 is compared with the published one, and only a file that matches is renamed into place. A
//! mismatch removes the `.part` file, so no corrupt data stays behind. Archives are unpacked into
//! a temporary folder beside the target and renamed into place once whole, regular files and
//! folders only, each under the one folder the archive should hold; then the archive is removed.
//!
//! Published checksums: CIFAR's from its authors' page (https://www.cs.toronto.edu/~kriz/cifar.html),
//! SVHN's as torchvision's `SVHN` class checks them (the SVHN page publishes none).
//!
//! `EBM_DOWNLOAD_BASE=URL` fetches every file as `URL/FILE` instead (a mirror holding the same
//! files, or the tests' local server); `EBM_DOWNLOAD_MD5=FILE=HEX[,FILE=HEX]` replaces expected
//! checksums, for the tests' small archives only.
use anyhow::{bail, Context};
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One file of a release.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: &'static str,
    pub md5: &'static str,
}

impl Remote {
    /// The file's name: the last segment of its URL.
    pub fn file(&self) -> &'static str {
        self.url.rsplit('/').next().unwrap_or(self.url)
    }
}

/// A data set's release: its files, and the folder (under `--dir`) the data specs read.
#[derive(Debug, Clone)]
pub struct Release {
    pub name: &'static str,
    pub remotes: &'static [Remote],
    /// True: each remote is a .tar.gz holding the one folder `folder`; false: the remotes are the
    /// data files themselves, kept in `folder`.
    pub archive: bool,
    pub folder: &'static str,
    /// The files that make the release complete, relative to `folder`.
    pub files: &'static [&'static str],
    /// The spec kind that reads `folder` (`cifar10`, ...).
    pub spec: &'static str,
}

pub const RELEASES: [Release; 3] = [
    Release {
        name: "cifar10",
        remotes: &[Remote {
            url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            md5: "c32a1d4ab5d03f1284b67883e8d87530",
        }],
        archive: true,
        folder: "cifar-10-batches-bin",
        files: &[
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
            "test_batch.bin",
        ],
        spec: "cifar10",
    },
    Release {
        name: "cifar100",
        remotes: &[Remote {
            url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
            md5: "03b5dce01913d631647c71ecec9e9cb8",
        }],
        archive: true,
        folder: "cifar-100-binary",
        files: &["train.bin", "test.bin"],
        spec: "cifar100",
    },
    Release {
        name: "svhn",
        remotes: &[
            Remote {
                url: "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                md5: "e26dedcc434d2e4c54c9b2d4a06d8373",
            },
            Remote {
                url: "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                md5: "eb5a983be6a315427106f1b164d9cef3",
            },
        ],
        archive: false,
        folder: "svhn",
        files: &["train_32x32.mat", "test_32x32.mat"],
        spec: "svhn",
    },
];

/// The release called `name`.
pub fn release(name: &str) -> crate::Result<&'static Release> {
    RELEASES.iter().find(|r| r.name == name).with_context(|| {
        let names: Vec<&str> = RELEASES.iter().map(|r| r.name).collect();
        format!("unknown data set `{name}` to download (expected one of: {})", names.join(", "))
    })
}

/// Where files come from and what they must hash to: the official URLs and checksums, unless
/// overridden (see the top of this file).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Fetch `BASE/FILE` instead of the official URL.
    pub base: Option<String>,
    /// Expected MD5s by file name, replacing the published ones.
    pub md5: Vec<(String, String)>,
    /// Print a line per file on stdout (and a progress bar on a terminal's stderr).
    pub verbose: bool,
}

impl Options {
    /// From `EBM_DOWNLOAD_BASE` and `EBM_DOWNLOAD_MD5`.
    pub fn from_env() -> crate::Result<Self> {
        let base = std::env::var("EBM_DOWNLOAD_BASE").ok().filter(|b| !b.is_empty());
        let mut md5 = Vec::new();
        if let Ok(list) = std::env::var("EBM_DOWNLOAD_MD5") {
            for item in list.split(',').filter(|s| !s.is_empty()) {
                let Some((file, hex)) = item.split_once('=') else {
                    bail!("EBM_DOWNLOAD_MD5: `{item}` is not FILE=HEX");
                };
                md5.push((file.to_string(), hex.to_ascii_lowercase()));
            }
        }
        Ok(Options { base, md5, verbose: false })
    }

    fn url(&self, r: &Remote) -> String {
        match &self.base {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), r.file()),
            None => r.url.to_string(),
        }
    }

    fn md5(&self, r: &Remote) -> String {
        self.md5.iter().find(|(f, _)| f == r.file()).map_or_else(|| r.md5.to_string(), |(_, h)| h.clone())
    }
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The folder the data spec reads.
    pub folder: PathBuf,
    /// The spec that reads it (`cifar10:DIR/cifar-10-batches-bin`).
    pub spec: String,
    /// False when everything was already there.
    pub downloaded: bool,
}

/// Whether `folder` holds every file of the release.
fn complete(release: &Release, folder: &Path) -> bool {
    release.files.iter().all(|f| folder.join(f).is_file())
}

/// Fetches `release` into `dir` (created if missing), unless it is already there.
pub fn fetch(release: &Release, dir: &Path, opts: &Options) -> crate::Result<Fetched> {
    let folder = dir.join(release.folder);
    let spec = format!("{}:{}", release.spec, folder.display());
    if complete(release, &folder) {
        return Ok(Fetched { folder, spec, downloaded: false });
    }
    if release.archive && folder.exists() {
        bail!(
            "{}: exists but lacks some of {}; remove it (or choose another --dir) and run again",
            folder.display(),
            release.files.join(", ")
        );
    }
    let target = if release.archive { dir.to_path_buf() } else { folder.clone() };
    std::fs::create_dir_all(&target).with_context(|| format!("{}: cannot create folder", target.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("ebm/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    for remote in release.remotes {
        let path = target.join(remote.file());
        if !release.archive && path.is_file() {
            continue; // this file of a multi-file release came whole in an earlier run
        }
        download(&agent, &opts.url(remote), &path, &opts.md5(remote), opts.verbose)?;
        if release.archive {
            unpack(&path, dir, release.folder)?;
            std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove the archive", path.display()))?;
        }
    }
    if !complete(release, &folder) {
        bail!("{}: the download lacks some of {}", folder.display(), release.files.join(", "));
    }
    Ok(Fetched { folder, spec, downloaded: true })
}

/// `PATH.part`.
fn part_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// The MD5 of a file, as lowercase hex.
fn md5_file(path: &Path) -> crate::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Downloads `url` to `path` through `path.part` (resumed when present), checking its MD5.
fn download(agent: &ureq::Agent, url: &str, path: &Path, md5: &str, verbose: bool) -> crate::Result<()> {
    let part = part_path(path);
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let unreachable = |e: ureq::Error| {
        let kept = if have > 0 {
            format!("; {} bytes are kept in {} for the next try", have, part.display())
        } else {
            String::new()
        };
        anyhow::anyhow!("cannot download {url}: {e} (no network? a mirror can be named with EBM_DOWNLOAD_BASE){kept}")
    };
    let mut response = request.call().map_err(unreachable)?;
    let status = response.status().as_u16();
    let (append, total) = match status {
        206 => {
            let range = response.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
            if !range.starts_with(&format!("bytes {have}-")) {
                bail!(
                    "{url}: asked for bytes {have}- and the server sent `{range}`; remove {} and run again",
                    part.display()
                );
            }
            (true, range.rsplit('/').next().and_then(|t| t.parse::<u64>().ok()))
        }
        200 => (false, response.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok())),
        // The range starts at the end: the .part file is already whole; its checksum decides.
        416 if have > 0 => (true, Some(have)),
        s => bail!("{url}: the server answered HTTP {s}"),
    };
    if status != 416 {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&part)
            .with_context(|| format!("{}: cannot write", part.display()))?;
        let start = if append { have } else { 0 };
        if verbose {
            let size = total.map_or("unknown size".into(), |t| format!("{:.1} MB", t as f64 / 1e6));
            let from = if start > 0 { format!(", resuming at {:.1} MB", start as f64 / 1e6) } else { String::new() };
            println!("downloading {url} ({size}{from})");
        }
        let bar =
            if verbose { indicatif::ProgressBar::new(total.unwrap_or(0)) } else { indicatif::ProgressBar::hidden() };
        bar.set_position(start);
        let mut reader = response.body_mut().with_config().reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = start;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    drop(file);
                    bail!("{url}: the download stopped after {got} bytes ({e}); run the same command again to resume from {}", part.display())
                }
            };
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).with_context(|| format!("{}: cannot write", part.display()))?;
            got += n as u64;
            bar.set_position(got);
        }
        bar.finish_and_clear();
        file.sync_all().with_context(|| format!("{}: cannot write", part.display()))?;
        if let Some(t) = total.filter(|&t| t != got) {
            bail!(
                "{url}: the download stopped after {got} of {t} bytes; run the same command again to resume from {}",
                part.display()
            );
        }
    }
    let got = md5_file(&part)?;
    if got != md5 {
        std::fs::remove_file(&part).with_context(|| format!("{}: cannot remove", part.display()))?;
        bail!("{url}: MD5 {got}, expected {md5}: the download is corrupt or not the official file; removed it, run again to retry");
    }
    std::fs::rename(&part, path).with_context(|| format!("{}: cannot rename to {}", part.display(), path.display()))?;
    Ok(())
}

/// Unpacks the .tar.gz `archive` into `dir/folder`: into a temporary folder first, regular files
/// and folders only, each under `folder/`; renamed into place once whole.
fn unpack(archive: &Path, dir: &Path, folder: &str) -> crate::Result<()> {
    let tmp = dir.join(format!(".{folder}.unpacking"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("{}: cannot remove a stale folder", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create folder", tmp.display()))?;
    let name = archive.display();
    let file = std::fs::File::open(archive).with_context(|| format!("{name}: cannot open"))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let result = (|| -> crate::Result<()> {
        for entry in tar.entries().with_context(|| format!("{name}: not a .tar.gz archive"))? {
            let mut entry = entry.with_context(|| format!("{name}: damaged archive"))?;
            let path = entry.path().with_context(|| format!("{name}: damaged archive"))?.into_owned();
            let kind = entry.header().entry_type();
            if !(kind.is_file() || kind.is_dir()) {
                continue; // links and special files: none in the official archives
            }
            if path.components().next().and_then(|c| c.as_os_str().to_str()) != Some(folder) {
                bail!("{name}: holds {}, outside the expected folder {folder}/", path.display());
            }
            if !entry.unpack_in(&tmp).with_context(|| format!("{name}: cannot unpack {}", path.display()))? {
                bail!("{name}: holds the unsafe path {}", path.display());
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let unpacked = tmp.join(folder);
    if !unpacked.is_dir() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!("{name}: holds no folder {folder}/");
    }
    let dest = dir.join(folder);
    std::fs::rename(&unpacked, &dest).with_context(|| format!("{}: cannot move into place", dest.display()))?;
    std::fs::remove_dir_all(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_named_and_checksummed() {
        for r in &RELEASES {
            assert!(r.remotes.iter().all(|m| m.md5.len() == 32 && m.md5.bytes().all(|b| b.is_ascii_hexdigit())));
            assert!(release(r.name).is_ok());
        }
        assert_eq!(release("cifar10").unwrap().remotes[0].file(), "cifar-10-binary.tar.gz");
        let e = release("mnist").unwrap_err().to_string();
        assert!(e.contains("unknown data set `mnist`") && e.contains("cifar10, cifar100, svhn"), "{e}");
        let o = Options {
            base: Some("http://127.0.0.1:9/m/".into()),
            md5: vec![("a.bin".into(), "00".into())],
            verbose: false,
        };
        let r = Remote { url: "https://x.org/d/a.bin", md5: "ff" };
        assert_eq!((o.url(&r), o.md5(&r)), ("http://127.0.0.1:9/m/a.bin".to_string(), "00".to_string()));
    }

    #[test]
    fn md5_is_the_reference_value() {
        // RFC 1321's test suite: MD5("abc").
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(md5_file(&p).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }
}
