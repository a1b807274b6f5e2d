//! Globs as users write them (`*` and `?`), for function patterns and
//! process selectors alike.

/// Matches `text` against a glob with `*` (any run) and `?` (any one
/// character); without wildcards, equality. Allocates nothing: planning
/// matches every function of the binary (tens of thousands) against each
/// pattern.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let Some(wild) = pattern.find(['*', '?']) else {
        return pattern == text;
    };
    // The literal prefix decides most names at once.
    if !text.starts_with(&pattern[..wild]) {
        return false;
    }
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // The width of the UTF-8 character starting at byte `i` of the text
    // (`?` matches a character, not a byte).
    let width = |i: usize| match t[i] {
        b if b < 0x80 => 1,
        b if b >= 0xf0 => 4,
        b if b >= 0xe0 => 3,
        _ => 2,
    };
    // Two-pointer match, backtracking to the last `*`.
    let (mut pi, mut ti) = (wild, wild);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ti += width(ti);
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_p, star_t)) = star {
            let next = star_t + width(star_t);
            pi = star_p + 1;
            ti = next;
            star = Some((star_p, next));
        } else {
            return false;
        }
    }
    ti == t.len() && p[pi..].iter().all(|&c| c == b'*')
}
