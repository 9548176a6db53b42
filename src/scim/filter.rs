//! RFC 7644 §3.4.2.2 filters and §3.5.2 PATCH paths: parsing, validation
//! against the schema, evaluation against rendered resource documents, and
//! the value ordering used by `sortBy` and `gt`/`ge`/`lt`/`le`.
//!
//! Layout: limits and syntax tree, lexer, parser (filters, PATCH paths, plain
//! attribute paths), schema resolution and validation, evaluation, ordering,
//! tests.
//!
//! Parsing knows nothing about schemas; [`validate`] and [`matches`] resolve
//! every name through [`schema::resolve`], so unknown attributes and literal
//! type mismatches are reported as `invalidFilter` by both.
//!
//! Hostile input is bounded: inputs longer than [`MAX_INPUT_LEN`] bytes and
//! nesting deeper than [`MAX_DEPTH`] are rejected before any deep recursion,
//! and `and`/`or` chains are built as balanced trees so a long chain does not
//! make the tree (and thus every recursive walk over it) deep.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde_json::{Number, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::scim::error::{ScimError, ScimResult};
use crate::scim::schema::{self, AttrDef, AttrType, Kind, Resolved};

// ---------------------------------------------------------------------------
// Limits and syntax tree
// ---------------------------------------------------------------------------

/// Longest filter or path accepted, in bytes.
pub const MAX_INPUT_LEN: usize = 4096;
/// Deepest nesting of `( )`, `not ( )` and `[ ]` the parser accepts; this
/// bounds the parser's recursion.
pub const MAX_DEPTH: usize = 64;
/// Guard for walks over trees built in code rather than parsed. Parsed trees
/// stay far below it (nesting ≤ 64, chains balanced, input ≤ 4096 bytes).
const MAX_TREE_DEPTH: usize = 512;

#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Number(Number),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Literal,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work" and value co "@x"]`: attribute paths inside are
    /// relative to `path` (which has sub = None).
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// PATCH path: attrPath [ "[" valFilter "]" ] [ "." subAttr ]
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// Sub-attribute after a filter, e.g. `.value` in `emails[type eq "work"].value`.
    pub sub_after_filter: Option<String>,
}

impl CompareOp {
    const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator spelled `word`, case-insensitively (RFC 7644 §3.4.2.2).
    pub fn from_keyword(word: &str) -> Option<CompareOp> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }

    fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }

    fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => f.write_str(&serde_json::to_string(s).map_err(|_| fmt::Error)?),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
        }
    }
}

/// Renders filter syntax that parses back to an equivalent filter.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_filter(self, f, 0)
    }
}

/// `prec`: 0 inside an `or` (or at top level), 1 inside an `and`.
fn write_filter(filter: &Filter, f: &mut fmt::Formatter<'_>, prec: u8) -> fmt::Result {
    match filter {
        Filter::Compare { path, op, value } => write!(f, "{path} {} {value}", op.as_str()),
        Filter::Present(path) => write!(f, "{path} pr"),
        Filter::And(a, b) => {
            write_filter(a, f, 1)?;
            f.write_str(" and ")?;
            write_filter(b, f, 1)
        }
        Filter::Or(..) if prec > 0 => {
            f.write_str("(")?;
            write_filter(filter, f, 0)?;
            f.write_str(")")
        }
        Filter::Or(a, b) => {
            write_filter(a, f, 0)?;
            f.write_str(" or ")?;
            write_filter(b, f, 0)
        }
        Filter::Not(inner) => {
            f.write_str("not (")?;
            write_filter(inner, f, 0)?;
            f.write_str(")")
        }
        Filter::ValuePath { path, filter } => {
            write!(f, "{path}[")?;
            write_filter(filter, f, 0)?;
            f.write_str("]")
        }
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_after_filter {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

/// Tokens of the filter grammar. Attribute paths, operators and keywords are
/// all `Word`s; the parser decides what a word means from its position, which
/// keeps `and`/`or`/`pr` usable as sub-attribute names in principle.
#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Word(&'a str),
    Str(String),
    Num(Number),
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("the string {}", Value::from(s.as_str())),
            Tok::Num(n) => format!("the number {n}"),
        }
    }
}

#[derive(Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    /// Byte offset in the input, turned into a character offset for messages.
    at: usize,
}

/// A syntax error at a byte offset; rendered by the public entry points as
/// invalidFilter or invalidPath.
#[derive(Debug)]
struct SyntaxError {
    at: usize,
    msg: String,
}

impl SyntaxError {
    fn new(at: usize, msg: impl Into<String>) -> Self {
        SyntaxError {
            at,
            msg: msg.into(),
        }
    }

    fn detail(&self, src: &str) -> String {
        format!("{} (at offset {})", self.msg, char_offset(src, self.at))
    }
}

/// Character (not byte) offset of `byte` in `src`, for human-facing messages.
fn char_offset(src: &str, byte: usize) -> usize {
    src.get(..byte)
        .map_or_else(|| src.chars().count(), |s| s.chars().count())
}

/// Characters of attribute paths (`nameChar`, `$ref`, the `.` of sub-attributes
/// and the `:`/`.` of schema URNs) and of keywords.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'$' | b'.' | b':')
}

/// Characters a JSON number can consist of; serde_json checks the exact form.
fn is_number_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
}

fn scan_while(bytes: &[u8], mut i: usize, pred: fn(u8) -> bool) -> usize {
    while bytes.get(i).copied().is_some_and(pred) {
        i += 1;
    }
    i
}

fn slice(src: &str, from: usize, to: usize) -> Result<&str, SyntaxError> {
    src.get(from..to)
        .ok_or_else(|| SyntaxError::new(from, "malformed input"))
}

fn lex(src: &str) -> Result<Vec<Token<'_>>, SyntaxError> {
    let bytes = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let at = i;
        let tok = match b {
            // RFC 7644 asks for single spaces; any run of whitespace is accepted.
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'[' => {
                i += 1;
                Tok::LBracket
            }
            b']' => {
                i += 1;
                Tok::RBracket
            }
            b'"' => {
                i = scan_string(bytes, at)?;
                let raw = slice(src, at, i)?;
                // The literal is a JSON string: let serde_json decode escapes.
                let s: String = serde_json::from_str(raw).map_err(|e| {
                    SyntaxError::new(at, format!("invalid string literal {raw}: {e}"))
                })?;
                Tok::Str(s)
            }
            b'-' | b'0'..=b'9' => {
                i = scan_while(bytes, at, is_number_byte);
                let raw = slice(src, at, i)?;
                let n: Number = serde_json::from_str(raw)
                    .map_err(|_| SyntaxError::new(at, format!("invalid number '{raw}'")))?;
                Tok::Num(n)
            }
            b if is_word_byte(b) => {
                i = scan_while(bytes, at, is_word_byte);
                Tok::Word(slice(src, at, i)?)
            }
            _ => {
                let c = src.get(at..).and_then(|s| s.chars().next()).unwrap_or('?');
                return Err(SyntaxError::new(
                    at,
                    format!(
                        "unexpected character '{c}'; expected an attribute path, operator, value, '(', ')', '[' or ']'"
                    ),
                ));
            }
        };
        toks.push(Token { tok, at });
    }
    Ok(toks)
}

