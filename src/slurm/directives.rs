//! `#HOPSTAGE` directives: parsing a batch script (or a `hopstage:` job
//! comment) into a list of [`Directive`]s, with the job's variables expanded.
//!
//! Owns the directive grammar. Invariants: only the leading comment block of a
//! script is read (as `sbatch` does for `#SBATCH`); only `$SLURM_JOB_ID`,
//! `$SLURM_JOB_USER` (also `${...}`), `%j`, `%u` and `%%` are expanded — there is
//! no shell, so any other `$` or `%` sequence is an error naming the line; every
//! error is one line that says what to fix.

use std::path::PathBuf;

/// Most directives one job may carry.
pub const MAX_DIRECTIVES: usize = 64;

/// One staging instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Directive {
    /// Copy REMOTE into LOCAL before the job starts.
    Pull {
        /// Source, `ALIAS:/path`.
        remote: String,
        /// Destination directory.
        local: PathBuf,
    },
    /// Copy LOCAL to REMOTE after the job ends.
    Push {
        /// Source file or directory.
        local: PathBuf,
        /// Destination, `ALIAS:/path`.
        remote: String,
    },
    /// Where the job's stdout/stderr and summaries go (instead of the site default).
    Log {
        /// Destination prefix, `ALIAS:/path`; the job id is appended.
        remote: String,
    },
}

/// The values directives may refer to.
#[derive(Debug, Clone)]
pub struct Vars<'a> {
    /// `SLURM_JOB_ID`.
    pub job_id: &'a str,
    /// `SLURM_JOB_USER`.
    pub user: &'a str,
}

/// A directive error: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ParseError {
    /// `line 4` or `job comment`.
    pub origin: String,
    /// What to fix.
    pub message: String,
}

/// The prefix that marks a directive line.
pub const PREFIX: &str = "#HOPSTAGE";
/// The prefix that marks directives in `sbatch --comment`.
pub const COMMENT_PREFIX: &str = "hopstage:";

/// Parses the directives of a batch script. Reading stops at the first line
/// that is neither blank nor a comment, as `sbatch` does.
pub fn parse_script(text: &str, vars: &Vars<'_>) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            break;
        }
        let Some(rest) = line.strip_prefix(PREFIX) else {
            continue;
        };
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            // `#HOPSTAGEX` is some other directive.
            continue;
        }
        let origin = format!("line {}", i + 1);
        out.push(parse_one(rest.trim(), vars, &origin)?);
        check_count(&out, &origin)?;
    }
    Ok(out)
}

/// Parses a job comment of the form `hopstage: pull A B; push C D`. A comment
/// without the prefix carries no directives.
pub fn parse_comment(comment: &str, vars: &Vars<'_>) -> Result<Vec<Directive>, ParseError> {
    let Some(rest) = comment.trim().strip_prefix(COMMENT_PREFIX) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, part) in rest.split(';').enumerate() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let origin = format!("job comment, directive {}", i + 1);
        out.push(parse_one(part, vars, &origin)?);
        check_count(&out, &origin)?;
    }
    Ok(out)
}

fn check_count(out: &[Directive], origin: &str) -> Result<(), ParseError> {
    if out.len() > MAX_DIRECTIVES {
        return Err(err(
            origin,
            format!("more than {MAX_DIRECTIVES} directives: stage a parent directory instead"),
        ));
    }
    Ok(())
}

fn err(origin: &str, message: String) -> ParseError {
    ParseError {
        origin: origin.to_string(),
        message,
    }
}

fn parse_one(text: &str, vars: &Vars<'_>, origin: &str) -> Result<Directive, ParseError> {
    let words = split_words(text).map_err(|m| err(origin, m))?;
    let mut expanded = Vec::with_capacity(words.len());
    for w in &words {
        expanded.push(expand(w, vars).map_err(|m| err(origin, m))?);
    }
    let usage = "expected 'pull ALIAS:/path /local/dir', 'push /local/path ALIAS:/path' or 'log ALIAS:/path'";
    match expanded.as_slice() {
        [verb, a, b] if verb == "pull" => Ok(Directive::Pull {
            remote: a.clone(),
            local: PathBuf::from(b),
        }),
        [verb, a, b] if verb == "push" => Ok(Directive::Push {
            local: PathBuf::from(a),
            remote: b.clone(),
        }),
        [verb, a] if verb == "log" => Ok(Directive::Log { remote: a.clone() }),
        [verb, ..] if ["pull", "push", "log"].contains(&verb.as_str()) => Err(err(
            origin,
            format!(
                "'{verb}' takes {} (got {} words); {usage}",
                if verb == "log" {
                    "one argument"
                } else {
                    "two arguments"
                },
                expanded.len() - 1
            ),
        )),
        [verb, ..] => Err(err(origin, format!("unknown directive '{verb}': {usage}"))),
        [] => Err(err(origin, format!("empty directive: {usage}"))),
    }
}

