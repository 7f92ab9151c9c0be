//! The learning-rate schedule: linear warmup from 0, then cosine decay to `min_lr`.

/// Learning rate at optimizer step `step` (0-based) of `total`.
pub fn lr_at(step: u64, total: u64, warmup: u64, max_lr: f64, min_lr: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return max_lr * (step + 1) as f64 / warmup as f64;
    }
    if step >= total {
        return min_lr;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = (step - warmup) as f64 / decay_steps as f64;
    min_lr + 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()) * (max_lr - min_lr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        assert!((lr_at(0, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(55, 100, 10, 1.0, 0.1) - 0.55).abs() < 1e-12); // halfway: mean of max and min
        assert!((lr_at(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
        let lrs: Vec<f64> = (10..100).map(|s| lr_at(s, 100, 10, 1.0, 0.1)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }
}
