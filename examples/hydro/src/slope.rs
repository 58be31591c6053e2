//! Limited slopes (HydroC's `slope`).

/// The limited difference of a cell from its left, own and right values.
///
/// `factor` is HydroC's `slope_type` (see [`crate::Limiter::factor`]): 1
/// gives minmod, 2 the monotonized central limiter. The slope is zero at an
/// extremum. `factor` must be a power of two (its reciprocal is exact).
#[inline(always)]
pub fn limited_slope(left: f64, centre: f64, right: f64, factor: f64) -> f64 {
    let dlft = factor * (centre - left);
    let drgt = factor * (right - centre);
    // Multiplying by the reciprocal is exact for the factors 1 and 2.
    let dcen = 0.5 * (dlft + drgt) * factor.recip();
    let dsgn = if dcen > 0.0 { 1.0 } else { -1.0 };
    let dlim = if dlft * drgt <= 0.0 {
        0.0
    } else {
        dlft.abs().min(drgt.abs())
    };
    dsgn * dlim.min(dcen.abs())
}

#[cfg(test)]
mod tests {
    use super::limited_slope;

    #[test]
    fn minmod_takes_the_smaller_one_sided_difference() {
        assert_eq!(limited_slope(0.0, 1.0, 3.0, 1.0), 1.0);
        assert_eq!(limited_slope(3.0, 1.0, 0.0, 1.0), -1.0);
        assert_eq!(limited_slope(0.0, 1.0, 0.5, 1.0), 0.0);
    }

    #[test]
    fn monotonized_central_is_capped_by_twice_the_one_sided_differences() {
        // Central difference 1.5 is below 2 * min(1, 2) = 2.
        assert_eq!(limited_slope(0.0, 1.0, 3.0, 2.0), 1.5);
        // Central difference 5.5 is capped at 2 * 1.
        assert_eq!(limited_slope(0.0, 1.0, 11.0, 2.0), 2.0);
    }
}
