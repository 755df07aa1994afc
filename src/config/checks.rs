//! Range checks shared by the sections' `validate`, each naming the key it rejects.
use anyhow::bail;

/// A finite number > 0.
pub(super) fn positive(v: f64, key: &str) -> crate::Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("key `{key}` = {v}: must be a positive number");
    }
    Ok(())
}

/// A finite number >= 0.
pub(super) fn non_negative(v: f64, key: &str) -> crate::Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("key `{key}` = {v}: must be a finite number >= 0");
    }
    Ok(())
}
