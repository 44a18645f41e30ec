//! Ticket ids from `Refs:` and `Closes:` commit trailers, read the way git reads trailers
//! (`git interpret-trailers --parse`, `%(trailers)`): only the message's last paragraph counts,
//! and only when it is a trailer block.

/// The trailer keys that link a commit to tickets; git matches keys case-insensitively.
const TICKET_KEYS: [&str; 2] = ["refs", "closes"];

/// Prefixes git itself writes; one of them makes a mixed last paragraph a trailer block.
const GIT_GENERATED_PREFIXES: [&str; 2] = ["Signed-off-by: ", "(cherry picked from commit "];

/// Ticket ids from the `Refs:` and `Closes:` trailers of one commit message, unique, in the
/// order they appear. Values are split on commas (git does not split them); only tokens in the
/// forms `#12`, `ENG-12` and `owner/repo#12` are kept. Linear-style ids are upper-cased, since
/// `eng-12` and `ENG-12` name the same ticket.
pub fn ticket_ids(message: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (key, value) in trailers(message) {
        if TICKET_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k)) {
            for id in value.split(|c: char| c == ',' || c.is_whitespace()).filter_map(ticket_id) {
                push_unique(&mut ids, id);
            }
        }
    }
    ids
}

/// Ticket ids across the commits of a deploy range, unique, in first-seen order.
pub fn ids_in_range(messages: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for message in messages {
        for id in ticket_ids(message) {
            push_unique(&mut ids, id);
        }
    }
    ids
}

fn push_unique(ids: &mut Vec<String>, id: String) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

/// One token as a ticket id, or `None` when it is not one of the accepted forms. Punctuation
/// around it (`(#12)`, `#12.`) is dropped.
fn ticket_id(token: &str) -> Option<String> {
    let token = token.trim_matches(|c: char| matches!(c, '.' | ';' | ':' | '(' | ')' | '[' | ']'));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(number) = token.strip_prefix('#') {
        return digits(number).then(|| token.to_owned());
    }
    if let Some((repo, number)) = token.split_once('#') {
        let (owner, name) = repo.split_once('/')?;
        let owner_ok = !owner.is_empty() && owner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        return (owner_ok && name_ok && digits(number)).then(|| token.to_owned());
    }
    let (team, number) = token.rsplit_once('-')?;
    let team_ok = team.starts_with(|c: char| c.is_ascii_alphabetic()) && team.bytes().all(|b| b.is_ascii_alphanumeric());
    (team_ok && digits(number)).then(|| token.to_ascii_uppercase())
}

