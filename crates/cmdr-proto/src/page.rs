//! Lists in pages. `profiles` and `list_accounts` answer in one frame, which caps them at
//! [`crate::MAX_REPLY_LEN`]; their `_page` forms answer any length a page at a time, each
//! page within [`PAGE_BUDGET`] bytes of JSON (so well within [`crate::MAX_FRAME_LEN`] in
//! either codec), in name order, with a cursor for the next.

use serde::{Deserialize, Serialize};

/// In `Welcome.features` when the daemon answers `profiles_page` and `accounts_page`.
pub const FEATURE_PAGES: &str = "pages";

/// The most items one page holds, whatever `limit` asks.
pub const MAX_PAGE_ITEMS: u32 = 1000;

/// A page stops growing once its items' JSON passes this many bytes. JSON is the larger of
/// the two codecs for these items (names, `null`s and escapes are never shorter in JSON),
/// so a page fits this budget in both.
pub const PAGE_BUDGET: usize = 256 << 10;

/// Which page: the items whose names sort after `after` (`None`: from the first), at most
/// `limit` of them (at least one, at most [`MAX_PAGE_ITEMS`]). In JSON both may be left
/// out: `{"profiles_page":{}}` is the first page, as large as the daemon allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default = "most_items")]
    pub limit: u32,
}

fn most_items() -> u32 {
    MAX_PAGE_ITEMS
}

/// One page of a list in name order. `next` is the `after` of the following page, `None`
/// on the last. Between pages the list may change: an item present throughout is listed
/// exactly once; one added or removed meanwhile may or may not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T: Serialize> Page<T> {
    /// Fills a page from `items`, which follow the cursor in name order: up to `limit`
    /// items (bounded to 1..=[`MAX_PAGE_ITEMS`]) and [`PAGE_BUDGET`] bytes, and always
    /// the first one, however large. `name` gives an item's name, the cursor.
    pub fn fill<I, N>(items: I, limit: u32, name: N) -> Page<T>
    where
        I: IntoIterator<Item = T>,
        N: Fn(&T) -> &str,
    {
        let limit = limit.clamp(1, MAX_PAGE_ITEMS) as usize;
        let mut items = items.into_iter().peekable();
        let mut page = Vec::new();
        let mut bytes = 0;
        while let Some(item) = items.next_if(|_| page.len() < limit && bytes < PAGE_BUDGET) {
            bytes += json_len(&item);
            page.push(item);
        }
        let next = match (items.peek(), page.last()) {
            (Some(following), Some(last)) => Some(cursor(name(last), name(following))),
            _ => None,
        };
        Page { items: page, next }
    }
}

/// The cursor between two names that follow each other: a string `s` with `last <= s <
/// following`, as short as can be, so that "the names after `s`" start at `following` and
/// the cursor fits a request (whose frame limit is 1 MiB) unless the two names share a
/// prefix that long. A huge name, hostile or not, never stops a list.
fn cursor(last: &str, following: &str) -> String {
    let common = last
        .chars()
        .zip(following.chars())
        .take_while(|(a, b)| a == b)
        .count();
    // The prefix of `last` up to a character, with that character made larger, is after
    // `last`; past the first difference it is also before `following`.
    for (at, c) in last.char_indices().skip(common) {
        let Some(larger) = next_char(c) else {
            continue;
        };
        let mut candidate = String::with_capacity(at + larger.len_utf8());
        candidate.push_str(&last[..at]);
        candidate.push(larger);
        if candidate.as_str() < following {
            if candidate.len() < last.len() {
                return candidate;
            }
            break;
        }
    }
    last.to_owned()
}

/// The character after `c` in code-point (and so UTF-8 byte) order.
fn next_char(c: char) -> Option<char> {
    match c {
        '\u{d7ff}' => Some('\u{e000}'),
        _ => char::from_u32(u32::from(c) + 1),
    }
}

