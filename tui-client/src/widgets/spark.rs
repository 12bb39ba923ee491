//! A sparkline that fits in a table cell: one block character per sample.

const BARS: [char; 8] = [
    '\u{2581}', '\u{2582}', '\u{2583}', '\u{2584}', '\u{2585}', '\u{2586}', '\u{2587}', '\u{2588}',
];

/// The last `width` samples as block characters, scaled between the smallest and the largest of
/// them, so that a few units sold out of hundreds still show. A flat line is drawn at mid height.
/// Left-padded with spaces when there are fewer samples than `width`.
pub fn inline(samples: &[u64], width: usize) -> String {
    let tail = &samples[samples.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0);
    let min = tail.iter().copied().min().unwrap_or(0);
    let mut out = " ".repeat(width - tail.len());
    for &s in tail {
        let idx = if max == min {
            3
        } else {
            (s - min) * 7 / (max - min)
        };
        out.push(BARS[(idx as usize).min(7)]);
    }
    out
}

/// Units sold between consecutive stock samples (a rise, when new stock arrives, counts as 0).
pub fn sales(samples: &[u64]) -> Vec<u64> {
    samples
        .windows(2)
        .map(|w| w[0].saturating_sub(w[1]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falling_stock_draws_a_falling_line() {
        assert_eq!(inline(&[8, 4, 0], 3), "\u{2588}\u{2584}\u{2581}");
        assert_eq!(inline(&[400, 398, 396], 3), "\u{2588}\u{2584}\u{2581}");
    }

    #[test]
    fn sales_are_the_drops_between_samples() {
        assert_eq!(sales(&[10, 7, 7, 12, 11]), vec![3, 0, 0, 1]);
    }

    #[test]
    fn short_history_is_padded_on_the_left() {
        assert_eq!(inline(&[5], 3), "  \u{2584}");
        assert_eq!(inline(&[], 2), "  ");
    }
}
