//! Elastic tabstops as the docker CLI's `tabwriter` fork lays out tables, and the two notions of
//! display width it relies on.
//!
//! The docker CLI writes tables through `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)` (minwidth 10,
//! padding 3, space padding). Its fork measures cells with `go-runewidth` (East Asian wide = 2,
//! combining marks and controls = 0), while `formatter.Ellipsis` measures with
//! `golang.org/x/text/width` (wide/fullwidth = 2, everything else = 1). Both are reproduced so a
//! description with CJK or combining characters pads exactly like `docker plugin ls`. The tables
//! below cover the East Asian Wide/Fullwidth blocks and the common combining ranges, not every
//! code point of Unicode 15.

/// Column layout parameters (the docker CLI's values).
const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Code point ranges that are East Asian Wide or Fullwidth (including emoji presentation).
const WIDE: &[(u32, u32)] = &[
    (0x1100, 0x115F),
    (0x231A, 0x231B),
    (0x2329, 0x232A),
    (0x23E9, 0x23EC),
    (0x23F0, 0x23F0),
    (0x23F3, 0x23F3),
    (0x25FD, 0x25FE),
    (0x2614, 0x2615),
    (0x2648, 0x2653),
    (0x267F, 0x267F),
    (0x2693, 0x2693),
    (0x26A1, 0x26A1),
    (0x26AA, 0x26AB),
    (0x26BD, 0x26BE),
    (0x26C4, 0x26C5),
    (0x26CE, 0x26CE),
    (0x26D4, 0x26D4),
    (0x26EA, 0x26EA),
    (0x26F2, 0x26F3),
    (0x26F5, 0x26F5),
    (0x26FA, 0x26FA),
    (0x26FD, 0x26FD),
    (0x2705, 0x2705),
    (0x270A, 0x270B),
    (0x2728, 0x2728),
    (0x274C, 0x274C),
    (0x274E, 0x274E),
    (0x2753, 0x2755),
    (0x2757, 0x2757),
    (0x2795, 0x2797),
    (0x27B0, 0x27B0),
    (0x27BF, 0x27BF),
    (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50),
    (0x2B55, 0x2B55),
    (0x2E80, 0x303E),
    (0x3041, 0x33FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xA000, 0xA4CF),
    (0xA960, 0xA97F),
    (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF),
    (0xFE10, 0xFE19),
    (0xFE30, 0xFE6F),
    (0xFF00, 0xFF60),
    (0xFFE0, 0xFFE6),
    (0x16FE0, 0x16FE4),
    (0x17000, 0x18CFF),
    (0x1AFF0, 0x1B2FF),
    (0x1F004, 0x1F004),
    (0x1F0CF, 0x1F0CF),
    (0x1F18E, 0x1F18E),
    (0x1F191, 0x1F19A),
    (0x1F200, 0x1F202),
    (0x1F210, 0x1F23B),
    (0x1F240, 0x1F248),
    (0x1F250, 0x1F251),
    (0x1F260, 0x1F265),
    (0x1F300, 0x1F320),
    (0x1F32D, 0x1F335),
    (0x1F337, 0x1F37C),
    (0x1F37E, 0x1F393),
    (0x1F3A0, 0x1F3CA),
    (0x1F3CF, 0x1F3D3),
    (0x1F3E0, 0x1F3F0),
    (0x1F3F4, 0x1F3F4),
    (0x1F3F8, 0x1F43E),
    (0x1F440, 0x1F440),
    (0x1F442, 0x1F4FC),
    (0x1F4FF, 0x1F53D),
    (0x1F54B, 0x1F54E),
    (0x1F550, 0x1F567),
    (0x1F57A, 0x1F57A),
    (0x1F595, 0x1F596),
    (0x1F5A4, 0x1F5A4),
    (0x1F5FB, 0x1F64F),
    (0x1F680, 0x1F6C5),
    (0x1F6CC, 0x1F6CC),
    (0x1F6D0, 0x1F6D2),
    (0x1F6D5, 0x1F6D7),
    (0x1F6DC, 0x1F6DF),
    (0x1F6EB, 0x1F6EC),
    (0x1F6F4, 0x1F6FC),
    (0x1F7E0, 0x1F7EB),
    (0x1F7F0, 0x1F7F0),
    (0x1F90C, 0x1F93A),
    (0x1F93C, 0x1F945),
    (0x1F947, 0x1F9FF),
    (0x1FA70, 0x1FAFF),
    (0x20000, 0x2FFFD),
    (0x30000, 0x3FFFD),
];

