//! Lexing: splits a template into text and actions, and an action into tokens, as Go's
//! `text/template/parse` lexer does (same positions, same error texts).

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Dot,
    Field(String),
    Var(String),
    Ident(String),
    Str(String),
    Num(Value),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) pos: usize,
    /// Whitespace (or the action start) directly precedes the token.
    pub(super) spaced: bool,
}

pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(super) fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

pub(super) fn line_of(src: &str, pos: usize) -> usize {
    1 + src[..pos.min(src.len())].matches('\n').count()
}

pub(super) fn perr(src: &str, pos: usize, msg: impl std::fmt::Display) -> ParseError {
    ParseError(format!("template: :{}: {msg}", line_of(src, pos)))
}

/// One action between delimiters: its tokens, and where it started.
pub(super) struct Action {
    pub(super) pos: usize,
    pub(super) tokens: Vec<Token>,
}

pub(super) enum Piece {
    Text(String),
    Action(Action),
}

/// Splits the source into text and tokenised actions, applying trim markers and dropping comments.
pub(super) fn lex(src: &str) -> Result<Vec<Piece>, ParseError> {
    let b = src.as_bytes();
    let mut pieces = Vec::new();
    let mut pos = 0;
    let mut trim_next_text = false;
    loop {
        let start = src[pos..].find("{{").map(|i| pos + i);
        let text_end = start.unwrap_or(src.len());
        let mut text = &src[pos..text_end];
        if trim_next_text {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let Some(start) = start else {
            if !text.is_empty() {
                pieces.push(Piece::Text(text.to_string()));
            }
            return Ok(pieces);
        };
        let mut i = start + 2;
        if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(|&c| is_space(c)) {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            i += 2;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        // A comment must directly follow the delimiter (and trim marker).
        if src[i..].starts_with("/*") {
            let Some(end) = src[i + 2..].find("*/").map(|e| i + 2 + e + 2) else {
                return Err(perr(src, i, "unclosed comment"));
            };
            if src[end..].starts_with("}}") {
                trim_next_text = false;
                pos = end + 2;
            } else if src[end..].starts_with(" -}}") {
                trim_next_text = true;
                pos = end + 4;
            } else {
                return Err(perr(src, end, "comment ends before closing delimiter"));
            }
            continue;
        }
        let (tokens, after, trim) = lex_action(src, i)?;
        pieces.push(Piece::Action(Action { pos: start, tokens }));
        trim_next_text = trim;
        pos = after;
    }
}

/// Tokenises one action starting at `i`; returns the tokens, the position after `}}`, and whether
/// a right trim marker was present.
pub(super) fn lex_action(src: &str, mut i: usize) -> Result<(Vec<Token>, usize, bool), ParseError> {
    let b = src.as_bytes();
    let mut tokens = Vec::new();
    let mut spaced = true;
    loop {
        if i >= b.len() {
            return Err(perr(src, i, "unclosed action"));
        }
        if src[i..].starts_with("}}") {
            return Ok((tokens, i + 2, false));
        }
        let c = b[i];
        if is_space(c) {
            if src[i + 1..].starts_with("-}}") {
                return Ok((tokens, i + 4, true));
            }
            i += 1;
            spaced = true;
            continue;
        }
        let start = i;
        let tok = match c {
            b'|' | b'(' | b')' | b',' | b'=' => {
                i += 1;
                match c {
                    b'|' => Tok::Pipe,
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b',' => Tok::Comma,
                    _ => Tok::Assign,
                }
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'"' => {
                let (s, end) = lex_quoted(src, i)?;
                i = end;
                Tok::Str(s)
            }
            b'`' => {
                let Some(end) = src[i + 1..].find('`') else {
                    return Err(perr(src, i, "unterminated raw quoted string"));
                };
                let s = src[i + 1..i + 1 + end].to_string();
                i += end + 2;
                Tok::Str(s)
            }
            b'\'' => {
                let (ch, end) = lex_char(src, i)?;
                i = end;
                Tok::Num(Value::Int(ch as i64))
            }
            b'.' if b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                let (v, end) = lex_number(src, i)?;
                i = end;
                Tok::Num(v)
            }
            b'.' => {
                let name = name_after(src, i);
                i += 1 + name.len();
                if name.is_empty() {
                    Tok::Dot
                } else {
                    Tok::Field(name.to_string())
                }
            }
            b'$' => {
                let name = name_after(src, i);
                i += 1 + name.len();
                Tok::Var(format!("${name}"))
            }
            b'0'..=b'9' => {
                let (v, end) = lex_number(src, i)?;
                i = end;
                Tok::Num(v)
            }
            b'+' | b'-'
                if b.get(i + 1)
                    .is_some_and(|d| d.is_ascii_digit() || *d == b'.') =>
            {
                let (v, end) = lex_number(src, i)?;
                i = end;
                Tok::Num(v)
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('\0');
                if ch == '_' || ch.is_alphabetic() {
                    let name: String = src[i..].chars().take_while(|&c| is_ident_char(c)).collect();
                    i += name.len();
                    Tok::Ident(name)
                } else {
                    return Err(perr(
                        src,
                        i,
                        format!(
                            "unrecognized character in action: U+{:04X} '{ch}'",
                            ch as u32
                        ),
                    ));
                }
            }
        };
        tokens.push(Token {
            tok,
            pos: start,
            spaced,
        });
        spaced = false;
    }
}

/// The identifier right after the sigil (`.` or `$`) at `i`; empty if there is none.
fn name_after(src: &str, i: usize) -> &str {
    let rest = &src[i + 1..];
    let len = rest
        .char_indices()
        .find(|&(_, c)| !is_ident_char(c))
        .map_or(rest.len(), |(at, _)| at);
    &rest[..len]
}

pub(super) fn lex_quoted(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return Ok((out, start + 1 + off + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(c) if hex.len() == n => out.push(c),
                            _ => return Err(perr(src, start, "invalid syntax")),
                        }
                    }
                    _ => return Err(perr(src, start, "invalid syntax")),
                }
            }
            c => out.push(c),
        }
    }
    Err(perr(src, start, "unterminated quoted string"))
}

