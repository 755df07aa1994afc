//! `ebm download cifar10|cifar100|svhn [--dir datasets]`: the official releases, resumable and
//! checked against their published MD5s, unpacked where the data specs read them.
use ebm::data::download;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DownloadArgs {
    /// The data set: cifar10 (cifar-10-binary.tar.gz, 170 MB), cifar100 (cifar-100-binary.tar.gz,
    /// 169 MB) or svhn (train_32x32.mat and test_32x32.mat, 182 + 64 MB).
    pub name: String,
    /// The folder to put it in: cifar10 unpacks to DIR/cifar-10-batches-bin, cifar100 to
    /// DIR/cifar-100-binary, svhn's files go to DIR/svhn.
    #[arg(long, default_value = "datasets")]
    pub dir: PathBuf,
}

pub fn run(a: DownloadArgs) -> anyhow::Result<()> {
    let release = download::release(&a.name)?;
    let opts = download::Options { verbose: true, ..download::Options::from_env()? };
    let got = download::fetch(release, &a.dir, &opts)?;
    if got.downloaded {
        println!("{}: done, checksums match", got.folder.display());
    } else {
        println!("{}: already there (delete it to download again)", got.folder.display());
    }
    println!("data spec: {} (and {}:test)", got.spec, got.spec);
    Ok(())
}
