//! The grammar's own tests; those that compare it with the SDK's parser (the SDK's test
//! suite, odd files, error wording) live in cmdr-oracle.

use super::*;

#[test]
fn odd_spellings_and_dropped_sections_are_warned_about() {
    let parsed = parse(
        "[profile a]\nk = 1\n[profile  a]\nk = 2\n[notprefixed]\n[profile a]\nbad key = v\n",
        "[profile x]\n",
    )
    .expect("parses");
    let all = parsed.warnings.join("\n");
    for needle in [
        "[profile a] and [profile  a]",
        "line 5: section [notprefixed]",
        "section [profile a] (line 6): 1 key(s) ignored",
        "credentials file, line 1: section [profile x]",
    ] {
        assert!(all.contains(needle), "{needle:?} not in {all}");
    }
}

#[test]
fn lines_and_trim_match_std() {
    for text in [
        "",
        "a",
        "a\n",
        "a\r\n",
        "a\r",
        "\r\n\r\n",
        "a\n\nb",
        "a\r\r\nb\r",
        "\n",
    ] {
        assert_eq!(
            lines(text).collect::<Vec<_>>(),
            text.lines().collect::<Vec<_>>(),
            "{text:?}"
        );
    }
    for text in ["", " ", " \t a b \t", "\u{a0}a\u{a0}", "\t", "a"] {
        assert_eq!(trim(text), text.trim_matches(&[' ', '\t'][..]), "{text:?}");
    }
}

#[test]
fn sections_with_many_keys_stay_linear() {
    let mut file = String::from("[profile big]\n");
    for i in 0..20_000 {
        file.push_str(&format!("k{i} = {i}\nk{} = again\n", i / 2));
    }
    let parsed = parse(&file, "").expect("parses");
    let big = &parsed.profiles["big"].props;
    assert_eq!(big.get("k0"), Some("again"));
    assert_eq!(big.get("k19999"), Some("19999"));
    assert_eq!(big.iter().count(), 20_000);
}
