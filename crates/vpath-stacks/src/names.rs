//! Which pages a piece of request text names: `Page_N` titles (with `_`, ` ` or `+`, raw or URL-encoded, as
//! SQL literals, URLs and cache keys write them) and, given MediaWiki's page ids, the keys and queries that name a
//! page by its id (`pcache:idhash:54-0!canonical`, `revision-row-1.29:wikidb:54:54`, `page_id = 54`).

use std::collections::{BTreeSet, HashMap};

/// Decodes `%XX` escapes (invalid ones are kept as they are) and `+` as a space.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The numbers N of every `Page_N` title in `text` (also `Page N`, `Page+N`, `Page%5FN`, `Page%20N`, `Page\_N`).
/// `Page` must not follow a letter or digit, and N is all the digits that follow (so `Page_10` is never 1).
pub fn titles_named(text: &str) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for t in [text.to_string(), url_decode(text)] {
        let b = t.as_bytes();
        let mut from = 0;
        while let Some(off) = t[from..].find("Page") {
            let at = from + off;
            from = at + 4;
            if at > 0 && b[at - 1].is_ascii_alphanumeric() {
                continue;
            }
            let mut j = at + 4;
            if j < b.len() && b[j] == b'\\' {
                j += 1;
            }
            if j >= b.len() || !matches!(b[j], b'_' | b' ' | b'+') {
                continue;
            }
            j += 1;
            let digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                continue;
            }
            if let Ok(n) = t[j..j + digits].parse() {
                out.insert(n);
            }
        }
    }
    out
}

/// The title a request asks for: the `title=` parameter of a URL or query string, or the last path segment
/// after `/wiki/` or `index.php/`; URL-decoded, spaces as underscores.
pub fn requested_title(target: &str) -> Option<String> {
    let query = target.split_once('?').map_or(target, |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    for kv in query.split('&') {
        if let Some(v) = kv.strip_prefix("title=") {
            return Some(url_decode(v).replace(' ', "_"));
        }
    }
    let path = target.split('?').next().unwrap_or("");
    for marker in ["/wiki/", "index.php/"] {
        if let Some((_, t)) = path.split_once(marker) {
            if !t.is_empty() {
                return Some(url_decode(t).replace(' ', "_"));
            }
        }
    }
    None
}

/// `Page_N` as a whole title, N.
pub fn page_of_title(title: &str) -> Option<u32> {
    let n = title.strip_prefix("Page_")?;
    if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok()
}

/// A pattern naming a page by id: literal text, `*` (any run of characters other than `:`, `'`, space) and one
/// `{id}` (digits, which must not be followed by another digit).
#[derive(Clone, Debug)]
pub struct IdPattern {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Lit(String),
    Star,
    Id,
}

impl IdPattern {
    pub fn new(p: &str) -> IdPattern {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = p;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("{id}") {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Id);
                rest = r;
            } else if let Some(r) = rest.strip_prefix('*') {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Star);
                rest = r;
            } else {
                let c = rest.chars().next().unwrap();
                lit.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        IdPattern { parts }
    }

    /// Every id this pattern finds anywhere in `text`.
    pub fn ids(&self, text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        for start in 0..text.len() {
            if !text.is_char_boundary(start) {
                continue;
            }
            if let Some(id) = self.match_at(text, start, 0, None) {
                out.push(id);
            }
        }
        out
    }

    fn match_at(&self, text: &str, pos: usize, part: usize, id: Option<u64>) -> Option<u64> {
        let Some(p) = self.parts.get(part) else {
            return id;
        };
        let rest = &text[pos..];
        match p {
            Part::Lit(l) => rest
                .starts_with(l.as_str())
                .then(|| self.match_at(text, pos + l.len(), part + 1, id))?,
            Part::Id => {
                let n = rest.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 || n > 18 {
                    return None;
                }
                let v = rest[..n].parse().ok()?;
                self.match_at(text, pos + n, part + 1, Some(v))
            }
            Part::Star => {
                let max = rest
                    .bytes()
                    .take_while(|c| !matches!(c, b':' | b'\'' | b' '))
                    .count();
                (0..=max).find_map(|k| self.match_at(text, pos + k, part + 1, id))
            }
        }
    }
}

/// What names a page: titles always, ids when the page-id map is known.
#[derive(Clone, Debug, Default)]
pub struct Namer {
    /// MediaWiki page id -> N of `Page_N`.
    pub page_ids: HashMap<u64, u32>,
    pub key_patterns: Vec<IdPattern>,
    pub sql_patterns: Vec<IdPattern>,
}

/// MediaWiki 1.39's cache keys that carry a page id (seen on this stack's page views).
pub const MEDIAWIKI_KEY_PATTERNS: &[&str] = &[
    "pcache:idhash:{id}-",
    "pcache:idoptions:{id}",
    "page-content-model:{id}",
    "page-restrictions:v1:{id}:",
    "revision-row-1.29:*:{id}:",
    "page-recent-delete:*:{id}",
];

