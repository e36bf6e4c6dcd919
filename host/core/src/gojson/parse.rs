//! The syntax layer: bytes → a [`Json`] tree, refusing every input that Go's `encoding/json` would
//! read differently from what it looks like.
//!
//! Go's `json.Decoder.Decode` (what dockerd reads plugin replies with) stops after the first value
//! and ignores what follows, replaces invalid UTF-8 and lone UTF-16 surrogates with U+FFFD, and
//! nests 10 000 deep. Each of those lets a reply mean one thing to a checker that reads it strictly
//! and another to dockerd, so this parser refuses them all: data after the value, invalid UTF-8
//! anywhere, `\uD800`-style lone surrogates, and nesting past [`MAX_DEPTH`]. Object members are
//! kept in order with their keys unescaped, so the schema layer can see duplicates.

use super::DecodeError;

/// Deepest nesting accepted. Every protocol reply is at most four levels deep plus free-form
/// `Status`/`Value` maps; Go allows 10 000, and refusing earlier only ever refuses.
pub const MAX_DEPTH: usize = 64;

/// Largest body decoded: 8 MiB holds a List of tens of thousands of volumes.
pub const MAX_BYTES: usize = 8 << 20;

/// Most values (of any kind) in one body, so that a body of `[],[],…` cannot make plugd build a
/// tree many times its size: at most a few tens of MiB of tree per reply.
pub const MAX_VALUES: usize = 500_000;

/// A JSON value as written: numbers keep their literal text, objects their member order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number literal, already checked against JSON's grammar.
    Number(String),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object's members in the order they appear, duplicates included.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// What Go's `UnmarshalTypeError` calls this kind of value.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "bool",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
}

/// Parses exactly one JSON value, with only JSON whitespace around it.
pub fn parse(input: &[u8]) -> Result<Json, DecodeError> {
    if input.len() > MAX_BYTES {
        return Err(DecodeError::TooLarge {
            what: format!("{} bytes (at most {MAX_BYTES})", input.len()),
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| DecodeError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
        values: 0,
    };
    p.skip_ws();
    if p.i == p.s.len() {
        return Err(DecodeError::Empty);
    }
    let value = p.value(0)?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(DecodeError::Trailing { offset: p.i });
    }
    Ok(value)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    values: usize,
}

impl Parser<'_> {
    fn syntax(&self, what: &str) -> DecodeError {
        DecodeError::Syntax {
            offset: self.i,
            message: what.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// JSON whitespace only: Go's scanner treats nothing else (no NBSP, no form feed) as space.
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, DecodeError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(DecodeError::TooLarge {
                what: format!("more than {MAX_VALUES} values"),
            });
        }
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.syntax("invalid character looking for beginning of value")),
            None => Err(self.syntax("unexpected end of JSON input")),
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, DecodeError> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.syntax(&format!("invalid literal (expected {word})")))
        }
    }

    fn enter(&self, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            Err(DecodeError::TooDeep { offset: self.i })
        } else {
            Ok(())
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, DecodeError> {
        self.enter(depth)?;
        self.i += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.syntax("expected a string key in object"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.syntax("expected ':' after object key"));
            }
            self.i += 1;
            self.skip_ws();
            let v = self.value(depth)?;
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.syntax("expected ',' or '}' after object value")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, DecodeError> {
        self.enter(depth)?;
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.syntax("expected ',' or ']' after array element")),
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as Go's scanner.
    fn number(&mut self) -> Result<Json, DecodeError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax("invalid character in numeric literal")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax("expected a digit after the decimal point"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax("expected a digit in the exponent"));
            }
            self.digits();
        }
        Ok(Json::Number(self.text[start..self.i].to_string()))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            let run = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // The input is valid UTF-8 and the run stops only at ASCII bytes: a char boundary.
            out.push_str(&self.text[run..self.i]);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => return Err(self.syntax("control character in string")),
                None => return Err(self.syntax("unterminated string")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), DecodeError> {
        let c = self
            .peek()
            .ok_or_else(|| self.syntax("unterminated escape"))?;
        self.i += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let at = self.i - 2;
                let hi = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    // A high surrogate must be followed by an escaped low one; Go would
                    // otherwise substitute U+FFFD, which is not what the bytes say.
                    if !self.s[self.i..].starts_with(b"\\u") {
                        return Err(DecodeError::LoneSurrogate { offset: at });
                    }
                    self.i += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(DecodeError::LoneSurrogate { offset: at });
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return Err(DecodeError::LoneSurrogate { offset: at });
                } else {
                    hi
                };
                char::from_u32(code).ok_or(DecodeError::LoneSurrogate { offset: at })?
            }
            _ => {
                self.i -= 1;
                return Err(self.syntax("invalid escape in string"));
            }
        };
        out.push(ch);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, DecodeError> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.syntax("short \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.syntax("invalid hex digit in \\u escape"))?;
            v = v * 16 + n;
        }
        self.i += 4;
        Ok(v)
    }
}