pub(super) fn lex_char(src: &str, start: usize) -> Result<(char, usize), ParseError> {
    let rest = &src[start + 1..];
    let mut it = rest.char_indices();
    let c = match it.next() {
        Some((_, '\\')) => match it.next() {
            Some((_, 'n')) => '\n',
            Some((_, 't')) => '\t',
            Some((_, '\\')) => '\\',
            Some((_, '\'')) => '\'',
            _ => return Err(perr(src, start, "invalid syntax")),
        },
        Some((_, c)) if c != '\'' => c,
        _ => return Err(perr(src, start, "unterminated character constant")),
    };
    match it.next() {
        Some((off, '\'')) => Ok((c, start + 1 + off + 1)),
        _ => Err(perr(src, start, "unterminated character constant")),
    }
}

pub(super) fn lex_number(src: &str, start: usize) -> Result<(Value, usize), ParseError> {
    let b = src.as_bytes();
    let mut i = start;
    if matches!(b[i], b'+' | b'-') {
        i += 1;
    }
    while i < b.len() {
        let c = b[i];
        let exp_sign = matches!(c, b'+' | b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    let text = &src[start..i];
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let parsed = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16).ok().map(Value::Int)
    } else if let Some(o) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        i64::from_str_radix(o, 8).ok().map(Value::Int)
    } else if let Some(bn) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        i64::from_str_radix(bn, 2).ok().map(Value::Int)
    } else if let Ok(n) = digits.parse::<i64>() {
        Some(Value::Int(n))
    } else {
        digits
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
    };
    match parsed {
        Some(Value::Int(n)) => Ok((Value::Int(if neg { -n } else { n }), i)),
        Some(Value::Float(f)) => Ok((Value::Float(if neg { -f } else { f }), i)),
        _ => Err(perr(src, start, format!("bad number syntax: \"{text}\""))),
    }
}