/// Combining and other zero-width code points (for `go-runewidth`).
const ZERO: &[(u32, u32)] = &[
    (0x0300, 0x036F),
    (0x0483, 0x0489),
    (0x0591, 0x05BD),
    (0x0610, 0x061A),
    (0x064B, 0x065F),
    (0x0E31, 0x0E31),
    (0x0E34, 0x0E3A),
    (0x0E47, 0x0E4E),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x20D0, 0x20FF),
    (0x3099, 0x309A),
    (0xFE00, 0xFE0F),
    (0xFE20, 0xFE2F),
    (0xFEFF, 0xFEFF),
    (0xE0100, 0xE01EF),
];

fn in_table(c: char, table: &[(u32, u32)]) -> bool {
    let c = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Width of a character for `formatter.Ellipsis` (`x/text/width`: wide and fullwidth count 2).
pub(crate) fn ellipsis_width(c: char) -> usize {
    if in_table(c, WIDE) { 2 } else { 1 }
}

/// Width of a string as the docker tabwriter measures cells (`runewidth.StringWidth`).
pub(crate) fn cell_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let u = c as u32;
            if u < 0x20 || (0x7F..=0x9F).contains(&u) || u == 0xAD || in_table(c, ZERO) {
                0
            } else if in_table(c, WIDE) {
                2
            } else {
                1
            }
        })
        .sum()
}

#[derive(Debug, Default)]
struct Cell {
    text: String,
    width: usize,
}

/// Formats `input` with elastic tabstops exactly like the docker CLI's table writer.
///
/// Cells end at `\t` (or `\v`); the text after a line's last tab is not part of any column. A line
/// without tabs ends the current block: everything before it is laid out on its own, as Go's
/// tabwriter flushes there.
pub(crate) fn layout(input: &str) -> String {
    let mut out = String::new();
    let mut lines: Vec<Vec<Cell>> = vec![Vec::new()];
    let mut cell = String::new();
    for c in input.chars() {
        match c {
            '\t' | '\x0b' => {
                let width = cell_width(&cell);
                lines.last_mut().expect("a current line").push(Cell {
                    text: std::mem::take(&mut cell),
                    width,
                });
            }
            '\n' | '\x0c' => {
                let width = cell_width(&cell);
                let line = lines.last_mut().expect("a current line");
                line.push(Cell {
                    text: std::mem::take(&mut cell),
                    width,
                });
                let ncells = line.len();
                lines.push(Vec::new());
                if ncells == 1 || c == '\x0c' {
                    flush(&mut lines, &mut out);
                }
            }
            c => cell.push(c),
        }
    }
    if !cell.is_empty() {
        let width = cell_width(&cell);
        lines
            .last_mut()
            .expect("a current line")
            .push(Cell { text: cell, width });
    }
    flush(&mut lines, &mut out);
    out
}

fn flush(lines: &mut Vec<Vec<Cell>>, out: &mut String) {
    let mut widths = Vec::new();
    format_block(lines, 0, lines.len(), &mut widths, out);
    lines.clear();
    lines.push(Vec::new());
}

/// Lays out lines `line0..line1` given the widths of the columns to the left (Go's `format`).
fn format_block(
    lines: &[Vec<Cell>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A block of consecutive lines that have a cell in this column.
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = MIN_WIDTH;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].width + PADDING);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(
    lines: &[Vec<Cell>],
    line0: usize,
    line1: usize,
    widths: &[usize],
    out: &mut String,
) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, c) in line.iter().enumerate() {
            out.push_str(&c.text);
            if let Some(&w) = widths.get(j) {
                out.extend(std::iter::repeat_n(' ', w.saturating_sub(c.width)));
            }
        }
        // The last line of the buffer is the (empty) line after the final newline.
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_only_uses_min_width() {
        assert_eq!(
            layout("ID\tNAME\tDESCRIPTION\tENABLED\n"),
            "ID        NAME      DESCRIPTION   ENABLED\n"
        );
    }

    #[test]
    fn columns_grow_with_padding_three() {
        let s = layout("ID\tNAME\tX\nabcdef123456\tlongdesc:latest\ty\n");
        assert_eq!(
            s,
            "ID             NAME              X\nabcdef123456   longdesc:latest   y\n"
        );
    }

    #[test]
    fn lines_without_tabs_flush_the_block() {
        assert_eq!(layout("NAME\na\nbb\n"), "NAME\na\nbb\n");
        assert_eq!(
            layout("a\tb\nno tabs\nccccccccccccc\td\n"),
            "a         b\nno tabs\nccccccccccccc   d\n"
        );
    }

    #[test]
    fn widths() {
        assert_eq!(cell_width("日本"), 4);
        assert_eq!(cell_width("cafe\u{301}"), 4);
        assert_eq!(cell_width("🐳…"), 3);
        assert_eq!(ellipsis_width('\u{301}'), 1);
        assert_eq!(ellipsis_width('日'), 2);
    }
}
