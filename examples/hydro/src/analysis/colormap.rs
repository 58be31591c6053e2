//! A perceptually ordered colour map (dark blue through green to yellow).

/// Control points of the map, evenly spaced on `[0, 1]`.
const STOPS: [[f64; 3]; 5] = [
    [68.0, 1.0, 84.0],
    [59.0, 82.0, 139.0],
    [33.0, 145.0, 140.0],
    [94.0, 201.0, 98.0],
    [253.0, 231.0, 37.0],
];

/// The colour of `t` in `[0, 1]` (clamped; NaN maps to 0).
pub fn colormap(t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (STOPS.len() - 1) as f64;
    let k = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - k as f64;
    std::array::from_fn(|c| (STOPS[k][c] + f * (STOPS[k + 1][c] - STOPS[k][c])).round() as u8)
}

/// Entries of a [`ColorTable`].
const TABLE_LEN: usize = 1024;

/// [`colormap`] sampled at 1024 evenly spaced points, for mapping many
/// values fast.
#[derive(Debug, Clone)]
pub struct ColorTable {
    colors: Vec<[u8; 3]>,
}

impl Default for ColorTable {
    fn default() -> Self {
        ColorTable {
            colors: (0..TABLE_LEN)
                .map(|k| colormap(k as f64 / (TABLE_LEN - 1) as f64))
                .collect(),
        }
    }
}

impl ColorTable {
    /// The colour of `t` in `[0, 1]`, to the nearest table entry (clamped;
    /// NaN maps to 0).
    #[inline]
    pub fn get(&self, t: f64) -> [u8; 3] {
        // `as usize` saturates, and maps NaN to 0.
        let k = (t * (TABLE_LEN - 1) as f64 + 0.5) as usize;
        self.colors[k.min(TABLE_LEN - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_clamping() {
        assert_eq!(colormap(0.0), [68, 1, 84]);
        assert_eq!(colormap(1.0), [253, 231, 37]);
        assert_eq!(colormap(-3.0), colormap(0.0));
        assert_eq!(colormap(f64::NAN), colormap(0.0));
        assert_eq!(colormap(0.25), [59, 82, 139]);
        let table = ColorTable::default();
        for t in [-1.0, 0.0, 0.25, 1.0, 7.0, f64::NAN] {
            assert_eq!(table.get(t), colormap(t), "{t}");
        }
    }
}