/// Returns the offset just past the closing quote of the string at `start`.
/// Scanning bytes is UTF-8 safe: `"` and `\` never occur inside multi-byte
/// characters.
fn scan_string(bytes: &[u8], start: usize) -> Result<usize, SyntaxError> {
    let mut i = start + 1;
    loop {
        match bytes.get(i) {
            None => {
                return Err(SyntaxError::new(
                    start,
                    "unterminated string literal; expected a closing '\"'",
                ));
            }
            Some(b'\\') => i += 2,
            Some(b'"') => return Ok(i + 1),
            Some(_) => i += 1,
        }
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------
//
// filter    = or
// or        = and *( "or" and )
// and       = unary *( "and" unary )
// unary     = "not" "(" or ")" / "(" or ")" / attrExp
// attrExp   = attrPath "pr" / attrPath compareOp compValue
//           / attrPath "[" or "]"              ; valuePath, not nested
// patchPath = attrPath [ "[" or "]" [ "." ATTRNAME ] ]

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token<'a>>,
    pos: usize,
    depth: usize,
    in_value_path: bool,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, SyntaxError> {
        Ok(Parser {
            src,
            toks: lex(src)?,
            pos: 0,
            depth: 0,
            in_value_path: false,
        })
    }

    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    /// Byte offset of the next token, or of the end of input.
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.src.len(), |t| t.at)
    }

    fn advance(&mut self) {
        self.pos += 1;
    }

    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    /// "expected X, found Y" at the next token.
    fn expected(&self, what: &str) -> SyntaxError {
        let found = self
            .toks
            .get(self.pos)
            .map_or_else(|| "the end of input".to_string(), |t| t.tok.describe());
        SyntaxError::new(self.at(), format!("expected {what}, found {found}"))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw) => {
                self.advance();
                true
            }
            _ => false,
        }
    }

    fn enter(&mut self, at: usize) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError::new(
                at,
                format!("filter nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn parse_or(&mut self) -> Result<Filter, SyntaxError> {
        let mut terms = vec![self.parse_and()?];
        while self.eat_keyword("or") {
            terms.push(self.parse_and()?);
        }
        balance(terms, Filter::Or).ok_or_else(|| self.expected("a filter"))
    }

    fn parse_and(&mut self) -> Result<Filter, SyntaxError> {
        let mut terms = vec![self.parse_unary()?];
        while self.eat_keyword("and") {
            terms.push(self.parse_unary()?);
        }
        balance(terms, Filter::And).ok_or_else(|| self.expected("a filter"))
    }

    fn parse_unary(&mut self) -> Result<Filter, SyntaxError> {
        let at = self.at();
        match self.peek() {
            Some(Tok::LParen) => {
                self.advance();
                self.group(at)
            }
            Some(&Tok::Word(w)) if w.eq_ignore_ascii_case("not") => {
                self.advance();
                let open = self.at();
                if self.peek() != Some(&Tok::LParen) {
                    return Err(self.expected("'(' after 'not' (write: not (filter))"));
                }
                self.advance();
                Ok(Filter::Not(Box::new(self.group(open)?)))
            }
            Some(&Tok::Word(w)) => self.parse_attr_exp(w, at),
            _ => Err(self.expected("an attribute path, '(' or 'not'")),
        }
    }

    /// The rest of a parenthesised group whose '(' (at `open`) was consumed.
    fn group(&mut self, open: usize) -> Result<Filter, SyntaxError> {
        self.enter(open)?;
        let inner = self.parse_or()?;
        if self.peek() != Some(&Tok::RParen) {
            let what = format!(
                "'and', 'or' or ')' to close the '(' at offset {}",
                char_offset(self.src, open)
            );
            return Err(self.expected(&what));
        }
        self.advance();
        self.leave();
        Ok(inner)
    }

    /// The rest of a value filter whose '[' (at `open`) was consumed.
    fn value_filter(&mut self, open: usize) -> Result<Filter, SyntaxError> {
        self.enter(open)?;
        self.in_value_path = true;
        let inner = self.parse_or()?;
        if self.peek() != Some(&Tok::RBracket) {
            let what = format!(
                "'and', 'or' or ']' to close the '[' at offset {}",
                char_offset(self.src, open)
            );
            return Err(self.expected(&what));
        }
        self.advance();
        self.in_value_path = false;
        self.leave();
        Ok(inner)
    }

    fn parse_attr_exp(&mut self, word: &'a str, at: usize) -> Result<Filter, SyntaxError> {
        let path = parse_attr_word(word).map_err(|(off, msg)| SyntaxError::new(at + off, msg))?;
        self.advance();
        if self.in_value_path && (path.urn.is_some() || path.sub.is_some()) {
            return Err(SyntaxError::new(
                at,
                format!(
                    "'{word}' cannot be used inside a value filter; name a sub-attribute of the filtered attribute, e.g. 'type' or 'value'"
                ),
            ));
        }
        let op_at = self.at();
        match self.peek() {
            Some(Tok::LBracket) => {
                if self.in_value_path {
                    return Err(SyntaxError::new(op_at, "value filters cannot be nested"));
                }
                if path.sub.is_some() {
                    return Err(SyntaxError::new(
                        op_at,
                        format!(
                            "a value filter must follow an attribute without a sub-attribute, not '{word}'"
                        ),
                    ));
                }
                self.advance();
                let filter = self.value_filter(op_at)?;
                // Entra ID matches users with `emails[type eq "work"].value eq "x"`,
                // outside the RFC grammar; it means the same as
                // `emails[type eq "work" and value eq "x"]`, so parse it as that.
                let filter = match self.peek() {
                    Some(&Tok::Word(w)) if w.starts_with('.') => {
                        let sub_at = self.at();
                        let sub = &w[1..];
                        if !is_attr_name(sub) {
                            return Err(SyntaxError::new(
                                sub_at,
                                format!("'{w}' is not a sub-attribute name"),
                            ));
                        }
                        self.in_value_path = true;
                        let cmp = self.parse_attr_exp(sub, sub_at + 1);
                        self.in_value_path = false;
                        Filter::And(Box::new(filter), Box::new(cmp?))
                    }
                    _ => filter,
                };
                Ok(Filter::ValuePath {
                    path,
                    filter: Box::new(filter),
                })
            }
            Some(&Tok::Word(op)) => {
                if op.eq_ignore_ascii_case("pr") {
                    self.advance();
                    return Ok(Filter::Present(path));
                }
                let Some(op) = CompareOp::from_keyword(op) else {
                    return Err(SyntaxError::new(
                        op_at,
                        format!(
                            "unknown operator '{op}'; expected one of eq, ne, co, sw, ew, gt, ge, lt, le or pr"
                        ),
                    ));
                };
                self.advance();
                let value = self.parse_value()?;
                Ok(Filter::Compare { path, op, value })
            }
            _ => Err(self.expected(&format!(
                "an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) or '[' after '{word}'"
            ))),
        }
    }

    fn parse_value(&mut self) -> Result<Literal, SyntaxError> {
        let lit = match self.peek() {
            Some(Tok::Str(s)) => Literal::String(s.clone()),
            Some(Tok::Num(n)) => Literal::Number(n.clone()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
            Some(Tok::Word(_)) => {
                return Err(self
                    .expected("a value (a double-quoted string, a number, true, false or null)"));
            }
            _ => return Err(self.expected("a value (a string, a number, true, false or null)")),
        };
        self.advance();
        Ok(lit)
    }
}

/// Builds a balanced tree of `mk` nodes over `terms` (left-heavy, so up to
/// three terms give the usual left-associative shape). `and` and `or` are
/// associative, so this only changes the depth, not the meaning.
fn balance(mut terms: Vec<Filter>, mk: fn(Box<Filter>, Box<Filter>) -> Filter) -> Option<Filter> {
    if terms.len() <= 1 {
        return terms.pop();
    }
    let right = terms.split_off(terms.len().div_ceil(2));
    let l = balance(terms, mk)?;
    let r = balance(right, mk)?;
    Some(mk(Box::new(l), Box::new(r)))
}

/// Checks an `ATTRNAME` (`ALPHA *(nameChar)`, or `$ref`); the error carries
/// an offset relative to `name`.
fn check_attr_name(name: &str) -> Result<(), (usize, String)> {
    if name.eq_ignore_ascii_case("$ref") {
        return Ok(());
    }
    let mut chars = name.char_indices();
    match chars.next() {
        None => return Err((0, "expected an attribute name".into())),
        Some((_, c)) if !c.is_ascii_alphabetic() => {
            return Err((
                0,
                format!("attribute name '{name}' must start with a letter"),
            ));
        }
        Some(_) => {}
    }
    for (i, c) in chars {
        if !(c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err((
                i,
                format!("unexpected character '{c}' in attribute name '{name}'"),
            ));
        }
    }
    Ok(())
}

/// Splits a path word into URN, name and sub-attribute. A URN-prefixed path is
/// split at its last ':' only, never at the dots inside the URN (`2.0`).
/// `ALPHA *(nameChar)` or `$ref`.
fn is_attr_name(s: &str) -> bool {
    s == "$ref"
        || (s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

fn parse_attr_word(word: &str) -> Result<AttrPath, (usize, String)> {
    let is_urn = word
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    let (urn, rest, base) = if is_urn {
        let colon = word.rfind(':').unwrap_or(3);
        if colon <= 3 {
            return Err((
                0,
                format!("'{word}' is not a schema URN followed by ':' and an attribute name"),
            ));
        }
        let urn = word.get(..colon).unwrap_or_default();
        let rest = word.get(colon + 1..).unwrap_or_default();
        (Some(urn.to_string()), rest, colon + 1)
    } else {
        if let Some(i) = word.find(':') {
            return Err((
                i,
                format!(
                    "unexpected ':' in '{word}'; only a schema URN prefix (urn:...) may contain ':'"
                ),
            ));
        }
        (None, word, 0)
    };
    let mut parts = rest.splitn(3, '.');
    let name = parts.next().unwrap_or_default();
    check_attr_name(name).map_err(|(off, msg)| (base + off, msg))?;
    let sub = parts.next();
    if let Some(sub) = sub {
        let sub_at = base + name.len() + 1;
        check_attr_name(sub).map_err(|(off, msg)| (sub_at + off, msg))?;
        if parts.next().is_some() {
            return Err((
                sub_at + sub.len(),
                format!("too many '.' in '{word}'; expected attribute or attribute.subAttribute"),
            ));
        }
    }
    Ok(AttrPath {
        urn,
        name: name.to_string(),
        sub: sub.map(str::to_string),
    })
}

fn check_len(input: &str, what: &str) -> Result<(), String> {
    if input.len() > MAX_INPUT_LEN {
        return Err(format!(
            "{what} is longer than {MAX_INPUT_LEN} bytes ({} bytes)",
            input.len()
        ));
    }
    Ok(())
}

/// Parses a `filter` query parameter or SearchRequest `filter` (RFC 7644
/// §3.4.2.2). Errors are `invalidFilter` with the offending character offset.
pub fn parse_filter(input: &str) -> ScimResult<Filter> {
    check_len(input, "filter").map_err(ScimError::invalid_filter)?;
    filter_syntax(input)
        .map_err(|e| ScimError::invalid_filter(format!("invalid filter: {}", e.detail(input))))
}

fn filter_syntax(input: &str) -> Result<Filter, SyntaxError> {
    let mut p = Parser::new(input)?;
    if p.at_end() {
        return Err(SyntaxError::new(0, "filter is empty"));
    }
    let f = p.parse_or()?;
    if !p.at_end() {
        let what = if p.peek() == Some(&Tok::RParen) {
            "'and', 'or' or the end of the filter (unbalanced ')')"
        } else {
            "'and', 'or' or the end of the filter"
        };
        return Err(p.expected(what));
    }
    Ok(f)
}

/// Parses a PATCH operation `path` (RFC 7644 §3.5.2):
/// `attrPath [ "[" valFilter "]" [ "." subAttr ] ]`. Errors are `invalidPath`.
pub fn parse_path(input: &str) -> ScimResult<PatchPath> {
    check_len(input, "path").map_err(ScimError::invalid_path)?;
    path_syntax(input)
        .map_err(|e| ScimError::invalid_path(format!("invalid path: {}", e.detail(input))))
}

fn path_syntax(input: &str) -> Result<PatchPath, SyntaxError> {
    let mut p = Parser::new(input)?;
    let at = p.at();
    let Some(&Tok::Word(word)) = p.peek() else {
        return Err(p.expected("an attribute path"));
    };
    let attr = parse_attr_word(word).map_err(|(off, msg)| SyntaxError::new(at + off, msg))?;
    p.advance();
    let mut filter = None;
    let mut sub_after_filter = None;
    if p.peek() == Some(&Tok::LBracket) {
        let open = p.at();
        if attr.sub.is_some() {
            return Err(SyntaxError::new(
                open,
                format!(
                    "a value filter must follow an attribute without a sub-attribute, not '{word}'"
                ),
            ));
        }
        p.advance();
        filter = Some(p.value_filter(open)?);
        if let Some(&Tok::Word(w)) = p.peek() {
            let wat = p.at();
            let Some(sub) = w.strip_prefix('.') else {
                return Err(p.expected("'.' and a sub-attribute name after ']'"));
            };
            check_attr_name(sub).map_err(|(off, msg)| SyntaxError::new(wat + 1 + off, msg))?;
            sub_after_filter = Some(sub.to_string());
            p.advance();
        }
    }
    if !p.at_end() {
        return Err(p.expected(if filter.is_some() {
            "'.subAttribute' or the end of the path"
        } else {
            "'[' or the end of the path"
        }));
    }
    Ok(PatchPath {
        attr,
        filter,
        sub_after_filter,
    })
}

/// Parses a plain attribute path (`attributes=`, `excludedAttributes=`,
/// `sortBy=`, dotted keys of a path-less PATCH). Surrounding whitespace is
/// ignored. Errors are `invalidPath`.
pub fn parse_attr_path(input: &str) -> ScimResult<AttrPath> {
    check_len(input, "attribute path").map_err(ScimError::invalid_path)?;
    let s = input.trim();
    if s.is_empty() {
        return Err(ScimError::invalid_path("attribute path is empty"));
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|(_, c)| !u8::try_from(*c).is_ok_and(is_word_byte))
    {
        return Err(ScimError::invalid_path(format!(
            "invalid attribute path '{s}': unexpected character '{c}' (at offset {})",
            char_offset(s, i)
        )));
    }
    parse_attr_word(s).map_err(|(off, msg)| {
        ScimError::invalid_path(format!(
            "invalid attribute path '{s}': {msg} (at offset {off})"
        ))
    })
}

// ---------------------------------------------------------------------------
// Schema resolution and validation
// ---------------------------------------------------------------------------

/// An attribute path resolved against the schema: which JSON values it reads
/// and the definition those values are compared by.
#[derive(Debug, Clone, Copy)]
struct Target {
    res: Resolved,
    /// The sub-attribute read from each element: the one named, or the
    /// implicit `value` of a complex attribute used in a comparison.
    sub: Option<&'static AttrDef>,
    /// Inside a value filter: read `sub` straight from the current element.
    in_element: bool,
}

impl Target {
    fn leaf(&self) -> &'static AttrDef {
        self.sub.unwrap_or(self.res.attr)
    }

    /// Canonical name for messages, e.g. `emails.value` or `urn:...:User:manager`.
    fn name(&self) -> String {
        let mut s = String::new();
        if let Some(urn) = self.res.extension {
            s.push_str(urn);
            s.push(':');
        }
        s.push_str(self.res.attr.name);
        if let Some(sub) = self.sub {
            s.push('.');
            s.push_str(sub.name);
        }
        s
    }

    /// Every value the path designates in `base` (the document, or the
    /// element inside a value filter), multi-valued attributes flattened.
    fn values<'v>(&self, base: &'v Value) -> Vec<&'v Value> {
        let mut out = Vec::new();
        if self.in_element {
            if let Some(sub) = self.sub {
                push_flat(get_ci(base, sub.name), &mut out);
            }
            return out;
        }
        let container = match self.res.extension {
            Some(urn) => get_ci(base, urn),
            None => Some(base),
        };
        let attr = container.and_then(|c| get_ci(c, self.res.attr.name));
        match self.sub {
            None => push_flat(attr, &mut out),
            Some(sub) => {
                let mut elems = Vec::new();
                push_flat(attr, &mut elems);
                for el in elems {
                    push_flat(get_ci(el, sub.name), &mut out);
                }
            }
        }
        out
    }
}

