//! A 3x5 pixel font for the labels of plots: digits, number punctuation and
//! the lower-case letters the labels use (drawn as small capitals).

use super::image::Image;

/// Glyph width in font pixels (plus one of spacing).
const GLYPH_W: i64 = 3;
/// Glyph height in font pixels.
const GLYPH_H: i64 = 5;

/// The glyph of `c`: five rows of three pixels, `#` set; `None` when the
/// font lacks it (drawn as a blank).
fn glyph(c: char) -> Option<&'static str> {
    Some(match c {
        '0' => "####.##.##.####",
        '1' => ".#.##..#..#.###",
        '2' => "###..#####..###",
        '3' => "###..####..####",
        '4' => "#.##.####..#..#",
        '5' => "####..###..####",
        '6' => "####..####.####",
        '7' => "###..#..#..#..#",
        '8' => "####.#####.####",
        '9' => "####.####..####",
        '.' => ".............#.",
        '-' => "......###......",
        '+' => "....#.###.#....",
        '=' => "...###...###...",
        'a' => ".#.#.#####.##.#",
        'c' => "####..#..#..###",
        'd' => "##.#.##.##.###.",
        'e' => "####..####..###",
        'g' => "####..#.##.####",
        'h' => "#.##.#####.##.#",
        'i' => "###.#..#..#.###",
        'k' => "#.##.###.#.##.#",
        'm' => "#.########.##.#",
        'n' => "##.#.##.##.##.#",
        'o' => "####.##.##.####",
        'r' => "##.#.###.#.##.#",
        's' => "####..###..####",
        't' => "###.#..#..#..#.",
        'u' => "#.##.##.##.####",
        'x' => "#.##.#.#.#.##.#",
        'y' => "#.##.#.#..#..#.",
        _ => return None,
    })
}

/// Width in image pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: i64) -> i64 {
    text.chars().count() as i64 * (GLYPH_W + 1) * scale
}

/// Height in image pixels of text drawn at `scale`.
pub fn text_height(scale: i64) -> i64 {
    GLYPH_H * scale
}

/// Draws `text` with its top-left corner at `(x, y)`, each font pixel a
/// `scale x scale` square.
pub fn draw_text(img: &mut Image, x: i64, y: i64, text: &str, scale: i64, rgb: [u8; 3]) {
    for (k, c) in text.chars().enumerate() {
        let Some(bits) = glyph(c) else { continue };
        let x0 = x + k as i64 * (GLYPH_W + 1) * scale;
        for (p, b) in bits.bytes().enumerate() {
            if b != b'#' {
                continue;
            }
            let (gx, gy) = (p as i64 % GLYPH_W, p as i64 / GLYPH_W);
            for dy in 0..scale {
                for dx in 0..scale {
                    img.set(x0 + gx * scale + dx, y + gy * scale + dy, rgb);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_are_complete_and_text_is_drawn() {
        for c in "0123456789.-+=acdeghikmnorstuxy".chars() {
            assert_eq!(glyph(c).map(str::len), Some(15), "{c}");
        }
        let mut img = Image::new(20, 10, [255; 3]);
        draw_text(&mut img, 0, 0, "1", 1, [0; 3]);
        assert_eq!(text_width("12", 2), 16);
        assert_ne!(img, Image::new(20, 10, [255; 3]));
    }
}
