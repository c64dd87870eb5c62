//! Minimum-cost assignment (Hungarian algorithm with potentials), O(n^2 m).

// Matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

/// Assigns rows to columns minimising the total cost; pairs with cost above `max_cost` are
/// left unassigned. Returns `(row, col)` pairs. `cost[r][c]`, all rows the same length.
pub fn assign(cost: &[Vec<f32>], max_cost: f32) -> Vec<(usize, usize)> {
    let rows = cost.len();
    let cols = cost.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Costs above the threshold become "forbidden" but still assignable, then dropped.
    let big = 1e6f64;
    let c = |r: usize, k: usize| -> f64 {
        let v = f64::from(cost[r][k]);
        if v > f64::from(max_cost) || !v.is_finite() {
            big
        } else {
            v
        }
    };
    let transposed = rows > cols;
    let (n, m) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let at = |i: usize, j: usize| if transposed { c(j, i) } else { c(i, j) };

    // 1-based arrays as in the classic formulation.
    let mut u = vec![0f64; n + 1];
    let mut v = vec![0f64; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    let cur = at(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut pairs = Vec::new();
    for j in 1..=m {
        if p[j] != 0 {
            let (i, k) = (p[j] - 1, j - 1);
            let (r, col) = if transposed { (k, i) } else { (i, k) };
            if at(i, k) < big {
                pairs.push((r, col));
            }
        }
    }
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_force(cost: &[Vec<f32>], max_cost: f32) -> f32 {
        // Best total over all partial matchings, counting unmatched as max_cost + 1 each
        // side-free: equivalent objective is "maximise matched count of allowed pairs, then
        // minimise cost" only for small inputs; we compare on square all-allowed inputs.
        fn go(r: usize, used: &mut Vec<bool>, cost: &[Vec<f32>], max_cost: f32) -> f32 {
            if r == cost.len() {
                return 0.0;
            }
            let mut best = f32::INFINITY;
            for c in 0..cost[r].len() {
                if !used[c] && cost[r][c] <= max_cost {
                    used[c] = true;
                    best = best.min(cost[r][c] + go(r + 1, used, cost, max_cost));
                    used[c] = false;
                }
            }
            best
        }
        go(0, &mut vec![false; cost[0].len()], cost, max_cost)
    }

    #[test]
    fn known_matrix() {
        let cost = vec![
            vec![4.0, 1.0, 3.0],
            vec![2.0, 0.0, 5.0],
            vec![3.0, 2.0, 2.0],
        ];
        assert_eq!(assign(&cost, 10.0), vec![(0, 1), (1, 0), (2, 2)]);
    }

    #[test]
    fn forbidden_pairs_stay_unassigned() {
        let cost = vec![vec![0.1, 0.9], vec![0.95, 0.99]];
        assert_eq!(assign(&cost, 0.8), vec![(0, 0)]);
    }

    #[test]
    fn rectangular_both_ways() {
        let wide = vec![vec![0.5, 0.1, 0.7]];
        assert_eq!(assign(&wide, 1.0), vec![(0, 1)]);
        let tall = vec![vec![0.5], vec![0.1], vec![0.7]];
        assert_eq!(assign(&tall, 1.0), vec![(1, 0)]);
    }

    proptest! {
        #[test]
        fn optimal_on_small_square_matrices(n in 1usize..6, seed in proptest::collection::vec(0f32..1.0, 36)) {
            let cost: Vec<Vec<f32>> = (0..n).map(|r| (0..n).map(|c| seed[r * 6 + c]).collect()).collect();
            let pairs = assign(&cost, 2.0);
            prop_assert_eq!(pairs.len(), n);
            let total: f32 = pairs.iter().map(|(r, c)| cost[*r][*c]).sum();
            prop_assert!((total - brute_force(&cost, 2.0)).abs() < 1e-4);
            let mut cols: Vec<_> = pairs.iter().map(|p| p.1).collect();
            cols.sort_unstable();
            cols.dedup();
            prop_assert_eq!(cols.len(), n, "each column once");
        }
    }
}