/// Object member `key`: the canonical spelling first, then case-insensitively
/// (attribute names are case-insensitive, RFC 7643 §2.1).
fn get_ci<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Pushes `v`, or its elements if it is an array.
fn push_flat<'v>(v: Option<&'v Value>, out: &mut Vec<&'v Value>) {
    match v {
        Some(Value::Array(items)) => out.extend(items.iter()),
        Some(v) => out.push(v),
        None => {}
    }
}

/// Resolves `path`, at top level or (with `outer`) as a sub-attribute name
/// inside a value filter on `outer`. With `implicit_value`, a complex
/// attribute named without a sub-attribute stands for its `value`
/// (`emails co "x"`, `members eq "id"`, `manager eq "id"`).
fn resolve_target(
    kind: Kind,
    path: &AttrPath,
    outer: Option<&Resolved>,
    implicit_value: bool,
) -> ScimResult<Target> {
    match outer {
        None => {
            let res = schema::resolve(kind, path.urn.as_deref(), &path.name, path.sub.as_deref())
                .ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "unknown attribute '{path}' for {} resources",
                    kind.name()
                ))
            })?;
            let sub = match res.sub {
                None if implicit_value && res.attr.is_complex() => res.attr.sub_attr("value"),
                sub => sub,
            };
            Ok(Target {
                res,
                sub,
                in_element: false,
            })
        }
        Some(outer) => {
            if path.urn.is_some() || path.sub.is_some() {
                return Err(ScimError::invalid_filter(format!(
                    "'{path}' cannot be used inside a value filter on '{}'; name one of its sub-attributes",
                    outer.attr.name
                )));
            }
            let sub = outer.attr.sub_attr(&path.name).ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "unknown attribute '{}.{}' for {} resources",
                    outer.attr.name,
                    path.name,
                    kind.name()
                ))
            })?;
            Ok(Target {
                res: Resolved {
                    sub: Some(sub),
                    ..*outer
                },
                sub: Some(sub),
                in_element: true,
            })
        }
    }
}

/// Resolves the attribute of a `ValuePath`: a top-level complex attribute.
fn resolve_value_path(
    kind: Kind,
    path: &AttrPath,
    outer: Option<&Resolved>,
) -> ScimResult<Resolved> {
    if outer.is_some() {
        return Err(ScimError::invalid_filter(format!(
            "value filters cannot be nested ('{path}[...]')"
        )));
    }
    if path.sub.is_some() {
        return Err(ScimError::invalid_filter(format!(
            "a value filter must follow an attribute without a sub-attribute, not '{path}'"
        )));
    }
    let res = schema::resolve(kind, path.urn.as_deref(), &path.name, None).ok_or_else(|| {
        ScimError::invalid_filter(format!(
            "unknown attribute '{path}' for {} resources",
            kind.name()
        ))
    })?;
    if !res.attr.is_complex() {
        return Err(ScimError::invalid_filter(format!(
            "'{path}' is not a complex attribute, so it cannot take a value filter '[...]'"
        )));
    }
    Ok(res)
}

/// A comparison literal checked against (and converted for) its attribute.
#[derive(Debug)]
enum Operand {
    /// Lower-cased when the attribute is not caseExact.
    Str(String),
    Bool(bool),
    Num(Number),
    Date(OffsetDateTime),
}

/// What a `Compare` node does once checked against the schema.
#[derive(Debug)]
enum Compiled {
    /// `eq null` (want = false) and `ne null` (want = true).
    Presence { target: Target, want: bool },
    Compare {
        target: Target,
        op: CompareOp,
        operand: Operand,
    },
}

fn compile_compare(
    kind: Kind,
    path: &AttrPath,
    op: CompareOp,
    lit: &Literal,
    outer: Option<&Resolved>,
) -> ScimResult<Compiled> {
    if *lit == Literal::Null {
        let target = resolve_target(kind, path, outer, false)?;
        return match op {
            CompareOp::Eq => Ok(Compiled::Presence {
                target,
                want: false,
            }),
            CompareOp::Ne => Ok(Compiled::Presence { target, want: true }),
            _ => Err(ScimError::invalid_filter(format!(
                "operator '{}' cannot compare '{}' with null; only eq and ne can",
                op.as_str(),
                target.name()
            ))),
        };
    }
    let target = resolve_target(kind, path, outer, true)?;
    let leaf = target.leaf();
    let unsupported = || {
        ScimError::invalid_filter(format!(
            "operator '{}' is not supported on {} attribute '{}'",
            op.as_str(),
            leaf.ty.as_str(),
            target.name()
        ))
    };
    let mismatch = |expected: &str| {
        ScimError::invalid_filter(format!(
            "{} attribute '{}' must be compared with {expected}, not {lit}",
            leaf.ty.as_str(),
            target.name()
        ))
    };
    let operand = match leaf.ty {
        AttrType::Complex => {
            return Err(ScimError::invalid_filter(format!(
                "complex attribute '{}' cannot be compared; filter on one of its sub-attributes",
                target.name()
            )));
        }
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            if leaf.ty == AttrType::Binary && op.is_ordering() {
                return Err(unsupported());
            }
            let Literal::String(s) = lit else {
                return Err(mismatch("a string"));
            };
            Operand::Str(if leaf.case_exact {
                s.clone()
            } else {
                s.to_lowercase()
            })
        }
        AttrType::Boolean => {
            if !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                return Err(unsupported());
            }
            match lit {
                Literal::Bool(b) => Operand::Bool(*b),
                // Some clients quote booleans; accept the two spellings.
                Literal::String(s) if s.eq_ignore_ascii_case("true") => Operand::Bool(true),
                Literal::String(s) if s.eq_ignore_ascii_case("false") => Operand::Bool(false),
                _ => return Err(mismatch("true or false")),
            }
        }
        AttrType::Integer | AttrType::Decimal => {
            if op.is_substring() {
                return Err(unsupported());
            }
            let Literal::Number(n) = lit else {
                return Err(mismatch("a number"));
            };
            let integral = n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0);
            if leaf.ty == AttrType::Integer && !integral {
                return Err(mismatch("an integer"));
            }
            Operand::Num(n.clone())
        }
        AttrType::DateTime => {
            if op.is_substring() {
                return Err(unsupported());
            }
            let Literal::String(s) = lit else {
                return Err(mismatch("an RFC 3339 date-time string"));
            };
            let d = parse_datetime(s).ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "{lit} is not a valid RFC 3339 date-time (comparing '{}')",
                    target.name()
                ))
            })?;
            Operand::Date(d)
        }
    };
    Ok(Compiled::Compare {
        target,
        op,
        operand,
    })
}

fn too_deep() -> ScimError {
    ScimError::invalid_filter(format!("filter nests deeper than {MAX_TREE_DEPTH} levels"))
}

/// Checks every attribute of the filter exists for `kind` (via
/// schema::resolve, also inside ValuePath where inner names are
/// sub-attributes of the outer attribute) and that literal types fit the
/// attribute types; errors invalid_filter with a detail naming the attribute.
pub fn validate(filter: &Filter, kind: Kind) -> ScimResult<()> {
    check(filter, kind, None, 0)
}

fn check(f: &Filter, kind: Kind, outer: Option<&Resolved>, depth: usize) -> ScimResult<()> {
    if depth > MAX_TREE_DEPTH {
        return Err(too_deep());
    }
    match f {
        Filter::Compare { path, op, value } => {
            compile_compare(kind, path, *op, value, outer).map(|_| ())
        }
        Filter::Present(path) => resolve_target(kind, path, outer, false).map(|_| ()),
        Filter::And(a, b) | Filter::Or(a, b) => {
            check(a, kind, outer, depth + 1)?;
            check(b, kind, outer, depth + 1)
        }
        Filter::Not(inner) => check(inner, kind, outer, depth + 1),
        Filter::ValuePath { path, filter } => {
            let res = resolve_value_path(kind, path, outer)?;
            check(filter, kind, Some(&res), depth + 1)
        }
    }
}