/// The `(key, value)` trailers of a message, in order, with folded values unfolded. Empty when
/// the last paragraph is not a trailer block.
fn trailers(message: &str) -> Vec<(String, String)> {
    // `lines()` also strips the `\r` of CRLF line endings.
    let lines: Vec<&str> = message.lines().collect();
    let Some(block) = trailer_block(&lines) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    // Whether the previous line was a trailer, so a continuation line folds into it.
    let mut in_trailer = false;
    for line in block {
        if is_comment(line) {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let (true, Some((_, value))) = (in_trailer, out.last_mut()) {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        in_trailer = false;
        if let Some(pos) = separator_position(line) {
            out.push((line[..pos].trim().to_owned(), line[pos + 1..].trim().to_owned()));
            in_trailer = true;
        }
    }
    out
}

/// The last paragraph when git would accept it as a trailer block: every line a trailer, or at
/// least 25% trailers with one of them git-generated. This follows git's
/// `find_trailer_block_start` (trailer.c), minus trailers configured in the user's git config.
fn trailer_block<'a>(lines: &'a [&'a str]) -> Option<&'a [&'a str]> {
    // The first paragraph is the subject and is never trailers.
    let end_of_title = lines.iter().position(|l| !is_comment(l) && is_blank(l))?;
    let (mut trailer_lines, mut non_trailer_lines, mut possible_continuation_lines) = (0usize, 0usize, 0usize);
    let mut recognized_prefix = false;
    let mut only_blank_so_far = true;
    for i in (end_of_title..lines.len()).rev() {
        let line = lines[i];
        if is_comment(line) {
            non_trailer_lines += possible_continuation_lines;
            possible_continuation_lines = 0;
            continue;
        }
        if is_blank(line) {
            // Trailing blank lines do not end the last paragraph; they come after it.
            if only_blank_so_far {
                continue;
            }
            non_trailer_lines += possible_continuation_lines;
            let accepted = (recognized_prefix && trailer_lines * 3 >= non_trailer_lines) || (trailer_lines > 0 && non_trailer_lines == 0);
            return accepted.then(|| &lines[i + 1..]);
        }
        only_blank_so_far = false;
        if GIT_GENERATED_PREFIXES.iter().any(|p| line.starts_with(p)) {
            trailer_lines += 1;
            possible_continuation_lines = 0;
            recognized_prefix = true;
        } else if separator_position(line).is_some() {
            trailer_lines += 1;
            possible_continuation_lines = 0;
        } else if line.starts_with(char::is_whitespace) {
            possible_continuation_lines += 1;
        } else {
            non_trailer_lines += 1 + possible_continuation_lines;
            possible_continuation_lines = 0;
        }
    }
    // The loop only ends here when nothing but the subject precedes the lines it looked at.
    None
}

/// Where the `:` of a `Token: value` line is: a token of letters, digits and `-`, optionally
/// followed by whitespace (git's `find_separator` with the default separator).
fn separator_position(line: &str) -> Option<usize> {
    let mut whitespace_found = false;
    for (i, c) in line.char_indices() {
        if c == ':' {
            return (i >= 1).then_some(i);
        }
        if !whitespace_found && (c.is_ascii_alphanumeric() || c == '-') {
            continue;
        }
        if i != 0 && (c == ' ' || c == '\t') {
            whitespace_found = true;
            continue;
        }
        return None;
    }
    None
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// Git skips comment lines (`#` by default) when it looks for the trailer block.
fn is_comment(line: &str) -> bool {
    line.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(message: &str, expected: &[&str]) {
        assert_eq!(ticket_ids(message), expected, "message:\n{message}");
    }

    /// The cases §10 of the provider facts records from git 2.47.3, plus the id forms.
    #[test]
    fn reads_trailers_like_git() {
        let cases: &[(&str, &[&str])] = &[
            // Two `Refs:` trailers; values are split on commas.
            ("feat: x\n\nRefs: ENG-123\nRefs: ENG-456, ENG-789\n", &["ENG-123", "ENG-456", "ENG-789"]),
            // Keys keep their original order across `Refs:` and `Closes:`.
            ("feat: x\n\nRefs: ENG-123\nCloses: #45\nRefs: ENG-456, ENG-789", &["ENG-123", "#45", "ENG-456", "ENG-789"]),
            // Keys match case-insensitively; the value `eng-9` is the ticket ENG-9.
            ("fix: y\n\nrefs: eng-9\nCLOSES: #3", &["ENG-9", "#3"]),
            // A folded value continues on indented lines.
            ("fix: y\n\nRefs: ENG-30,\n  ENG-31\nCloses: #1", &["ENG-30", "ENG-31", "#1"]),
            // A non-trailer line makes the paragraph prose: no trailers at all.
            ("fix: y\n\nRefs: ENG-10\nThis line is not a trailer\nCloses: #77", &[]),
            // The same with a git-generated `Signed-off-by:` is accepted (2 of 3 lines are trailers).
            ("fix: y\n\nRefs: ENG-10\nThis line is not a trailer\nSigned-off-by: A U Thor <a@example.com>", &["ENG-10"]),
            // `Closes #12` without a colon is not a trailer.
            ("fix: y\n\nCloses #12", &[]),
            // `Refs:` right after the subject, with no blank line, belongs to the subject paragraph.
            ("fix: y\nRefs: ENG-1", &[]),
            // `Refs:` followed by more prose paragraphs is not in the last paragraph.
            ("fix: y\n\nRefs: ENG-1 is related\n\nMore prose here.\n", &[]),
            // `Refs:` in the body does not count; only the trailer block does.
            ("fix: y\n\nRefs: ENG-1 was the cause.\nSee the thread.\n\nCloses: #2\n", &["#2"]),
            // A subject alone is never a trailer block.
            ("Refs: ENG-1", &[]),
            // The three id forms; other tokens are ignored, duplicates collapse.
            (
                "fix: y\n\nRefs: #12, ENG-12, acme/shop#12, acme/shop.js#3\nCloses: #12 (partial), see-also, 12",
                &["#12", "ENG-12", "acme/shop#12", "acme/shop.js#3"],
            ),
            // Other trailer keys are not ticket links.
            ("fix: y\n\nFixes: #5\nReviewed-by: Someone\nRefs: #6", &["#6"]),
            // Trailing blank lines, CRLF line endings and comment lines are tolerated.
            ("fix: y\r\n\r\nRefs: ENG-2\r\n# a comment\r\nCloses: #4\r\n\r\n\r\n", &["ENG-2", "#4"]),
            // Whitespace before the colon is allowed by git's separator rule.
            ("fix: y\n\nRefs : ENG-3", &["ENG-3"]),
            // Punctuation around an id is dropped.
            ("fix: y\n\nCloses: (#8).", &["#8"]),
            // Malformed ids are ignored.
            ("fix: y\n\nRefs: #, #1a, -12, ENG-, /repo#1, owner/#1, owner/repo#x", &[]),
            ("", &[]),
        ];
        for (message, expected) in cases {
            check(message, expected);
        }
    }

    #[test]
    fn an_indented_line_that_starts_the_paragraph_counts_against_it() {
        // Git counts it as a non-trailer line: with no git-generated trailer, the block is prose.
        check("fix: y\n\n  indented prose\nRefs: #2", &[]);
        check("fix: y\n\n  indented prose\nRefs: #2\nSigned-off-by: A <a@example.com>", &["#2"]);
    }

    #[test]
    fn ids_in_range_are_unique_across_commits_in_first_seen_order() {
        let messages = vec![
            "feat: a\n\nRefs: ENG-1, #2".to_owned(),
            "fix: b\n\nCloses: #2\nRefs: eng-1, ENG-3".to_owned(),
            "chore: c\n\nRefs: ENG-4 in the body only.\nMore prose.".to_owned(),
            "docs: d".to_owned(),
            "feat: e\n\nCloses: acme/shop#9".to_owned(),
        ];
        assert_eq!(ids_in_range(&messages), ["ENG-1", "#2", "ENG-3", "acme/shop#9"]);
        assert!(ids_in_range(&[]).is_empty());
    }
}
