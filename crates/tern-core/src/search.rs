//! PROTOCOL 5.2 search: the one normaliser every store indexes and queries
//! with (a leaf: the indexer that drives the stores is `indexer.rs`).
//!
//! Text becomes **terms**: each word (a run of letters and digits outside
//! the Chinese, Japanese and Korean scripts) lowercased, and for each run
//! of CJK characters its overlapping character pairs (a run of one
//! character: that character). A query goes through the same steps: every
//! part must match (AND), the last word also as a prefix, and a CJK run of
//! the query as the phrase of its pairs, so any substring of two or more
//! characters finds the text that holds it.
//!
//! A term reaches a store **encoded**: `x` and the lowercase hex of its
//! UTF-8 bytes. Every store's tokenizer then sees plain ASCII words of at
//! least three characters that are never stop words (MySQL's FULLTEXT
//! drops shorter tokens and a stop list; PostgreSQL's parser and SQLite's
//! tokenizer would each split other scripts their own way), and the hex of
//! a prefix is a prefix of the hex. Words are cut to [`WORD_BYTES`] (at a
//! character boundary) in text and query alike, which keeps an encoded
//! term within every engine's token length.

/// Longest word kept, in bytes; longer words are cut (text and query alike).
pub const WORD_BYTES: usize = 40;

/// One part of a query; each must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// This encoded term.
    Term(String),
    /// An encoded term that begins with this one.
    Prefix(String),
    /// These encoded terms, one after the other (a CJK run's pairs).
    Phrase(Vec<String>),
}

/// A query, normalised: at least one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub parts: Vec<Part>,
}

/// What a store is asked by [`Store::search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub terms: Terms,
    /// Only this conversation.
    pub conv: Option<String>,
    /// Only messages with `ts` below this (exclusive).
    pub before_ts: Option<i64>,
    pub limit: u32,
}

/// Whether `c` belongs to the Chinese, Japanese or Korean scripts (Han,
/// kana, Hangul), which are written without spaces between words.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF      // Hangul Jamo
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3130..=0x318F    // Hangul compatibility Jamo
        | 0x31F0..=0x31FF    // Katakana extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xA960..=0xA97F    // Hangul Jamo extended A
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xD7B0..=0xD7FF    // Hangul Jamo extended B
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // halfwidth Katakana
        | 0x20000..=0x3FFFF  // CJK extensions B and later
    )
}

/// A run of the text: a word or a CJK run.
enum Run {
    Word(String),
    Cjk(Vec<char>),
}

fn runs(text: &str) -> Vec<Run> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk = Vec::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !word.is_empty() {
                out.push(Run::Word(cut(std::mem::take(&mut word))));
            }
            cjk.push(c);
        } else if c.is_alphanumeric() {
            if !cjk.is_empty() {
                out.push(Run::Cjk(std::mem::take(&mut cjk)));
            }
            word.extend(c.to_lowercase());
        } else {
            if !word.is_empty() {
                out.push(Run::Word(cut(std::mem::take(&mut word))));
            }
            if !cjk.is_empty() {
                out.push(Run::Cjk(std::mem::take(&mut cjk)));
            }
        }
    }
    if !word.is_empty() {
        out.push(Run::Word(cut(word)));
    }
    if !cjk.is_empty() {
        out.push(Run::Cjk(cjk));
    }
    out
}

fn cut(mut w: String) -> String {
    if w.len() > WORD_BYTES {
        let mut end = WORD_BYTES;
        while !w.is_char_boundary(end) {
            end -= 1;
        }
        w.truncate(end);
    }
    w
}

/// A term as stores see it: `x` and the hex of its bytes.
pub fn encode(term: &str) -> String {
    let mut s = String::with_capacity(1 + 2 * term.len());
    s.push('x');
    for b in term.bytes() {
        s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    s
}

fn pairs(run: &[char]) -> Vec<String> {
    if run.len() == 1 {
        return vec![encode(&run[0].to_string())];
    }
    run.windows(2)
        .map(|w| encode(&w.iter().collect::<String>()))
        .collect()
}

/// The encoded terms of a text, in order, separated by spaces: what a
/// store indexes.
pub fn index_text(text: &str) -> String {
    let mut out = String::new();
    for run in runs(text) {
        let terms = match run {
            Run::Word(w) => vec![encode(&w)],
            Run::Cjk(c) => pairs(&c),
        };
        for t in terms {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&t);
        }
    }
    out
}

