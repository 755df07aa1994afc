//! The replay buffer split across ranks. A buffer of S chains in K class blocks (K = 1 without
//! per-class blocks), class c owning slots [c S/K, (c+1) S/K), is held as W slices: rank r keeps
//! slots [c S/K + r m, c S/K + (r+1) m) of every block, m = S/(K W), as its own buffer of K
//! blocks of m. Gathering the slices back is the inverse, for any W that divides S/K, so a
//! checkpoint holds the whole buffer and a resume on another W re-slices it.
use anyhow::bail;
use tch::Tensor;

/// Rank `rank`'s slice of the whole buffer `full` [S, ...] for `world` ranks and `k` blocks.
pub fn slice(full: &Tensor, rank: usize, world: usize, k: i64) -> crate::Result<Tensor> {
    let size = full.size();
    let s = size[0];
    let (w, r) = (world as i64, rank as i64);
    if s % (k * w) != 0 {
        bail!("a buffer of {s} chains in {k} blocks cannot be split evenly across {world} ranks (buffer.size must be a multiple of {})", k * w);
    }
    let m = s / (k * w);
    let mut blocks = vec![k, s / k];
    blocks.extend_from_slice(&size[1..]);
    let mut out = vec![k * m];
    out.extend_from_slice(&size[1..]);
    Ok(full.view(blocks.as_slice()).narrow(1, r * m, m).reshape(out.as_slice()))
}

/// The whole buffer from every rank's slice, stacked as [W, K m, ...] (an all-gather).
pub fn join(gathered: &Tensor, k: i64) -> Tensor {
    let size = gathered.size();
    let (w, local) = (size[0], size[1]);
    let mut blocks = vec![w, k, local / k];
    blocks.extend_from_slice(&size[2..]);
    let mut out = vec![w * local];
    out.extend_from_slice(&size[2..]);
    gathered.view(blocks.as_slice()).transpose(0, 1).reshape(out.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Slicing for W ranks and joining the slices gives back the buffer, and every slice keeps
    /// its chains in their class's block.
    #[test]
    fn slices_join_back_and_keep_class_blocks() {
        let (s, k) = (24, 3);
        let full = Tensor::arange(s * 2, (Kind::Float, Device::Cpu)).view([s, 2]);
        for w in [1usize, 2, 4] {
            let parts: Vec<Tensor> = (0..w).map(|r| slice(&full, r, w, k).unwrap()).collect();
            assert!(join(&Tensor::stack(&parts, 0), k).equal(&full), "W = {w}");
            for p in &parts {
                let rows = p.size()[0];
                // Row j of a slice is in block j / (rows / k); row i of the full buffer in i / (s / k).
                let class_of_row = |i: i64| (p.double_value(&[i, 0]) as i64 / 2) / (s / k);
                assert!((0..rows).all(|j| class_of_row(j) == j / (rows / k)));
            }
        }
        assert!(format!("{}", slice(&full, 0, 5, k).unwrap_err()).contains("multiple of 15"));
    }
}
