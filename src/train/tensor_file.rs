//! Named tensors in safetensors files: reading them (every checkpoint reader goes through
//! [`parse_tensors`]) and their sizes, and restoring named state from them ([`load_into`]). Shared
//! by the checkpoint, the optimiser's state and the weight average.
use anyhow::{bail, Context};
use std::path::Path;
use tch::Tensor;

/// Bytes of a tensor's data.
pub fn tensor_bytes(t: &Tensor) -> u64 {
    (t.numel() * t.kind().elt_size_in_bytes()) as u64
}

/// Parses safetensors bytes into named CPU tensors; `path` is used in error messages. The
/// checkpoint's weight, optimiser and buffer readers all go through it.
pub fn parse_tensors(bytes: &[u8], path: &Path) -> crate::Result<Vec<(String, Tensor)>> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let t = Tensor::try_from(view).with_context(|| format!("{}: tensor `{name}`", path.display()))?;
            Ok((name, t))
        })
        .collect()
}

/// Reads a safetensors file (see [`parse_tensors`]).
pub fn read_tensors(path: &Path) -> crate::Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse_tensors(&bytes, path)
}

/// Restores state from the safetensors file at `path`: each `(name, tensor)` of `dst` gets the
/// file's tensor of that name. Every name and shape is checked before anything is copied, so a
/// file of another model changes nothing; `what` names the contents in errors ("optimiser state").
pub fn load_into<'a>(
    path: &Path,
    what: &str,
    dst: impl IntoIterator<Item = (String, &'a mut Tensor)>,
) -> crate::Result<()> {
    let read: std::collections::BTreeMap<String, Tensor> =
        read_tensors(path).with_context(|| format!("cannot read the {what}"))?.into_iter().collect();
    let dst: Vec<(String, &mut Tensor)> = dst.into_iter().collect();
    for (name, t) in &dst {
        match read.get(name) {
            None => bail!("{}: no `{name}` ({what} of another model?)", path.display()),
            Some(src) if src.size() != t.size() => {
                bail!("{}: `{name}` has shape {:?}, the model needs {:?}", path.display(), src.size(), t.size())
            }
            Some(_) => {}
        }
    }
    tch::no_grad(|| {
        for (name, t) in dst {
            t.copy_(&read[&name]);
        }
    });
    Ok(())
}
