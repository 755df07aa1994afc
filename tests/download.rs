//! `ebm download` against a small HTTP server on 127.0.0.1 started by each test (bounded: at most
//! 16 connections, 60 s): a download cut off and resumed with a Range request, a checksum mismatch
//! that leaves nothing behind, no network, and SVHN's files landing where `svhn:DIR` reads them.
mod common;
use common::*;
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (path, Range header) of every request a server answered, in order.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A tiny HTTP/1.1 file server: GET with an optional `Range: bytes=N-`; the first request for
/// `cut.0` sends the full length in its headers but only `cut.1` bytes of the body.
struct Server {
    base: String,
    requests: Log,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(files: Vec<(&str, Vec<u8>)>, cut: Option<(&str, usize)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let files: HashMap<String, Vec<u8>> = files.into_iter().map(|(p, b)| (format!("/{p}"), b)).collect();
    let mut cut = cut.map(|(p, n)| (format!("/{p}"), n));
    let requests: Log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (log, halt) = (requests.clone(), stop.clone());
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < 16 && Instant::now() < deadline && !halt.load(Ordering::SeqCst) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            served += 1;
            let _ = answer(stream, &files, &mut cut, &log);
        }
    });
    Server { base, requests, stop }
}

fn answer(
    mut stream: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    cut: &mut Option<(String, usize)>,
    log: &Log,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let Some(body) = files.get(&path) else {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let len = body.len();
    let start = range.as_deref().and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok());
    let head = match start {
        Some(s) if s >= len => {
            let h = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return stream.write_all(h.as_bytes());
        }
        Some(s) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            len - 1,
            len - s
        ),
        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"),
    };
    let from = start.unwrap_or(0);
    stream.write_all(head.as_bytes())?;
    match cut.take_if(|(p, _)| *p == path) {
        // Announce everything, send `n` bytes, hang up.
        Some((_, n)) => stream.write_all(&body[from..n])?,
        None => stream.write_all(&body[from..])?,
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `ebm download NAME --dir DIR` with the server as the base URL and these expected MD5s.
fn download(name: &str, dir: &Path, base: &str, md5s: &[(&str, String)]) -> Output {
    let md5: Vec<String> = md5s.iter().map(|(f, h)| format!("{f}={h}")).collect();
    let mut c = ebm();
    for v in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        c.env_remove(v);
    }
    c.args(["download", name, "--dir", dir.to_str().unwrap()])
        .env("EBM_DOWNLOAD_BASE", base)
        .env("EBM_DOWNLOAD_MD5", md5.join(","))
        .output()
        .unwrap()
}

/// The one `error: ...` line of a failed run.
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail; stdout: {}", String::from_utf8_lossy(&out.stdout));
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

