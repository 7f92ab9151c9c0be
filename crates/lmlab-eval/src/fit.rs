//! Curve fits for the scaling experiment: least-squares lines and parabolas, Nelder–Mead, and
//! Hoffmann et al.'s (2022) fit of L(N, D) = E + A/N^α + B/D^β under a Huber loss.

/// Least-squares line y = slope·x + intercept.
pub fn line(xs: &[f64], ys: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let slope = sxy / sxx;
    (slope, my - slope * mx)
}

/// Least-squares parabola y = a·x² + b·x + c (normal equations, solved by Cramer's rule).
pub fn parabola(xs: &[f64], ys: &[f64]) -> (f64, f64, f64) {
    let s = |p: i32| xs.iter().map(|x| x.powi(p)).sum::<f64>();
    let t = |p: i32| xs.iter().zip(ys).map(|(x, y)| x.powi(p) * y).sum::<f64>();
    let m = [[s(4), s(3), s(2)], [s(3), s(2), s(1)], [s(2), s(1), xs.len() as f64]];
    let r = [t(2), t(1), t(0)];
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&m);
    let column = |k: usize| {
        let mut mk = m;
        (0..3).for_each(|i| mk[i][k] = r[i]);
        det(&mk) / d
    };
    (column(0), column(1), column(2))
}

/// Minimises `f` from `x0` by Nelder–Mead (reflection 1, expansion 2, contraction ½, shrink ½),
/// with initial steps `step`; returns the best point and its value.
pub fn nelder_mead(f: impl Fn(&[f64]) -> f64, x0: &[f64], step: f64, iterations: usize) -> (Vec<f64>, f64) {
    let n = x0.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = (0..=n)
        .map(|i| {
            let mut x = x0.to_vec();
            if i > 0 {
                x[i - 1] += step;
            }
            let v = f(&x);
            (x, v)
        })
        .collect();
    let at = |a: &[f64], b: &[f64], t: f64| a.iter().zip(b).map(|(p, q)| p + t * (q - p)).collect::<Vec<f64>>();
    for _ in 0..iterations {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if (simplex[n].1 - simplex[0].1).abs() < 1e-14 {
            break;
        }
        let centroid: Vec<f64> = (0..n).map(|j| simplex[..n].iter().map(|p| p.0[j]).sum::<f64>() / n as f64).collect();
        let worst = simplex[n].clone();
        let reflected = at(&centroid, &worst.0, -1.0);
        let fr = f(&reflected);
        if fr < simplex[0].1 {
            let expanded = at(&centroid, &worst.0, -2.0);
            let fe = f(&expanded);
            simplex[n] = if fe < fr { (expanded, fe) } else { (reflected, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (reflected, fr);
        } else {
            let contracted = at(&centroid, &worst.0, 0.5);
            let fc = f(&contracted);
            if fc < worst.1 {
                simplex[n] = (contracted, fc);
            } else {
                let best = simplex[0].0.clone();
                for p in simplex.iter_mut().skip(1) {
                    p.0 = at(&best, &p.0, 0.5);
                    p.1 = f(&p.0);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0)
}

fn huber(r: f64, delta: f64) -> f64 {
    if r.abs() <= delta {
        0.5 * r * r
    } else {
        delta * (r.abs() - 0.5 * delta)
    }
}

/// L(N, D) = E + A/N^α + B/D^β.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq)]
pub struct Chinchilla {
    pub e: f64,
    pub a: f64,
    pub b: f64,
    pub alpha: f64,
    pub beta: f64,
    /// The Huber objective at the fit.
    pub objective: f64,
}

impl Chinchilla {
    pub fn loss(&self, n: f64, d: f64) -> f64 {
        self.e + self.a / n.powf(self.alpha) + self.b / d.powf(self.beta)
    }
}

/// Hoffmann et al.'s fit: minimise Σ Huber_δ(LSE(a − α·ln N, b − β·ln D, e) − ln L) over
/// (a, b, e, α, β), with A = eᵃ, B = eᵇ, E = eᵉ, δ = 10⁻³, from a grid of starting points
/// (theirs was L-BFGS; ours Nelder–Mead), keeping the best. `points` are (N, D, L).
pub fn fit_chinchilla(points: &[(f64, f64, f64)]) -> Chinchilla {
    let objective = |p: &[f64]| {
        points
            .iter()
            .map(|&(n, d, l)| {
                let terms = [p[0] - p[3] * n.ln(), p[1] - p[4] * d.ln(), p[2]];
                let m = terms.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                let lse = m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln();
                huber(lse - l.ln(), 1e-3)
            })
            .sum::<f64>()
    };
    let mut best: Option<(Vec<f64>, f64)> = None;
    for a in [0.0, 5.0, 10.0] {
        for b in [0.0, 5.0, 10.0] {
            for e in [-1.0, 0.0, 1.0] {
                for alpha in [0.2, 0.5, 1.0] {
                    for beta in [0.2, 0.5, 1.0] {
                        let fit = nelder_mead(objective, &[a, b, e, alpha, beta], 0.5, 3000);
                        if best.as_ref().is_none_or(|b| fit.1 < b.1) {
                            best = Some(fit);
                        }
                    }
                }
            }
        }
    }
    let (p, objective) = best.expect("the grid is not empty");
    Chinchilla { a: p[0].exp(), b: p[1].exp(), e: p[2].exp(), alpha: p[3], beta: p[4], objective }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_parabolas_through_exact_points() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        let (m, c) = line(&xs, &xs.map(|x| 2.5 * x - 1.0));
        assert!((m - 2.5).abs() < 1e-12 && (c + 1.0).abs() < 1e-12);
        let (a, b, c) = parabola(&xs, &xs.map(|x| 0.5 * x * x - 3.0 * x + 7.0));
        assert!((a - 0.5).abs() < 1e-9 && (b + 3.0).abs() < 1e-9 && (c - 7.0).abs() < 1e-9);
    }

    #[test]
    fn nelder_mead_finds_the_minimum_of_a_valley() {
        let rosenbrock = |p: &[f64]| (1.0 - p[0]).powi(2) + 100.0 * (p[1] - p[0] * p[0]).powi(2);
        let (x, v) = nelder_mead(rosenbrock, &[-1.2, 1.0], 0.5, 5000);
        assert!(v < 1e-10 && (x[0] - 1.0).abs() < 1e-4 && (x[1] - 1.0).abs() < 1e-4, "{x:?} {v}");
    }

    #[test]
    fn the_chinchilla_fit_recovers_known_exponents() {
        // Hoffmann et al.'s own constants, on a grid of sizes and token counts.
        let truth = Chinchilla { e: 1.69, a: 406.4, b: 410.7, alpha: 0.34, beta: 0.28, objective: 0.0 };
        let mut points = Vec::new();
        for n in [1e6, 3e6, 1e7, 3e7, 1e8] {
            for d in [1e7, 1e8, 1e9, 1e10] {
                points.push((n, d, truth.loss(n, d)));
            }
        }
        let fit = fit_chinchilla(&points);
        assert!((fit.alpha - 0.34).abs() < 0.01 && (fit.beta - 0.28).abs() < 0.01, "{fit:?}");
        assert!((fit.e - 1.69).abs() < 0.02, "{fit:?}");
        for &(n, d, l) in &points {
            assert!((fit.loss(n, d) - l).abs() / l < 1e-3);
        }
    }
}