/// The length of `value` in JSON, without building it.
fn json_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; an item that cannot be serialised counts as
    // nothing here and fails when the page is encoded, as an error reply.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` names in sorted order, each `pad` bytes longer than its five digits.
    fn names(n: usize, pad: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{i:05}{}", "x".repeat(pad)))
            .collect()
    }

    fn fill(items: &[String], limit: u32) -> Page<String> {
        Page::fill(items.iter().cloned(), limit, |s| s.as_str())
    }

    #[test]
    fn a_page_stops_at_the_limit_and_names_the_next() {
        let all = names(10, 0);
        let page = fill(&all, 4);
        assert_eq!(page.items, all[..4]);
        // "00003" and "00004": the shortest cursor in between is the last name itself.
        assert_eq!(page.next.as_deref(), Some("00003"));
        // The last page has no cursor, even when it is exactly full.
        let page = fill(&all, 10);
        assert_eq!((page.items.len(), page.next), (10, None));
        assert_eq!(
            fill(&[], 5),
            Page {
                items: vec![],
                next: None
            }
        );
        // A limit of 0 still yields one item; a huge one is capped.
        assert_eq!(fill(&all, 0).items.len(), 1);
        let many = names(5_000, 0);
        assert_eq!(fill(&many, u32::MAX).items.len(), MAX_PAGE_ITEMS as usize);
    }

    #[test]
    fn a_page_stops_at_the_byte_budget_but_holds_at_least_one_item() {
        // 100 KiB names: three fit the budget's 256 KiB (the third passes it).
        let all = names(10, 100 << 10);
        let page = fill(&all, 1000);
        assert_eq!(page.items.len(), 3);
        // "00002xxx…" and "00003xxx…": the cursor "00003" is between them, and short.
        assert_eq!(page.next.as_deref(), Some("00003"));
        let encoded = serde_json::to_vec(&page).expect("json");
        assert!(encoded.len() < crate::MAX_FRAME_LEN, "{}", encoded.len());
        // One item larger than the budget is still sent, alone.
        let huge = names(2, 2 << 20);
        let page = fill(&huge, 1000);
        assert_eq!(page.items.len(), 1);
        assert!(page.next.is_some());
    }

    /// The cursor sorts at or after the last name and before the following one, so the
    /// next page starts exactly at the following name; and it is short whenever the two
    /// names part early, however long they are.
    #[test]
    fn the_cursor_is_short_and_between_the_names() {
        let huge = format!("m{}", "x".repeat(2 << 20));
        let cases = [
            (huge.as_str(), "z1", "n"),
            ("a1", "a2", "a1"),
            ("ab", "ac", "ab"),
            ("abz", "ac", "abz"),
            ("a", "a\0", "a"),
            ("apple-very-long-name", "banana", "b"),
            ("\u{d7ff}x", "\u{10ffff}", "\u{e000}"),
            ("a\u{10ffff}\u{10ffff}bcd", "b", "a\u{10ffff}\u{10ffff}c"),
        ];
        for (last, following, want) in cases {
            let got = cursor(last, following);
            assert!(last <= got.as_str() && got.as_str() < following, "{got:?}");
            assert_eq!(got, want);
        }
        // A page that ends on a huge name hands back a cursor of one character.
        let items = vec!["a1".to_owned(), huge.clone(), "z1".to_owned()];
        let page = fill(&items, 2);
        assert_eq!(page.next.as_deref(), Some("n"));
    }

    #[test]
    fn a_json_page_request_may_leave_out_both_fields() {
        let request: PageRequest = serde_json::from_str("{}").expect("json");
        assert_eq!(
            request,
            PageRequest {
                after: None,
                limit: MAX_PAGE_ITEMS
            }
        );
    }

    #[test]
    fn json_len_is_the_encoded_length() {
        let value = ("a\u{1b}b", Some(3u32), None::<bool>);
        assert_eq!(
            json_len(&value),
            serde_json::to_vec(&value).expect("json").len()
        );
    }
}