/// Checks a parsed PATCH path against the schema and returns what it
/// designates: the attribute and the sub-attribute (named with a dot, or
/// after the value filter). A bare schema URN must be handled by the caller
/// before this. Errors are `invalidPath`.
pub fn validate_path(path: &PatchPath, kind: Kind) -> ScimResult<Resolved> {
    let as_path_error = |e: ScimError| ScimError::invalid_path(e.detail());
    let attr = &path.attr;
    let res = schema::resolve(kind, attr.urn.as_deref(), &attr.name, attr.sub.as_deref())
        .ok_or_else(|| {
            ScimError::invalid_path(format!(
                "unknown attribute '{attr}' for {} resources",
                kind.name()
            ))
        })?;
    match (&path.filter, &path.sub_after_filter) {
        (None, None) => Ok(res),
        (None, Some(_)) => Err(ScimError::invalid_path(format!(
            "invalid path '{path}': a sub-attribute after ']' needs a value filter"
        ))),
        (Some(filter), sub) => {
            let outer = resolve_value_path(kind, attr, None).map_err(as_path_error)?;
            check(filter, kind, Some(&outer), 1).map_err(as_path_error)?;
            let Some(sub) = sub else {
                return Ok(outer);
            };
            let sub = outer.attr.sub_attr(sub).ok_or_else(|| {
                ScimError::invalid_path(format!(
                    "unknown attribute '{}.{sub}' for {} resources",
                    outer.attr.name,
                    kind.name()
                ))
            })?;
            Ok(Resolved {
                sub: Some(sub),
                ..outer
            })
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// Evaluates against a rendered resource document.
pub fn matches(filter: &Filter, kind: Kind, doc: &Value) -> ScimResult<bool> {
    eval(filter, kind, doc, None, 0)
}

/// Evaluates a value filter (the part inside `[...]`, as in
/// [`PatchPath::filter`]) against one element of the complex attribute
/// `attr`, e.g. one entry of `emails` or `members`. Errors are invalidFilter.
pub fn matches_element(
    filter: &Filter,
    kind: Kind,
    attr: &AttrPath,
    element: &Value,
) -> ScimResult<bool> {
    let outer = resolve_value_path(kind, attr, None)?;
    eval(filter, kind, element, Some(&outer), 1)
}

/// `base` is the document, or with `outer` one element of the attribute a
/// value filter applies to.
fn eval(
    f: &Filter,
    kind: Kind,
    base: &Value,
    outer: Option<&Resolved>,
    depth: usize,
) -> ScimResult<bool> {
    if depth > MAX_TREE_DEPTH {
        return Err(too_deep());
    }
    match f {
        Filter::Compare { path, op, value } => {
            match compile_compare(kind, path, *op, value, outer)? {
                Compiled::Presence { target, want } => Ok(present(&target, base) == want),
                Compiled::Compare {
                    target,
                    op,
                    operand,
                } => {
                    let leaf = target.leaf();
                    let values = target.values(base);
                    let any = |op| values.iter().any(|v| test(v, op, &operand, leaf));
                    // `ne` holds when no value equals, so a missing attribute is `ne` anything.
                    Ok(match op {
                        CompareOp::Ne => !any(CompareOp::Eq),
                        op => any(op),
                    })
                }
            }
        }
        Filter::Present(path) => {
            let target = resolve_target(kind, path, outer, false)?;
            Ok(present(&target, base))
        }
        Filter::And(a, b) => {
            Ok(eval(a, kind, base, outer, depth + 1)? && eval(b, kind, base, outer, depth + 1)?)
        }
        Filter::Or(a, b) => {
            Ok(eval(a, kind, base, outer, depth + 1)? || eval(b, kind, base, outer, depth + 1)?)
        }
        Filter::Not(inner) => Ok(!eval(inner, kind, base, outer, depth + 1)?),
        Filter::ValuePath { path, filter } => {
            let res = resolve_value_path(kind, path, outer)?;
            let whole = Target {
                res,
                sub: None,
                in_element: false,
            };
            // All conditions must hold for the same element.
            for el in whole.values(base) {
                if el.is_object() && eval(filter, kind, el, Some(&res), depth + 1)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// `pr`: some designated value is not null, not "", not [] and not {}.
fn present(target: &Target, base: &Value) -> bool {
    target.values(base).into_iter().any(has_content)
}

fn has_content(v: &Value) -> bool {
    fn shallow(v: &Value) -> bool {
        match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::Bool(_) | Value::Number(_) => true,
        }
    }
    match v {
        Value::Array(a) => a.iter().any(shallow),
        Value::Object(o) => o.values().any(shallow),
        v => shallow(v),
    }
}

/// One value against a checked operand. Values of the wrong JSON type never
/// match (the document, not the filter, is at fault).
fn test(v: &Value, op: CompareOp, operand: &Operand, leaf: &AttrDef) -> bool {
    match operand {
        Operand::Str(lit) => {
            let Some(s) = v.as_str() else {
                return false;
            };
            let s: Cow<'_, str> = if leaf.case_exact {
                Cow::Borrowed(s)
            } else {
                Cow::Owned(s.to_lowercase())
            };
            match op {
                CompareOp::Co => s.contains(lit.as_str()),
                CompareOp::Sw => s.starts_with(lit.as_str()),
                CompareOp::Ew => s.ends_with(lit.as_str()),
                op => holds(op, s.as_ref().cmp(lit.as_str())),
            }
        }
        Operand::Bool(b) => v.as_bool().is_some_and(|x| holds(op, x.cmp(b))),
        Operand::Num(n) => match v {
            Value::Number(x) => holds(op, exact_num_cmp(x, n)),
            _ => false,
        },
        Operand::Date(d) => v
            .as_str()
            .and_then(parse_datetime)
            .is_some_and(|x| holds(op, x.cmp(d))),
    }
}

fn holds(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// Exact for integers, f64 otherwise (filters only; sorting uses a
/// transitive f64-only order).
fn exact_num_cmp(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    num_f64(a).total_cmp(&num_f64(b))
}

fn num_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// RFC 3339; an xsd:dateTime without offset (RFC 7643 §2.3.5 allows it) is
/// taken as UTC.
fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        let local = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        PrimitiveDateTime::parse(s, local)
            .ok()
            .map(PrimitiveDateTime::assume_utc)
    })
}

// ---------------------------------------------------------------------------
// Sorting support
// ---------------------------------------------------------------------------

/// All leaf values an attribute path designates in a document (flattening
/// multi-valued attributes; for a complex attribute without a sub-attribute,
/// its `value` sub-attribute), used for sorting. Nulls are left out. Unknown
/// attributes are `invalidPath`.
pub fn values_at<'a>(kind: Kind, doc: &'a Value, path: &AttrPath) -> ScimResult<Vec<&'a Value>> {
    let target =
        resolve_target(kind, path, None, true).map_err(|e| ScimError::invalid_path(e.detail()))?;
    let mut values = target.values(doc);
    values.retain(|v| !v.is_null());
    Ok(values)
}

/// The value a resource sorts by (RFC 7644 §3.4.2.3): for a multi-valued
/// attribute, that of its primary entry, else the first one.
pub fn sort_value<'a>(
    kind: Kind,
    doc: &'a Value,
    path: &AttrPath,
) -> ScimResult<Option<&'a Value>> {
    let values = values_at(kind, doc, path)?;
    if let Some(r) = schema::resolve(kind, path.urn.as_deref(), &path.name, None)
        && r.attr.multi
        && r.attr.is_complex()
    {
        let container = match r.extension {
            Some(urn) => doc.get(urn),
            None => Some(doc),
        };
        let sub = path
            .sub
            .as_deref()
            .and_then(|s| r.attr.sub_attr(s))
            .map_or("value", |s| s.name);
        let primary = container
            .and_then(|c| c.get(r.attr.name))
            .and_then(Value::as_array)
            .and_then(|items| {
                items
                    .iter()
                    .find(|i| i.get("primary") == Some(&Value::Bool(true)))
            })
            .and_then(|p| p.get(sub))
            .filter(|v| !v.is_null());
        if primary.is_some() {
            return Ok(primary);
        }
    }
    Ok(values.into_iter().next())
}

/// The definition [`compare`] should use for the values [`values_at`] returns
/// for `path` (the implicit `value` sub-attribute for e.g. `emails`).
/// Unknown attributes are `invalidPath`.
pub fn leaf_of(kind: Kind, path: &AttrPath) -> ScimResult<&'static AttrDef> {
    resolve_target(kind, path, None, true)
        .map(|t| t.leaf())
        .map_err(|e| ScimError::invalid_path(e.detail()))
}

