//! HAProxy's `show stat` answer (CSV, its first line the header `# pxname,svname,...`),
//! read by column name: each copy's sessions, bytes and state.

use std::io;

/// One copy (`server` line) as HAProxy counts it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyStat {
    /// `copy0`, `copy1`, ...
    pub name: String,
    /// Connections it was given so far (`stot`).
    pub sessions: u64,
    /// Bytes from clients sent to it (`bin`) and its bytes sent back (`bout`).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Connects to it that failed (`econ`), and connections redispatched from it to
    /// another copy (`wredis`).
    pub connect_errors: u64,
    pub redispatched: u64,
    /// Its health is `UP` (or `UP 1/2`, going down, still in rotation).
    pub up: bool,
    /// Times it was taken out (`chkdown`).
    pub downs: u64,
}

/// The `server` rows of `backend` in a `show stat` answer.
///
/// # Errors
/// No header line, or a column this reader needs is missing.
pub fn parse_stats(text: &str, backend: &str) -> io::Result<Vec<CopyStat>> {
    let mut lines = text.lines();
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| io::Error::other("haproxy's stats: no header line"))?;
    let columns: Vec<&str> = header.split(',').collect();
    let at = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| io::Error::other(format!("haproxy's stats: no `{name}` column")))
    };
    let (px, sv, stot, bin, bout, econ, wredis, status, chkdown) = (
        at("pxname")?,
        at("svname")?,
        at("stot")?,
        at("bin")?,
        at("bout")?,
        at("econ")?,
        at("wredis")?,
        at("status")?,
        at("chkdown")?,
    );
    let number = |fields: &[&str], i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(lines
        .map(|line| line.split(',').collect::<Vec<&str>>())
        .filter(|f| f.get(px) == Some(&backend))
        .filter(|f| !matches!(f.get(sv), Some(&"BACKEND") | Some(&"FRONTEND") | None))
        .map(|f| CopyStat {
            name: f[sv].to_string(),
            sessions: number(&f, stot),
            bytes_in: number(&f, bin),
            bytes_out: number(&f, bout),
            connect_errors: number(&f, econ),
            redispatched: number(&f, wredis),
            up: f.get(status).is_some_and(|s| s.starts_with("UP")),
            downs: number(&f, chkdown),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of a real `show stat` from HAProxy 2.6 (columns cut after `chkdown`).
    const SAMPLE: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,\n\
fiblab,FRONTEND,,,2,2,100,2,40,60,0,0,0,,,,,OPEN,,,,,,\n\
copies,copy0,0,0,1,1,,7,26,39,,0,,0,0,0,0,UP,1,1,0,0,0,\n\
copies,copy1,0,0,0,1,,3,14,21,,0,,2,0,0,1,DOWN,1,1,0,3,1,\n\
copies,BACKEND,0,0,1,2,10,10,40,60,0,0,,2,0,0,1,UP,1,1,0,,0,\n";

    #[test]
    fn reads_each_copy_by_column_name() {
        let stats = parse_stats(SAMPLE, "copies").unwrap();
        assert_eq!(stats.len(), 2);
        assert_eq!(
            stats[0],
            CopyStat {
                name: "copy0".into(),
                sessions: 7,
                bytes_in: 26,
                bytes_out: 39,
                connect_errors: 0,
                redispatched: 0,
                up: true,
                downs: 0,
            }
        );
        assert!(!stats[1].up);
        assert_eq!(
            (
                stats[1].connect_errors,
                stats[1].redispatched,
                stats[1].downs
            ),
            (2, 1, 1)
        );
    }

    #[test]
    fn refuses_what_is_not_its_csv() {
        assert!(parse_stats("Unknown command\n", "copies").is_err());
        assert!(parse_stats("# pxname,svname\n", "copies").is_err());
    }
}