/// SQL conditions that name a page by id.
pub const MEDIAWIKI_SQL_PATTERNS: &[&str] = &[
    "page_id = {id}",
    "rev_page = {id}",
    "pp_page = {id}",
    "cl_from = {id}",
    "pl_from = {id}",
    "tl_from = {id}",
];

impl Namer {
    pub fn mediawiki(page_ids: HashMap<u64, u32>) -> Namer {
        Namer {
            page_ids,
            key_patterns: MEDIAWIKI_KEY_PATTERNS
                .iter()
                .map(|p| IdPattern::new(p))
                .collect(),
            sql_patterns: MEDIAWIKI_SQL_PATTERNS
                .iter()
                .map(|p| IdPattern::new(p))
                .collect(),
        }
    }

    fn by_id(&self, text: &str, patterns: &[IdPattern], out: &mut BTreeSet<u32>) {
        if self.page_ids.is_empty() {
            return;
        }
        for p in patterns {
            for id in p.ids(text) {
                if let Some(&n) = self.page_ids.get(&id) {
                    out.insert(n);
                }
            }
        }
    }

    /// Pages an SQL statement names.
    pub fn in_sql(&self, sql: &str) -> BTreeSet<u32> {
        let mut out = titles_named(sql);
        self.by_id(sql, &self.sql_patterns, &mut out);
        out
    }

    /// Pages a memcached command (its keys) names.
    pub fn in_key(&self, key: &str) -> BTreeSet<u32> {
        let mut out = titles_named(key);
        self.by_id(key, &self.key_patterns, &mut out);
        out
    }
}

/// Reads `page_id<TAB>title` lines (what `stack.sh pages` writes to page-ids.tsv); other titles are ignored.
pub fn parse_page_ids(text: &str) -> HashMap<u64, u32> {
    text.lines()
        .filter_map(|l| {
            let (id, title) = l.split_once('\t')?;
            Some((id.trim().parse().ok()?, page_of_title(title.trim())?))
        })
        .collect()
}

/// Whitespace runs as one space, trimmed: how query texts are compared.
pub fn normalize_sql(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn titles_in_sql_urls_and_keys() {
        assert_eq!(
            titles_named("WHERE page_title = 'Page_37' LIMIT 1"),
            set(&[37])
        );
        assert_eq!(
            titles_named("page_title IN ('Page_1','Page_10')"),
            set(&[1, 10])
        );
        assert_eq!(
            titles_named("/index.php?title=Page%5F7&action=view"),
            set(&[7])
        );
        assert_eq!(titles_named("title=Page+8"), set(&[8]));
        assert_eq!(titles_named("key:Page%2012:x"), set(&[12]));
        assert_eq!(titles_named("LIKE 'Page\\_5%'"), set(&[5]));
        // not page titles
        assert_eq!(
            titles_named("Main_Page and page_title and MyPage_3 and Page_ and Pages_4"),
            set(&[])
        );
    }

    #[test]
    fn requested_titles() {
        assert_eq!(
            requested_title("/index.php?title=Page_7").as_deref(),
            Some("Page_7")
        );
        assert_eq!(
            requested_title("/index.php?action=raw&title=Page%207").as_deref(),
            Some("Page_7")
        );
        assert_eq!(
            requested_title("title=Page+9&x=1").as_deref(),
            Some("Page_9")
        );
        assert_eq!(requested_title("/wiki/Page_3").as_deref(), Some("Page_3"));
        assert_eq!(requested_title("/load.php?modules=site"), None);
        assert_eq!(page_of_title("Page_12"), Some(12));
        assert_eq!(page_of_title("Page_012"), None);
        assert_eq!(page_of_title("Talk:Page_12"), None);
        assert_eq!(page_of_title("Page_12x"), None);
    }

    #[test]
    fn ids_in_keys_and_sql() {
        let ids: HashMap<u64, u32> = [(54, 42), (13, 1), (22, 10)].into_iter().collect();
        let n = Namer::mediawiki(ids);
        assert_eq!(
            n.in_key("get wikidb:pcache:idhash:54-0!canonical"),
            set(&[42])
        );
        assert_eq!(
            n.in_key("get WANCache:global:revision-row-1.29:wikidb:22:22|#|v"),
            set(&[10])
        );
        assert_eq!(
            n.in_key("get WANCache:wikidb:page-restrictions:v1:13:13|#|v"),
            set(&[1])
        );
        // 540 is not 54; unknown ids name nothing
        assert_eq!(n.in_key("get wikidb:pcache:idoptions:540"), set(&[]));
        assert_eq!(
            n.in_key("get WANCache:global:rdbms-server-readonly:127.0.0.1%3A3306:wikidb:|#|v"),
            set(&[])
        );
        assert_eq!(
            n.in_sql("SELECT x FROM revision WHERE rev_page = 54 AND rev_id = 13"),
            set(&[42])
        );
    }

    #[test]
    fn url_decoding_keeps_bad_escapes() {
        assert_eq!(url_decode("a%41%zz%4"), "aA%zz%4");
        assert_eq!(url_decode("%"), "%");
    }

    #[test]
    fn page_ids_file() {
        let m = parse_page_ids("13\tPage_1\n22\tPage_10\n1\tMain_Page\nbad line\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[&22], 10);
    }
}