fn stdout_of(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small `cifar-10-binary.tar.gz`: the release's folder with two records per batch file (labels
/// 0..9 over the six files' records), pixels noisy enough that gzip leaves the archive some size.
fn cifar10_archive() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut label = 0u8;
    let mut seed = 1u32;
    let names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for name in names {
        let mut bytes = Vec::new();
        for _ in 0..2 {
            bytes.push(label % 10);
            label += 1;
            bytes.extend((0..3072).map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            }));
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("cifar-10-batches-bin/{name}"), bytes.as_slice()).unwrap();
    }
    let meta = b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(meta.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "cifar-10-batches-bin/batches.meta.txt", &meta[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_cut_download_resumes_with_a_range_request_and_unpacks_where_the_spec_reads() {
    let archive = cifar10_archive();
    let cut = archive.len() / 2;
    let server = serve(vec![("cifar-10-binary.tar.gz", archive.clone())], Some(("cifar-10-binary.tar.gz", cut)));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("datasets");
    let md5 = [("cifar-10-binary.tar.gz", md5_hex(&archive))];

    // The connection drops halfway: one error line, the bytes so far kept in the .part file.
    let e = error_line(&download("cifar10", &d, &server.base, &md5));
    assert!(e.contains("stopped after") && e.contains("run the same command again to resume"), "{e}");
    let part = d.join("cifar-10-binary.tar.gz.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut as u64);
    assert!(!d.join("cifar-10-batches-bin").exists());

    // Run again: it asks for the rest only, checks the MD5, unpacks, and cleans up.
    let out = stdout_of(&download("cifar10", &d, &server.base, &md5));
    assert!(out.contains("resuming at"), "{out}");
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].1, None);
    assert_eq!(requests[1].1.as_deref(), Some(format!("bytes={cut}-").as_str()));
    let folder = d.join("cifar-10-batches-bin");
    assert!(out.contains(&format!("cifar10:{}", folder.display())), "{out}");
    let mut left: Vec<String> =
        std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, vec!["cifar-10-batches-bin"], "the archive, .part and temporary folder are gone");

    // What `cifar10:DIR` reads: 10 training records, labels 0..9, and the 2 test records.
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["data", &format!("cifar10:{}", folder.display()), "--json"])).unwrap();
    assert_eq!(j["count"], 10);
    assert_eq!(j["class_counts"], serde_json::json!([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["data", &format!("cifar10:{}:test", folder.display()), "--json"])).unwrap();
    assert_eq!(j["count"], 2);

    // A third run finds it there and fetches nothing.
    let out = stdout_of(&download("cifar10", &d, &server.base, &md5));
    assert!(out.contains("already there"), "{out}");
    assert_eq!(server.requests.lock().unwrap().len(), 2);
}

#[test]
fn a_checksum_mismatch_leaves_no_data_behind() {
    let archive = cifar10_archive();
    let server = serve(vec![("cifar-10-binary.tar.gz", archive.clone())], None);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("datasets");
    let wrong = [("cifar-10-binary.tar.gz", md5_hex(b"something else"))];
    let e = error_line(&download("cifar10", &d, &server.base, &wrong));
    assert!(
        e.contains(&format!("MD5 {}, expected {}", md5_hex(&archive), wrong[0].1)) && e.contains("removed it"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
    assert!(left.is_empty(), "nothing may stay behind: {left:?}");
    // The official checksum (no override) rejects the test archive the same way.
    let e = error_line(&download("cifar10", &d, &server.base, &[]));
    assert!(e.contains("expected c32a1d4ab5d03f1284b67883e8d87530"), "{e}");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
}

#[test]
fn no_network_is_one_clear_error() {
    // A port on which nothing listens.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let e = error_line(&download("cifar100", dir.path(), &format!("http://127.0.0.1:{port}"), &[]));
    assert!(e.contains(&format!("cannot download http://127.0.0.1:{port}/cifar-100-binary.tar.gz")), "{e}");
    assert!(e.contains("no network?"), "{e}");
    let e = fails(&["download", "mnist"]);
    assert!(e.contains("mnist"), "{e}");
}

#[test]
fn svhn_files_land_where_the_svhn_spec_reads_them() {
    let fixtures = repo_root().join("tests/data/svhn");
    let train = std::fs::read(fixtures.join("train_32x32.mat")).unwrap();
    let test = std::fs::read(fixtures.join("test_32x32.mat")).unwrap();
    let server = serve(vec![("train_32x32.mat", train.clone()), ("test_32x32.mat", test.clone())], None);
    let dir = tempfile::tempdir().unwrap();
    let md5 = [("train_32x32.mat", md5_hex(&train)), ("test_32x32.mat", md5_hex(&test))];
    let out = stdout_of(&download("svhn", dir.path(), &server.base, &md5));
    let folder = dir.path().join("svhn");
    assert!(out.contains(&format!("svhn:{}", folder.display())), "{out}");
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["data", &format!("svhn:{}:test", folder.display()), "--json"])).unwrap();
    assert_eq!((j["count"].as_u64(), j["shape"].clone()), (Some(3), serde_json::json!([3, 32, 32])));
    assert_eq!(j["classes"][0], "0");
}