/// Total order used for sorting and gt/ge/lt/le: strings per caseExact of
/// `leaf` (case-insensitive = compare lowercase), dateTime chronologically
/// (parse RFC 3339), numbers numerically, booleans false<true.
///
/// It is a consistent total preorder whatever the inputs (std's sort may
/// panic otherwise): values of different JSON types order by type (null <
/// boolean < number < string < array < object); for a dateTime leaf, strings
/// that parse come before those that do not, which sort as text.
pub fn compare(a: &Value, b: &Value, leaf: &AttrDef) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => compare_str(x, y, leaf),
        (Value::Number(x), Value::Number(y)) => num_f64(x).total_cmp(&num_f64(y)),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn compare_str(x: &str, y: &str, leaf: &AttrDef) -> Ordering {
    if leaf.ty == AttrType::DateTime {
        match (parse_datetime(x), parse_datetime(y)) {
            (Some(p), Some(q)) => return p.cmp(&q),
            (Some(_), None) => return Ordering::Less,
            (None, Some(_)) => return Ordering::Greater,
            (None, None) => {}
        }
    }
    if leaf.case_exact {
        x.cmp(y)
    } else {
        // Compare lower-cased without allocating.
        x.chars()
            .flat_map(char::to_lowercase)
            .cmp(y.chars().flat_map(char::to_lowercase))
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::schema::{ENTERPRISE_URN, USER_URN};
    use serde_json::json;

    const MGR: &str = "26118915-6090-4610-87e4-49d8ca9f808d";

    fn user() -> Value {
        json!({
            "schemas": [USER_URN, ENTERPRISE_URN],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "BJensen-Ext",
            "userName": "bjensen@example.com",
            "name": {
                "formatted": "Ms. Barbara J Jensen, III",
                "familyName": "Jensen",
                "givenName": "Barbara"
            },
            "displayName": "Babs Jensen",
            "nickName": "",
            "title": null,
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "phoneNumbers": [],
            "addresses": [
                {"type": "work", "locality": "Hollywood", "country": "USA"}
            ],
            "groups": [
                {"value": "e9e30dba-f08f-4109-8486-d5c6a331660a", "display": "Tour Guides", "type": "direct"}
            ],
            "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx"}],
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"a330bc54f0671c9\""
            },
            ENTERPRISE_URN: {
                "employeeNumber": "701984",
                "costCenter": "4130",
                "organization": "Universal Studios",
                "division": "Theme Park",
                "department": "Tour Operations",
                "manager": {
                    "value": MGR,
                    "$ref": format!("../Users/{MGR}"),
                    "displayName": "John Smith"
                }
            }
        })
    }

    fn group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "displayName": "Tour Guides",
            "members": [
                {"value": "2819c223-7f76-453a-919d-413861904646", "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646", "type": "User", "display": "Babs Jensen"},
                {"value": "902c246b-6245-4190-8e05-00816be7344a", "type": "User", "display": "Mandy Pepperidge"}
            ],
            "meta": {"resourceType": "Group", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"}
        })
    }

    fn eval_on(kind: Kind, doc: &Value, filter: &str) -> bool {
        let f = parse_filter(filter).unwrap_or_else(|e| panic!("parse {filter:?}: {e}"));
        validate(&f, kind).unwrap_or_else(|e| panic!("validate {filter:?}: {e}"));
        matches(&f, kind, doc).unwrap_or_else(|e| panic!("matches {filter:?}: {e}"))
    }

    fn u(filter: &str) -> bool {
        eval_on(Kind::User, &user(), filter)
    }

    fn g(filter: &str) -> bool {
        eval_on(Kind::Group, &group(), filter)
    }

    fn path(name: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: None,
        }
    }

    fn sub_path(name: &str, sub: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: Some(sub.into()),
        }
    }

    fn pr(name: &str) -> Filter {
        Filter::Present(path(name))
    }

    fn cmp(p: AttrPath, op: CompareOp, s: &str) -> Filter {
        Filter::Compare {
            path: p,
            op,
            value: Literal::String(s.into()),
        }
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }

    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }

    fn not(a: Filter) -> Filter {
        Filter::Not(Box::new(a))
    }

    /// The error of parsing, then validating, then evaluating `filter`.
    fn filter_error(kind: Kind, filter: &str) -> ScimError {
        let doc = if kind == Kind::User { user() } else { group() };
        match parse_filter(filter) {
            Err(e) => e,
            Ok(f) => {
                let v = validate(&f, kind).expect_err(&format!("{filter:?} should not validate"));
                let m =
                    matches(&f, kind, &doc).expect_err(&format!("{filter:?} should not evaluate"));
                assert_eq!(
                    m.scim_type(),
                    Some(ScimType::InvalidFilter),
                    "{filter:?}: {m}"
                );
                v
            }
        }
    }

    // --- lexer and parser -------------------------------------------------

    #[test]
    fn parses_simple_comparison() {
        assert_eq!(
            parse_filter(r#"userName eq "bjensen""#).unwrap(),
            cmp(path("userName"), CompareOp::Eq, "bjensen")
        );
    }

    #[test]
    fn parses_every_operator_case_insensitively() {
        for op in CompareOp::ALL {
            for spelling in [op.as_str().to_string(), op.as_str().to_uppercase()] {
                let f = parse_filter(&format!(r#"title {spelling} "x""#)).unwrap();
                assert_eq!(f, cmp(path("title"), op, "x"));
            }
        }
        assert_eq!(parse_filter("title PR").unwrap(), pr("title"));
        assert_eq!(
            parse_filter("title pr AND nickName Pr Or userType pR").unwrap(),
            or(and(pr("title"), pr("nickName")), pr("userType"))
        );
        assert_eq!(parse_filter("NOT (title pr)").unwrap(), not(pr("title")));
    }

    #[test]
    fn parses_literals() {
        let lit = |s: &str| match parse_filter(&format!("x eq {s}")).unwrap() {
            Filter::Compare { value, .. } => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(lit("true"), Literal::Bool(true));
        assert_eq!(lit("FALSE"), Literal::Bool(false));
        assert_eq!(lit("Null"), Literal::Null);
        assert_eq!(lit("42"), Literal::Number(42.into()));
        assert_eq!(lit("-7"), Literal::Number((-7).into()));
        assert_eq!(
            lit("-1.5e3"),
            Literal::Number(Number::from_f64(-1500.0).unwrap())
        );
        assert_eq!(lit(r#""""#), Literal::String(String::new()));
    }

    #[test]
    fn decodes_string_escapes() {
        let f = parse_filter(r#"title eq "a\"b\\c\u00e9\n\/ [x] (y) and""#).unwrap();
        assert_eq!(
            f,
            cmp(path("title"), CompareOp::Eq, "a\"b\\c\u{e9}\n/ [x] (y) and")
        );
        // Non-ASCII passes through unescaped.
        let f = parse_filter(r#"displayName eq "Zoë 日本""#).unwrap();
        assert_eq!(f, cmp(path("displayName"), CompareOp::Eq, "Zoë 日本"));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            parse_filter("a pr or b pr and c pr").unwrap(),
            or(pr("a"), and(pr("b"), pr("c")))
        );
        assert_eq!(
            parse_filter("a pr and b pr or c pr").unwrap(),
            or(and(pr("a"), pr("b")), pr("c"))
        );
        assert_eq!(
            parse_filter("a pr and b pr or c pr and d pr").unwrap(),
            or(and(pr("a"), pr("b")), and(pr("c"), pr("d")))
        );
    }

    #[test]
    fn parentheses_group_and_nest() {
        assert_eq!(
            parse_filter("(a pr or b pr) and c pr").unwrap(),
            and(or(pr("a"), pr("b")), pr("c"))
        );
        assert_eq!(parse_filter("((a pr))").unwrap(), pr("a"));
        assert_eq!(
            parse_filter("((a pr or (b pr and (c pr))))").unwrap(),
            or(pr("a"), and(pr("b"), pr("c")))
        );
        assert_eq!(
            parse_filter("  (  a pr   or b pr )and(c pr)  ").unwrap(),
            and(or(pr("a"), pr("b")), pr("c"))
        );
    }

    #[test]
    fn not_requires_parentheses_and_nests() {
        assert_eq!(parse_filter("not (a pr)").unwrap(), not(pr("a")));
        assert_eq!(parse_filter("not(a pr)").unwrap(), not(pr("a")));
        assert_eq!(parse_filter("not (not (a pr))").unwrap(), not(not(pr("a"))));
        assert_eq!(
            parse_filter("not (a pr) and b pr").unwrap(),
            and(not(pr("a")), pr("b"))
        );
        assert_eq!(
            parse_filter("not (a pr or b pr)").unwrap(),
            not(or(pr("a"), pr("b")))
        );
    }

    #[test]
    fn long_chains_become_balanced_trees() {
        assert_eq!(
            parse_filter("a pr or b pr or c pr").unwrap(),
            or(or(pr("a"), pr("b")), pr("c"))
        );
        assert_eq!(
            parse_filter("a pr or b pr or c pr or d pr").unwrap(),
            or(or(pr("a"), pr("b")), or(pr("c"), pr("d")))
        );
        fn depth(f: &Filter) -> usize {
            match f {
                Filter::And(a, b) | Filter::Or(a, b) => 1 + depth(a).max(depth(b)),
                Filter::Not(a) => 1 + depth(a),
                _ => 1,
            }
        }
        let ids: Vec<String> = (0..200).map(|i| format!(r#"id eq "id-{i}""#)).collect();
        let f = parse_filter(&ids.join(" or ")).unwrap();
        assert!(depth(&f) <= 9, "depth {}", depth(&f));
        let mut doc = user();
        for (i, expect) in [(0, true), (137, true), (199, true), (200, false)] {
            doc["id"] = json!(format!("id-{i}"));
            assert_eq!(matches(&f, Kind::User, &doc).unwrap(), expect, "id-{i}");
        }
    }

    #[test]
    fn parses_attribute_paths() {
        assert_eq!(
            parse_filter(r#"name.givenName eq "B""#).unwrap(),
            cmp(sub_path("name", "givenName"), CompareOp::Eq, "B")
        );
        assert_eq!(
            parse_filter("members.$ref pr").unwrap(),
            Filter::Present(sub_path("members", "$ref"))
        );
        assert_eq!(
            parse_filter("x509Certificates.value pr").unwrap(),
            Filter::Present(sub_path("x509Certificates", "value"))
        );
        assert_eq!(
            parse_filter("name_x-1 pr").unwrap(),
            Filter::Present(path("name_x-1"))
        );
    }

    #[test]
    fn urn_paths_split_at_last_colon() {
        let f = parse_filter(&format!(r#"{ENTERPRISE_URN}:manager.value eq "{MGR}""#)).unwrap();
        assert_eq!(
            f,
            cmp(
                AttrPath {
                    urn: Some(ENTERPRISE_URN.into()),
                    name: "manager".into(),
                    sub: Some("value".into()),
                },
                CompareOp::Eq,
                MGR
            )
        );
        let f = parse_filter(&format!(r#"{USER_URN}:userName eq "x""#)).unwrap();
        assert_eq!(
            f,
            cmp(
                AttrPath {
                    urn: Some(USER_URN.into()),
                    name: "userName".into(),
                    sub: None,
                },
                CompareOp::Eq,
                "x"
            )
        );
        let p =
            parse_attr_path("URN:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
        assert_eq!(
            p.urn.as_deref(),
            Some("URN:ietf:params:scim:schemas:core:2.0:User")
        );
        assert_eq!(
            (p.name.as_str(), p.sub.as_deref()),
            ("name", Some("givenName"))
        );
    }

    #[test]
    fn parses_value_paths() {
        let f = parse_filter(r#"emails[type eq "work" and value co "@example.com"]"#).unwrap();
        assert_eq!(
            f,
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(and(
                    cmp(path("type"), CompareOp::Eq, "work"),
                    cmp(path("value"), CompareOp::Co, "@example.com")
                )),
            }
        );
        let f =
            parse_filter(r#"userType eq "Employee" and (emails[type eq "work"] or not (ims pr))"#)
                .unwrap();
        assert!(matches!(f, Filter::And(..)));
    }

    #[test]
    fn parses_patch_paths() {
        let p = parse_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!(
            p,
            PatchPath {
                attr: path("members"),
                filter: Some(cmp(path("value"), CompareOp::Eq, "2819c223")),
                sub_after_filter: None,
            }
        );
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(
            p,
            PatchPath {
                attr: path("emails"),
                filter: Some(cmp(path("type"), CompareOp::Eq, "work")),
                sub_after_filter: Some("value".into()),
            }
        );
        let p = parse_path("name.givenName").unwrap();
        assert_eq!(
            p,
            PatchPath {
                attr: sub_path("name", "givenName"),
                filter: None,
                sub_after_filter: None,
            }
        );
        let p = parse_path(&format!("{ENTERPRISE_URN}:manager.value")).unwrap();
        assert_eq!(p.attr.urn.as_deref(), Some(ENTERPRISE_URN));
        assert_eq!(
            (p.attr.name.as_str(), p.attr.sub.as_deref()),
            ("manager", Some("value"))
        );
        // A bare schema URN: callers recognise urn + ":" + name as a schema id.
        let p = parse_path(ENTERPRISE_URN).unwrap();
        assert_eq!(
            p.attr.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0")
        );
        assert_eq!((p.attr.name.as_str(), p.attr.sub), ("User", None));
        let p = parse_path(&format!(r#"{USER_URN}:emails[type eq "work"].display"#)).unwrap();
        assert_eq!(p.attr.urn.as_deref(), Some(USER_URN));
        assert_eq!(p.attr.name, "emails");
        assert_eq!(p.sub_after_filter.as_deref(), Some("display"));
        // Value filters in paths may combine conditions.
        let p =
            parse_path(r#"addresses[type eq "work" and not (primary eq true)].locality"#).unwrap();
        assert!(matches!(p.filter, Some(Filter::And(..))));
    }

    #[test]
    fn parses_plain_attribute_paths() {
        assert_eq!(parse_attr_path("userName").unwrap(), path("userName"));
        assert_eq!(
            parse_attr_path(" name.givenName ").unwrap(),
            sub_path("name", "givenName")
        );
        assert_eq!(
            parse_attr_path("members.$ref").unwrap(),
            sub_path("members", "$ref")
        );
        let p = parse_attr_path(&format!("{ENTERPRISE_URN}:employeeNumber")).unwrap();
        assert_eq!(p.urn.as_deref(), Some(ENTERPRISE_URN));
        assert_eq!(p.name, "employeeNumber");
        for bad in [
            "",
            "  ",
            "a.b.c",
            "1abc",
            ".value",
            "name.",
            "user name",
            "emails[type eq \"w\"]",
            "foo:bar",
            "urn:foo",
            "urn:x:",
            "na*me",
            "émail",
        ] {
            let e = parse_attr_path(bad).expect_err(bad);
            assert_eq!(e.scim_type(), Some(ScimType::InvalidPath), "{bad:?}: {e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for src in [
            r#"userName eq "bjensen""#,
            r#"title pr and (userType eq "Employee" or userType eq "Intern")"#,
            r#"not (emails[type eq "work" and value co "@x\"y"]) or active eq true"#,
            "a pr or b pr or c pr or d pr or e pr",
            "x gt -1.5 and y le null",
        ] {
            let f = parse_filter(src).unwrap();
            let again = parse_filter(&f.to_string()).unwrap();
            assert_eq!(f, again, "{src} -> {f}");
        }
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);
        assert_eq!(
            parse_attr_path(&format!("{ENTERPRISE_URN}:manager.value"))
                .unwrap()
                .to_string(),
            format!("{ENTERPRISE_URN}:manager.value")
        );
    }

    // --- evaluation -------------------------------------------------------

    #[test]
    fn string_operators() {
        assert!(u(r#"userName eq "bjensen@example.com""#));
        assert!(!u(r#"userName eq "bjensen""#));
        assert!(u(r#"userName ne "bjensen""#));
        assert!(!u(r#"userName ne "bjensen@example.com""#));
        assert!(u(r#"userName co "jensen@""#));
        assert!(!u(r#"userName co "smith""#));
        assert!(u(r#"userName sw "bjen""#));
        assert!(!u(r#"userName sw "jensen""#));
        assert!(u(r#"userName ew "example.com""#));
        assert!(!u(r#"userName ew "example""#));
        assert!(u(r#"userName gt "a""#));
        assert!(!u(r#"userName gt "c""#));
        assert!(u(r#"userName ge "bjensen@example.com""#));
        assert!(u(r#"userName lt "c""#));
        assert!(!u(r#"userName lt "bjensen@example.com""#));
        assert!(u(r#"userName le "bjensen@example.com""#));
        assert!(u(r#"userName co """#));
    }

    #[test]
    fn operators_and_attribute_names_are_case_insensitive() {
        assert!(u(r#"USERNAME EQ "bjensen@example.com""#));
        assert!(u(r#"Name.GivenName Sw "bar""#));
        assert!(u(r#"EMAILS[TYPE eq "WORK"]"#));
        assert!(u(r#"meta.LASTMODIFIED GT "2011-01-01T00:00:00Z""#));
        let lower = ENTERPRISE_URN.to_lowercase();
        assert!(u(&format!(r#"{lower}:MANAGER.VALUE eq "{MGR}""#)));
    }

    #[test]
    fn case_exact_attributes_compare_exactly() {
        // userName is caseExact=false, externalId/id caseExact=true.
        assert!(u(r#"userName eq "BJENSEN@Example.COM""#));
        assert!(u(r#"userName sw "BJEN""#));
        assert!(u(r#"externalId eq "BJensen-Ext""#));
        assert!(!u(r#"externalId eq "bjensen-ext""#));
        assert!(u(r#"externalId ne "bjensen-ext""#));
        assert!(!u(r#"externalId sw "bjensen""#));
        assert!(u(r#"externalId co "Jensen""#));
        assert!(!u(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
        assert!(u(r#"id eq "2819c223-7f76-453a-919d-413861904646""#));
        // Ordering respects caseExact too: "B" < "a" only when exact.
        assert!(u(r#"externalId lt "a""#));
        assert!(!u(r#"userName lt "B""#));
    }

    #[test]
    fn multi_valued_attributes_match_any_value() {
        assert!(u(r#"emails.type eq "home""#));
        assert!(u(r#"emails.type eq "work""#));
        assert!(!u(r#"emails.type eq "other""#));
        assert!(u(r#"emails.value ew ".org""#));
        // Without a sub-attribute, a multi-valued complex attribute compares its `value`.
        assert!(u(r#"emails co "jensen.org""#));
        assert!(u(r#"emails eq "BABS@jensen.org""#));
        assert!(!u(r#"emails co "work""#));
        assert!(u(r#"groups.display eq "tour guides""#));
        assert!(u(r#"groups eq "e9e30dba-f08f-4109-8486-d5c6a331660a""#));
        assert!(u(r#"addresses.locality eq "hollywood""#));
    }

    #[test]
    fn ne_means_no_value_equals() {
        assert!(!u(r#"emails.type ne "work""#));
        assert!(u(r#"emails.type ne "other""#));
        // Missing, null and empty attributes are `ne` anything.
        assert!(u(r#"title ne "x""#));
        assert!(u(r#"profileUrl ne "x""#));
        assert!(u(r#"phoneNumbers.value ne "555""#));
        assert!(u(r#"ims ne "x""#));
    }

    #[test]
    fn present_operator() {
        assert!(u("userName pr"));
        assert!(u("name pr"));
        assert!(u("name.givenName pr"));
        assert!(!u("name.middleName pr"));
        assert!(u("emails pr"));
        assert!(u("emails.value pr"));
        assert!(!u("emails.display pr"));
        assert!(u("active pr"));
        // Empty string, null, empty array and missing are not present.
        assert!(!u("nickName pr"));
        assert!(!u("title pr"));
        assert!(!u("phoneNumbers pr"));
        assert!(!u("locale pr"));
        assert!(!u("password pr"));
        let doc = json!({"name": {}, "emails": [{}], "userName": "x"});
        assert!(!eval_on(Kind::User, &doc, "name pr"));
        assert!(!eval_on(Kind::User, &doc, "emails pr"));
    }

    #[test]
    fn eq_null_means_absent() {
        assert!(u("title eq null"));
        assert!(u("nickName eq null"));
        assert!(u("locale eq null"));
        assert!(!u("userName eq null"));
        assert!(u("userName ne null"));
        assert!(!u("title ne null"));
        assert!(u("name ne null"));
        assert!(u("phoneNumbers eq null"));
    }

    #[test]
    fn value_path_conditions_apply_to_one_element() {
        assert!(u(r#"emails[type eq "work" and value co "@example.com"]"#));
        // The home address is jensen.org: both conditions must hold for the same email.
        assert!(!u(r#"emails[type eq "home" and value co "@example.com"]"#));
        assert!(u(r#"emails[type eq "home" or value co "nothing"]"#));
        assert!(u(r#"emails[not (type eq "work")]"#));
        assert!(u(r#"emails[primary eq true]"#));
        assert!(u(r#"emails[type eq "work" and primary eq true]"#));
        assert!(!u(r#"emails[type eq "home" and primary eq true]"#));
        assert!(u(r#"emails[display eq null and type ne "other"]"#));
        assert!(!u(r#"phoneNumbers[type eq "work"]"#));
        assert!(!u(r#"ims[type pr]"#));
        // Single-valued complex attributes take value filters too.
        assert!(u(r#"name[givenName eq "barbara" and familyName sw "J"]"#));
        assert!(u(r#"userType eq "employee" and emails[type eq "work"]"#));
        assert!(u(r#"not (emails[type eq "other"])"#));
    }

    #[test]
    fn enterprise_extension_paths() {
        let e = ENTERPRISE_URN;
        assert!(u(&format!(r#"{e}:manager.value eq "{MGR}""#)));
        assert!(!u(&format!(r#"{e}:manager.value eq "someone-else""#)));
        assert!(u(&format!(r#"{e}:manager eq "{MGR}""#)));
        assert!(u(&format!(r#"{e}:manager.displayName co "smith""#)));
        assert!(u(&format!(r#"{e}:employeeNumber eq "701984""#)));
        assert!(u(&format!(
            r#"{e}:department pr and {e}:costCenter sw "41""#
        )));
        assert!(u(&format!(r#"{e}:manager[value eq "{MGR}"]"#)));
        assert!(!u(&format!("{e}:division eq null")));
        // Without the extension object the attributes are simply absent.
        let doc = json!({"userName": "x"});
        assert!(eval_on(
            Kind::User,
            &doc,
            &format!("{e}:manager.value eq null")
        ));
        assert!(!eval_on(Kind::User, &doc, &format!("{e}:manager pr")));
    }

    #[test]
    fn core_schema_urn_prefix() {
        assert!(u(&format!(
            r#"{USER_URN}:userName eq "bjensen@example.com""#
        )));
        assert!(u(&format!(r#"{USER_URN}:name.familyName eq "jensen""#)));
        assert!(u(&format!(r#"{USER_URN}:emails[type eq "work"]"#)));
        assert!(g(
            "urn:ietf:params:scim:schemas:core:2.0:Group:displayName pr"
        ));
    }

    #[test]
    fn date_time_comparisons_are_chronological() {
        assert!(u(r#"meta.lastModified gt "2011-05-13T04:42:33Z""#));
        assert!(!u(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#));
        assert!(u(r#"meta.lastModified ge "2011-05-13T04:42:34Z""#));
        assert!(u(r#"meta.lastModified lt "2011-05-13T04:42:34.5Z""#));
        assert!(u(r#"meta.lastModified le "2011-05-13T04:42:34Z""#));
        // Same instant, other offset: equal, even though the text differs.
        assert!(u(r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#));
        assert!(u(r#"meta.lastModified gt "2011-05-13T06:42:33+02:00""#));
        assert!(!u(r#"meta.lastModified gt "2011-05-13T06:42:35+02:00""#));
        assert!(u(r#"meta.lastModified ne "2011-05-13T04:42:35Z""#));
        // An offset-less xsd:dateTime counts as UTC.
        assert!(u(r#"meta.created eq "2010-01-23T04:56:22""#));
        assert!(u(
            r#"meta.created lt "2011-01-01T00:00:00Z" and meta.lastModified gt "2011-01-01T00:00:00Z""#
        ));
        assert!(g(r#"meta.lastModified gt "2011-05-13T04:42:33.999Z""#));
    }

    #[test]
    fn boolean_comparisons() {
        assert!(u("active eq true"));
        assert!(u("active eq TRUE"));
        assert!(!u("active eq false"));
        assert!(u("active ne false"));
        // Quoted booleans are tolerated.
        assert!(u(r#"active eq "true""#));
        assert!(u(r#"active eq "True""#));
        assert!(!u(r#"active eq "false""#));
        // Missing boolean: eq never holds, ne always does.
        assert!(!u("addresses.primary eq true"));
        assert!(u("addresses.primary ne true"));
    }

    #[test]
    fn group_filters() {
        assert!(g(r#"displayName eq "tour guides""#));
        assert!(g(
            r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#
        ));
        assert!(!g(
            r#"members[value eq "2819C223-7F76-453A-919D-413861904646"]"#
        ));
        assert!(g(r#"members eq "902c246b-6245-4190-8e05-00816be7344a""#));
        assert!(!g(r#"members eq "902C246B-6245-4190-8E05-00816BE7344A""#));
        assert!(g(r#"members.display co "pepper""#));
        assert!(g(r#"members[type eq "user" and display sw "babs"]"#));
        assert!(g("members.$ref pr"));
        assert!(!g(
            r#"members[value eq "902c246b-6245-4190-8e05-00816be7344a" and $ref pr]"#
        ));
        assert!(g(r#"externalId eq null and id pr"#));
    }

    #[test]
    fn logical_operators_evaluate() {
        assert!(u(r#"userName sw "b" and name.familyName eq "jensen""#));
        assert!(!u(r#"userName sw "x" and name.familyName eq "jensen""#));
        assert!(u(r#"userName sw "x" or name.familyName eq "jensen""#));
        assert!(!u(r#"userName sw "x" or name.familyName eq "smith""#));
        assert!(u(r#"not (userName sw "x")"#));
        assert!(!u(r#"not (userName sw "b")"#));
        // `true or (false and false)` vs `(true or false) and false`.
        assert!(u(r#"active eq true or userName eq "x" and title pr"#));
        assert!(!u(r#"(active eq true or userName eq "x") and title pr"#));
        assert!(u(r#"title pr and userName eq "x" or nickName eq null"#));
    }

    #[test]
    fn matches_element_applies_value_filter_to_one_entry() {
        let p = parse_path(r#"emails[type eq "work" and value ew "example.com"]"#).unwrap();
        let filter = p.filter.unwrap();
        let doc = user();
        let emails = doc["emails"].as_array().unwrap();
        let hits: Vec<bool> = emails
            .iter()
            .map(|e| matches_element(&filter, Kind::User, &p.attr, e).unwrap())
            .collect();
        assert_eq!(hits, [true, false]);
        let e = matches_element(&filter, Kind::User, &path("userName"), &emails[0]).unwrap_err();
        assert_eq!(e.scim_type(), Some(ScimType::InvalidFilter));
    }

    #[test]
    fn validate_path_resolves_patch_targets() {
        let r = validate_path(
            &parse_path(r#"emails[type eq "work"].value"#).unwrap(),
            Kind::User,
        )
        .unwrap();
        assert_eq!(
            (r.attr.name, r.sub.map(|s| s.name)),
            ("emails", Some("value"))
        );
        let r = validate_path(&parse_path("NAME.givenname").unwrap(), Kind::User).unwrap();
        assert_eq!(
            (r.attr.name, r.sub.map(|s| s.name)),
            ("name", Some("givenName"))
        );
        let r = validate_path(
            &parse_path(r#"members[value eq "x"]"#).unwrap(),
            Kind::Group,
        )
        .unwrap();
        assert_eq!((r.attr.name, r.sub.is_none()), ("members", true));
        let r = validate_path(
            &parse_path(&format!("{ENTERPRISE_URN}:manager.value")).unwrap(),
            Kind::User,
        )
        .unwrap();
        assert_eq!(r.extension, Some(ENTERPRISE_URN));
        for (bad, kind) in [
            ("nope", Kind::User),
            (r#"emails[nope eq "x"]"#, Kind::User),
            (r#"emails[type eq "work"].nope"#, Kind::User),
            (r#"userName[value eq "x"]"#, Kind::User),
            ("active.value", Kind::User),
            (r#"emails[primary eq "maybe"]"#, Kind::User),
            ("userName", Kind::Group),
        ] {
            let e = validate_path(&parse_path(bad).unwrap(), kind).unwrap_err();
            assert_eq!(e.scim_type(), Some(ScimType::InvalidPath), "{bad}: {e}");
        }
    }

    // --- sorting support --------------------------------------------------

    #[test]
    fn values_at_flattens_and_uses_implicit_value() {
        let doc = user();
        let at = |p: &str| values_at(Kind::User, &doc, &parse_attr_path(p).unwrap()).unwrap();
        assert_eq!(at("userName"), [&json!("bjensen@example.com")]);
        assert_eq!(at("name.givenName"), [&json!("Barbara")]);
        assert_eq!(
            at("emails"),
            [&json!("bjensen@example.com"), &json!("babs@jensen.org")]
        );
        assert_eq!(at("emails.type"), [&json!("work"), &json!("home")]);
        assert_eq!(at(&format!("{ENTERPRISE_URN}:manager")), [&json!(MGR)]);
        assert_eq!(at("meta.lastModified"), [&json!("2011-05-13T04:42:34Z")]);
        assert!(at("title").is_empty());
        assert!(at("phoneNumbers").is_empty());
        let e = values_at(Kind::User, &doc, &path("nope")).unwrap_err();
        assert_eq!(e.scim_type(), Some(ScimType::InvalidPath));
        assert_eq!(leaf_of(Kind::User, &path("emails")).unwrap().name, "value");
        assert!(leaf_of(Kind::Group, &path("members")).unwrap().case_exact);
        assert_eq!(leaf_of(Kind::User, &path("name")).unwrap().name, "name");
    }

    #[test]
    fn compare_orders_by_leaf_type() {
        let leaf = |p: &str| leaf_of(Kind::User, &parse_attr_path(p).unwrap()).unwrap();
        let (user_name, external_id, modified, active) = (
            leaf("userName"),
            leaf("externalId"),
            leaf("meta.lastModified"),
            leaf("active"),
        );
        assert_eq!(
            compare(&json!("abc"), &json!("ABD"), user_name),
            Ordering::Less
        );
        assert_eq!(
            compare(&json!("ABC"), &json!("abc"), user_name),
            Ordering::Equal
        );
        assert_eq!(
            compare(&json!("B"), &json!("a"), external_id),
            Ordering::Less
        );
        assert_eq!(
            compare(&json!("b"), &json!("a"), external_id),
            Ordering::Greater
        );
        // Chronological, not textual.
        assert_eq!(
            compare(
                &json!("2011-05-13T06:00:00+02:00"),
                &json!("2011-05-13T05:00:00Z"),
                modified
            ),
            Ordering::Less
        );
        assert_eq!(
            compare(
                &json!("2011-05-13T06:00:00+02:00"),
                &json!("2011-05-13T04:00:00Z"),
                modified
            ),
            Ordering::Equal
        );
        assert_eq!(compare(&json!(false), &json!(true), active), Ordering::Less);
        assert_eq!(compare(&json!(2), &json!(10), user_name), Ordering::Less);
        assert_eq!(
            compare(&json!(2.5), &json!(-3), user_name),
            Ordering::Greater
        );
        assert_eq!(
            compare(&json!(null), &json!("a"), user_name),
            Ordering::Less
        );
    }

    #[test]
    fn compare_is_a_total_order_on_mixed_values() {
        let modified = leaf_of(Kind::User, &parse_attr_path("meta.lastModified").unwrap()).unwrap();
        let mut values = vec![
            json!("zzz"),
            json!("2011-05-13T04:42:34Z"),
            json!(null),
            json!(3),
            json!("not a date"),
            json!({"a": 1}),
            json!("2010-05-13T04:42:34+01:00"),
            json!(true),
            json!([1]),
            json!(-1.5),
            json!("AAA"),
        ];
        for _ in 0..3 {
            values.sort_by(|a, b| compare(a, b, modified));
            values.reverse();
        }
        values.sort_by(|a, b| compare(a, b, modified));
        for w in values.windows(2) {
            assert_ne!(
                compare(&w[0], &w[1], modified),
                Ordering::Greater,
                "{values:?}"
            );
        }
        assert_eq!(values[0], json!(null));
        assert_eq!(values[4], json!("2010-05-13T04:42:34+01:00"));
        assert_eq!(values[5], json!("2011-05-13T04:42:34Z"));
        assert_eq!(values[6], json!("AAA"));
    }

    #[test]
    fn numeric_attributes_compare_numerically() {
        // No numeric attribute in the schema yet: check the evaluator directly.
        let mut def = AttrDef {
            name: "n",
            ty: AttrType::Integer,
            multi: false,
            required: false,
            case_exact: false,
            mutability: schema::Mutability::ReadWrite,
            returned: schema::Returned::Default,
            uniqueness: schema::Uniqueness::None,
            canonical: &[],
            reference_types: &[],
            sub: &[],
            description: "",
        };
        let n = |x: i64| Operand::Num(x.into());
        assert!(test(&json!(10), CompareOp::Gt, &n(9), &def));
        assert!(test(&json!(10), CompareOp::Eq, &n(10), &def));
        assert!(!test(&json!(10), CompareOp::Lt, &n(2), &def));
        assert!(!test(&json!("10"), CompareOp::Eq, &n(10), &def));
        def.ty = AttrType::Decimal;
        let half = Operand::Num(Number::from_f64(0.5).unwrap());
        assert!(test(&json!(0.75), CompareOp::Ge, &half, &def));
        assert!(test(&json!(0), CompareOp::Le, &half, &def));
        assert_eq!(compare(&json!(1.5), &json!(1), &def), Ordering::Greater);
        assert!(test(&json!(u64::MAX), CompareOp::Gt, &n(i64::MAX), &def));
    }

    // --- errors -----------------------------------------------------------

    #[test]
    fn syntax_errors_are_invalid_filter() {
        for bad in [
            "",
            "   ",
            "userName",
            "userName eq",
            "userName eq bjensen",
            r#"userName foo "x""#,
            r#"userName = "x""#,
            r#"userName eq "x"#,
            r#"userName eq "x\"#,
            r#"userName eq "\q""#,
            r#"userName eq "a\u12""#,
            "userName eq \"tab\there\"",
            r#"(userName eq "x""#,
            r#"((userName eq "x")"#,
            r#"userName eq "x")"#,
            r#"userName eq "x" and"#,
            r#"userName eq "x" or or title pr"#,
            r#"and userName eq "x""#,
            r#"userName eq "x" title pr"#,
            r#"emails[type eq "work""#,
            r#"emails[type eq "work"]]"#,
            r#"emails[type eq "work" and phoneNumbers[type eq "x"]]"#,
            r#"emails[emails.type eq "work"]"#,
            r#"emails.value[type eq "work"]"#,
            "not title pr",
            "not",
            "()",
            "(",
            ")",
            "[",
            "title pr ]",
            "userName eq 1e999",
            "userName eq 01",
            "userName eq -",
            "1abc eq 1",
            "name.givenName.x pr",
            "foo:bar pr",
            "urn:foo pr",
            "title eq 'single'",
            "title pr;",
            "title eq \"x\" && title pr",
            "emails[]",
            r#"emails[type eq "work"] pr"#,
            "title pr not (title pr)",
        ] {
            let e = parse_filter(bad).expect_err(bad);
            assert_eq!(e.scim_type(), Some(ScimType::InvalidFilter), "{bad:?}: {e}");
        }
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        let detail = |s: &str| parse_filter(s).unwrap_err().detail();
        let d = detail(r#"userName eq "x" title pr"#);
        assert!(
            d.contains("expected 'and', 'or'") && d.contains("offset 16"),
            "{d}"
        );
        let d = detail(r#"userName xx "x""#);
        assert!(
            d.contains("unknown operator 'xx'") && d.contains("offset 9"),
            "{d}"
        );
        let d = detail("userName eq bjensen");
        assert!(
            d.contains("double-quoted string") && d.contains("'bjensen'"),
            "{d}"
        );
        let d = detail(r#"title eq "abc"#);
        assert!(d.contains("unterminated") && d.contains("offset 9"), "{d}");
        let d = detail("(title pr");
        assert!(
            d.contains("')'") && d.contains("end of input") && d.contains("offset 9"),
            "{d}"
        );
        let d = detail("title eq");
        assert!(d.contains("expected a value"), "{d}");
        let d = detail(r#"emails[type eq "x""#);
        assert!(d.contains("']'"), "{d}");
        // Offsets count characters, not bytes.
        let d = detail(r#"title eq "ü" ?"#);
        assert!(d.contains("offset 13"), "{d}");
    }

    #[test]
    fn schema_errors_are_invalid_filter_and_name_the_attribute() {
        for (bad, kind, names) in [
            (r#"foo eq "x""#, Kind::User, "foo"),
            (r#"name.foo eq "x""#, Kind::User, "name.foo"),
            ("userName eq true", Kind::User, "userName"),
            ("userName eq 5", Kind::User, "userName"),
            (r#"active eq "x""#, Kind::User, "active"),
            ("active eq 1", Kind::User, "active"),
            ("active gt true", Kind::User, "active"),
            (r#"active co "t""#, Kind::User, "active"),
            (
                r#"meta.created gt "not a date""#,
                Kind::User,
                "meta.created",
            ),
            ("meta.created gt 5", Kind::User, "meta.created"),
            (r#"meta.created co "2010""#, Kind::User, "meta.created"),
            ("emails co 5", Kind::User, "emails.value"),
            (r#"name eq "x""#, Kind::User, "name"),
            (r#"meta gt "x""#, Kind::User, "meta"),
            (
                r#"x509Certificates.value gt "a""#,
                Kind::User,
                "x509Certificates.value",
            ),
            ("userName gt null", Kind::User, "userName"),
            (r#"userName[value eq "x"]"#, Kind::User, "userName"),
            (r#"emails[foo eq "x"]"#, Kind::User, "emails.foo"),
            ("emails[foo pr]", Kind::User, "emails.foo"),
            (
                r#"emails[primary eq "maybe"]"#,
                Kind::User,
                "emails.primary",
            ),
            (r#"userName pr and nope pr"#, Kind::User, "nope"),
            (r#"not (emails[type eq 1])"#, Kind::User, "emails.type"),
            (r#"userName eq "x""#, Kind::Group, "userName"),
            (
                &format!(r#"{ENTERPRISE_URN}:manager.value eq "x""#),
                Kind::Group,
                "manager",
            ),
            (
                &format!(r#"{ENTERPRISE_URN}:nope eq "x""#),
                Kind::User,
                "nope",
            ),
            (
                r#"urn:example:other:2.0:User:userName eq "x""#,
                Kind::User,
                "userName",
            ),
            (r#"members.foo eq "x""#, Kind::Group, "members.foo"),
        ] {
            let e = filter_error(kind, bad);
            assert_eq!(e.scim_type(), Some(ScimType::InvalidFilter), "{bad:?}: {e}");
            assert!(e.detail().contains(names), "{bad:?}: {e}");
        }
    }

    #[test]
    fn nested_value_paths_built_in_code_are_rejected() {
        let nested = Filter::ValuePath {
            path: path("emails"),
            filter: Box::new(Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(pr("type")),
            }),
        };
        for r in [
            validate(&nested, Kind::User).map(|_| true),
            matches(&nested, Kind::User, &user()),
        ] {
            assert_eq!(r.unwrap_err().scim_type(), Some(ScimType::InvalidFilter));
        }
        let sub_then_filter = Filter::ValuePath {
            path: sub_path("emails", "value"),
            filter: Box::new(pr("type")),
        };
        assert!(validate(&sub_then_filter, Kind::User).is_err());
    }

    #[test]
    fn nesting_depth_is_limited() {
        let nested = |n: usize| format!("{}title pr{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(parse_filter(&nested(MAX_DEPTH)).unwrap(), pr("title"));
        let e = parse_filter(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(e.scim_type(), Some(ScimType::InvalidFilter));
        assert!(e.detail().contains("deeper"), "{e}");
        // Hostile inputs fail cleanly instead of overflowing the stack.
        let hostile = "(".repeat(MAX_INPUT_LEN);
        assert!(parse_filter(&hostile).is_err());
        let nots = "not (".repeat(800);
        assert!(parse_filter(&nots).unwrap_err().detail().contains("deeper"));
        let e = parse_path(&format!(
            "emails[{}type pr{}]",
            "(".repeat(70),
            ")".repeat(70)
        ))
        .unwrap_err();
        assert_eq!(e.scim_type(), Some(ScimType::InvalidPath));
        // A deep tree built in code is refused by validate and matches.
        let mut deep = pr("title");
        for _ in 0..(MAX_TREE_DEPTH + 5) {
            deep = not(deep);
        }
        assert!(validate(&deep, Kind::User).is_err());
        assert!(matches(&deep, Kind::User, &user()).is_err());
    }

    #[test]
    fn input_length_is_limited() {
        let long = format!(r#"title eq "{}""#, "x".repeat(MAX_INPUT_LEN));
        let e = parse_filter(&long).unwrap_err();
        assert_eq!(e.scim_type(), Some(ScimType::InvalidFilter));
        assert!(e.detail().contains("4096"), "{e}");
        let e = parse_path(&"a".repeat(MAX_INPUT_LEN + 1)).unwrap_err();
        assert_eq!(e.scim_type(), Some(ScimType::InvalidPath));
        let e = parse_attr_path(&"a".repeat(MAX_INPUT_LEN + 1)).unwrap_err();
        assert_eq!(e.scim_type(), Some(ScimType::InvalidPath));
        let ok = format!(r#"title eq "{}""#, "x".repeat(MAX_INPUT_LEN - 12));
        assert!(parse_filter(&ok).is_ok());
    }

    #[test]
    fn patch_path_errors_are_invalid_path() {
        for bad in [
            "",
            "   ",
            "emails[",
            r#"emails[type eq "work""#,
            r#"emails[type eq "work"]value"#,
            r#"emails[type eq "work"].value.x"#,
            r#"emails[type eq "work"].1"#,
            r#"emails[type eq "work"]]"#,
            r#"emails[type eq "work"].value extra"#,
            r#"emails.value[type eq "work"]"#,
            r#"emails[type eq]"#,
            r#"emails[type eq "work" and addresses[type eq "x"]]"#,
            "emails[]",
            "name.givenName extra",
            "name..givenName",
            "[type eq \"x\"]",
            "\"userName\"",
            "user name",
            "urn:",
            "a.b.c",
        ] {
            let e = parse_path(bad).expect_err(bad);
            assert_eq!(e.scim_type(), Some(ScimType::InvalidPath), "{bad:?}: {e}");
        }
    }

    #[test]
    fn entra_value_path_with_trailing_sub_attribute() {
        let doc = user();
        let f = parse_filter(r#"emails[type eq "work"].value eq "BJENSEN@example.com""#).unwrap();
        validate(&f, Kind::User).unwrap();
        assert!(matches(&f, Kind::User, &doc).unwrap());
        // The type and the value must hold for the same element.
        let f = parse_filter(r#"emails[type eq "home"].value eq "bjensen@example.com""#).unwrap();
        assert!(!matches(&f, Kind::User, &doc).unwrap());
        let f = parse_filter(r#"emails[type eq "home"].value pr and userName sw "bj""#).unwrap();
        assert!(matches(&f, Kind::User, &doc).unwrap());
        for bad in [
            r#"emails[type eq "work"].nope eq "x""#,
            r#"emails[type eq "work"].value"#,
            r#"emails[type eq "work"]."#,
        ] {
            let err = parse_filter(bad)
                .and_then(|f| validate(&f, Kind::User))
                .unwrap_err();
            assert_eq!(err.scim_type(), Some(ScimType::InvalidFilter), "{bad}");
        }
    }
}