/// A conversation as an indexed term: `c` and the hex of its id. A store
/// may index it with each message's terms, so that a query can name the
/// conversations it may find (a word term begins with `x`: the two never
/// meet, not even as a prefix).
pub fn conv_term(conv: &str) -> String {
    let mut s = encode(conv);
    s.replace_range(..1, "c");
    s
}

/// The indexed text of a stored message: its text content for `kind`
/// `text` (a JSON string), nothing for other kinds or a recalled message.
pub fn index_message(kind: &str, content: Option<&str>) -> String {
    if kind != "text" {
        return String::new();
    }
    match content.and_then(|c| serde_json::from_str::<String>(c).ok()) {
        Some(text) => index_text(&text),
        None => String::new(),
    }
}

/// A query's parts; `None` when it holds no word at all.
pub fn query_terms(q: &str) -> Option<Terms> {
    let runs = runs(q);
    let last = runs.len().checked_sub(1)?;
    let parts = runs
        .into_iter()
        .enumerate()
        .map(|(i, run)| match run {
            Run::Word(w) if i == last => Part::Prefix(encode(&w)),
            Run::Word(w) => Part::Term(encode(&w)),
            // One character: every pair it begins, or itself alone.
            Run::Cjk(c) if c.len() == 1 => Part::Prefix(encode(&c[0].to_string())),
            Run::Cjk(c) => {
                let mut p = pairs(&c);
                if p.len() == 1 {
                    Part::Term(p.remove(0))
                } else {
                    Part::Phrase(p)
                }
            }
        })
        .collect();
    Some(Terms { parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(t: &str) -> String {
        let hex = &t[1..];
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    fn words(text: &str) -> Vec<String> {
        index_text(text).split(' ').map(dec).collect()
    }

    #[test]
    fn words_and_pairs() {
        assert_eq!(words("Hello, WORLD go!"), ["hello", "world", "go"]);
        assert_eq!(
            words("我们去北京 ok"),
            ["我们", "们去", "去北", "北京", "ok"]
        );
        assert_eq!(words("a中b"), ["a", "中", "b"]);
        assert_eq!(words("Straße ÉTÉ"), ["straße", "été"]);
        assert_eq!(index_text("  ,,, "), "");
    }

    #[test]
    fn long_words_are_cut() {
        let w = "é".repeat(30);
        let t = words(&w);
        assert_eq!(t[0], "é".repeat(20));
        assert!(encode(&t[0]).len() <= 84);
    }

    #[test]
    fn queries() {
        assert_eq!(query_terms(" ,. "), None);
        let t = query_terms("Go home").unwrap();
        assert_eq!(
            t.parts,
            vec![Part::Term(encode("go")), Part::Prefix(encode("home"))]
        );
        let t = query_terms("北京大学").unwrap();
        assert_eq!(
            t.parts,
            vec![Part::Phrase(vec![
                encode("北京"),
                encode("京大"),
                encode("大学")
            ])]
        );
        assert_eq!(
            query_terms("北京").unwrap().parts,
            vec![Part::Term(encode("北京"))]
        );
        assert!(encode("hom").len() < encode("home").len());
        assert!(encode("home").starts_with(&encode("hom")));
    }

    #[test]
    fn only_text_is_indexed() {
        assert_eq!(index_message("text", Some("\"Hi\"")), encode("hi"));
        assert_eq!(index_message("image", Some("\"Hi\"")), "");
        assert_eq!(index_message("text", None), "");
    }

    #[test]
    fn conv_terms_are_no_word_terms() {
        assert_eq!(conv_term("dm:a:b"), "c646d3a613a62");
        assert!(!conv_term("xy").starts_with(&encode("")));
    }
}
