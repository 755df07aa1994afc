//! Named tensors in safetensors files: reading them (every checkpoint reader goes through
//! [`parse_tensors`]) and their sizes. Shared by the checkpoint and the optimiser's state.
use anyhow::Context;
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