/// Splits on whitespace; double quotes group words (no escapes inside).
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' | '`' | '\\' if !quoted => {
                return Err(format!(
                    "'{c}' is not allowed: directives are not run by a shell (quote with \"...\")"
                ))
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated \"".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Expands the job variables in one word.
fn expand(word: &str, vars: &Vars<'_>) -> Result<String, String> {
    const HINT: &str =
        "only $SLURM_JOB_ID, $SLURM_JOB_USER, %j, %u and %% are expanded (there is no shell)";
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(pos) = rest.find(['$', '%']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let (value, used) = if let Some(t) = tail.strip_prefix('%') {
            match t.chars().next() {
                Some('j') => (vars.job_id, 2),
                Some('u') => (vars.user, 2),
                Some('%') => ("%", 2),
                _ => {
                    return Err(format!(
                        "'{}' in '{word}': {HINT}",
                        &tail[..tail.len().min(2)]
                    ))
                }
            }
        } else {
            let names = [
                ("${SLURM_JOB_ID}", vars.job_id),
                ("${SLURM_JOB_USER}", vars.user),
                ("$SLURM_JOB_USER", vars.user),
                ("$SLURM_JOB_ID", vars.job_id),
            ];
            match names.iter().find(|(n, _)| {
                tail.starts_with(n)
                    && !tail[n.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            }) {
                Some((n, v)) => (*v, n.len()),
                None => return Err(format!("variable in '{word}': {HINT}")),
            }
        };
        out.push_str(value);
        rest = &tail[used..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars {
            job_id: "42",
            user: "alice",
        }
    }

    #[test]
    fn script_directives_in_the_leading_block_only() {
        let s = "#!/bin/bash\n#SBATCH -N 1\n\n#HOPSTAGE pull home:/proj/input /AMLFS/$SLURM_JOB_USER/in\n# a note\n#HOPSTAGE  push /AMLFS/%u/out-%j home:/proj/out/${SLURM_JOB_ID}\n#HOPSTAGE log home:/logs\necho hi\n#HOPSTAGE pull home:/late /AMLFS/late\n";
        let d = parse_script(s, &vars()).unwrap();
        assert_eq!(
            d,
            vec![
                Directive::Pull {
                    remote: "home:/proj/input".into(),
                    local: "/AMLFS/alice/in".into()
                },
                Directive::Push {
                    local: "/AMLFS/alice/out-42".into(),
                    remote: "home:/proj/out/42".into()
                },
                Directive::Log {
                    remote: "home:/logs".into()
                },
            ]
        );
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let e = parse_script("#!/bin/sh\n#HOPSTAGE pull home:/a\n", &vars()).unwrap_err();
        assert_eq!(e.origin, "line 2");
        assert!(e.message.contains("two arguments"), "{e}");
        let e = parse_script("#HOPSTAGE pull home:/$HOME /AMLFS/x\n", &vars()).unwrap_err();
        assert!(e.message.contains("no shell"), "{e}");
        let e = parse_script("#HOPSTAGE pull home:/a /AMLFS/%x\n", &vars()).unwrap_err();
        assert!(e.message.contains("%x"), "{e}");
        let e = parse_script("#HOPSTAGE fetch home:/a /b\n", &vars()).unwrap_err();
        assert!(e.message.contains("unknown directive 'fetch'"), "{e}");
        let e = parse_script("#HOPSTAGE pull home:/a /AMLFS/$(id)\n", &vars()).unwrap_err();
        assert!(e.message.contains("no shell"), "{e}");
        let e = parse_script("#HOPSTAGE pull home:/a '/AMLFS/b'\n", &vars()).unwrap_err();
        assert!(e.message.contains("not run by a shell"), "{e}");
        let e = parse_script("#HOPSTAGE pull home:/a \"/AMLFS/b\n", &vars()).unwrap_err();
        assert!(e.message.contains("unterminated"), "{e}");
        // $SLURM_JOB_IDX is not $SLURM_JOB_ID followed by X.
        let e =
            parse_script("#HOPSTAGE pull home:/a /AMLFS/$SLURM_JOB_IDX\n", &vars()).unwrap_err();
        assert!(e.message.contains("no shell"), "{e}");
    }

    #[test]
    fn quotes_percent_and_other_directives() {
        let d = parse_script(
            "#HOPSTAGEX ignored\n#HOPSTAGE pull \"home:/with space\" /AMLFS/100%%\n",
            &vars(),
        )
        .unwrap();
        assert_eq!(
            d,
            vec![Directive::Pull {
                remote: "home:/with space".into(),
                local: "/AMLFS/100%".into()
            }]
        );
    }

    #[test]
    fn comment_channel() {
        let d = parse_comment(
            "hopstage: pull home:/a /AMLFS/%u/a; push /AMLFS/%u/b home:/b;",
            &vars(),
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        assert!(parse_comment("just a note", &vars()).unwrap().is_empty());
        let e = parse_comment("hopstage: pull a", &vars()).unwrap_err();
        assert_eq!(e.origin, "job comment, directive 1");
    }

    #[test]
    fn too_many_directives() {
        let s: String = (0..=MAX_DIRECTIVES)
            .map(|i| format!("#HOPSTAGE pull home:/{i} /AMLFS/{i}\n"))
            .collect();
        assert!(parse_script(&s, &vars()).is_err());
    }
}
