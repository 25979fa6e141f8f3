//! Signed video links (issue 24): `<base>/videos/s/<exp>/<sig>/{task_id}.mp4` opens in a
//! `<video>` tag, a browser tab or a chat assistant's preview, none of which can send an
//! `Authorization` header. The signature is HMAC-SHA256 over the file name and the expiry (unix
//! seconds) with a server secret; the bearer token never goes into a URL. The link still ends in
//! `.mp4` (clients guess the type from it). A link names one file, for
//! [`LINK_TTL`]; `get_task` hands out a fresh one.
//!
//! The secret: `I2V_MCP_LINK_SECRET` / `[http] link_secret` when set (replicas on several
//! machines must share it), else `<data_dir>/video-links.key`, 32 random bytes made on first use
//! (mode 0600), so every server on one data dir signs alike and links survive a restart.

use std::path::Path;
use std::time::Duration;

use ring::hmac;

use crate::error::Error;

/// How long a signed link opens its file.
pub const LINK_TTL: Duration = Duration::from_secs(3600);
/// The key file in the data dir.
pub const KEY_FILE: &str = "video-links.key";
const KEY_BYTES: usize = 32;

pub struct LinkSigner {
    key: hmac::Key,
    ttl: Duration,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LinkSigner {
    pub fn new(secret: &[u8]) -> LinkSigner {
        LinkSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ttl: LINK_TTL,
        }
    }

    /// The configured secret, else the data dir's key file (made now if missing).
    pub fn load(data_dir: &Path, configured: Option<&str>) -> Result<LinkSigner, Error> {
        if let Some(s) = configured {
            if s.len() < KEY_BYTES {
                return Err(Error::invalid_input(format!(
                    "the video link secret is too short: at least {KEY_BYTES} characters"
                ))
                .with_next_step("make one with `openssl rand -hex 32` (I2V_MCP_LINK_SECRET)"));
            }
            return Ok(LinkSigner::new(s.as_bytes()));
        }
        let path = data_dir.join(KEY_FILE);
        let io = |e: std::io::Error| {
            Error::internal(format!("cannot read or make '{}': {e}", path.display()))
                .with_next_step("make the data dir writable, or set I2V_MCP_LINK_SECRET")
        };
        match std::fs::read(&path) {
            Ok(key) if key.len() >= KEY_BYTES => return Ok(LinkSigner::new(&key)),
            Ok(_) => {
                return Err(Error::internal(format!(
                    "'{}' holds fewer than {KEY_BYTES} bytes: delete it to make a new one (links handed out so far stop opening)",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        // Written whole to a private temporary file, then published with link(2), which fails
        // if the name exists: a server starting beside this one (per-call servers start
        // together) reads either no file or the whole key, never a half-written one.
        let key: [u8; KEY_BYTES] = rand::random();
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let tmp = data_dir.join(format!(
            ".{KEY_FILE}.{}.{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 6]>())
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = opts.open(&tmp).and_then(|mut f| {
            use std::io::Write;
            f.write_all(&key).and_then(|()| f.sync_all())
        });
        let published = written.and_then(|()| std::fs::hard_link(&tmp, &path));
        let _ = std::fs::remove_file(&tmp);
        match published {
            Ok(()) => Ok(LinkSigner::new(&key)),
            // Another server on this data dir made it first: use theirs (complete: it was
            // linked only once written).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let key = std::fs::read(&path).map_err(io)?;
                if key.len() < KEY_BYTES {
                    return Err(Error::internal(format!(
                        "'{}' holds fewer than {KEY_BYTES} bytes: delete it to make a new one",
                        path.display()
                    )));
                }
                Ok(LinkSigner::new(&key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The path under the server's base (`/videos/s/<exp>/<sig>/<file>`) that opens `file`
    /// until now + TTL.
    pub fn path(&self, file: &str) -> String {
        let exp = chrono::Utc::now().timestamp() + self.ttl.as_secs() as i64;
        self.path_until(file, exp)
    }

    /// The path that opens `file` until `exp` (unix seconds).
    pub fn path_until(&self, file: &str, exp: i64) -> String {
        let tag = hmac::sign(&self.key, message(file, exp).as_bytes());
        format!("/videos/s/{exp}/{}/{file}", hex::encode(tag.as_ref()))
    }

    /// Whether `exp` and `sig` open `file` now.
    pub fn verify(&self, file: &str, exp: &str, sig: &str) -> bool {
        let (Ok(exp), Ok(sig)) = (exp.parse::<i64>(), hex::decode(sig)) else {
            return false;
        };
        exp >= chrono::Utc::now().timestamp()
            && hmac::verify(&self.key, message(file, exp).as_bytes(), &sig).is_ok()
    }
}

fn message(file: &str, exp: i64) -> String {
    format!("i2v-mcp video link v1\n{file}\n{exp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (exp, sig) of a signed path.
    fn parts(path: &str) -> (String, String) {
        let p: Vec<&str> = path.split('/').collect();
        assert_eq!((p[1], p[2]), ("videos", "s"), "{path}");
        (p[3].to_string(), p[4].to_string())
    }

    #[test]
    fn a_link_opens_its_file_until_it_expires() {
        let s = LinkSigner::new(&[7; 32]);
        let path = s.path("tsk_1.mp4");
        assert!(path.ends_with("/tsk_1.mp4"), "{path}");
        let (exp, sig) = parts(&path);
        assert!(s.verify("tsk_1.mp4", &exp, &sig));
        assert!(!s.verify("tsk_2.mp4", &exp, &sig), "another file");
        let later = (exp.parse::<i64>().unwrap() + 60).to_string();
        assert!(!s.verify("tsk_1.mp4", &later, &sig), "a longer life");
        assert!(!LinkSigner::new(&[8; 32]).verify("tsk_1.mp4", &exp, &sig));
        let past = chrono::Utc::now().timestamp() - 1;
        let (exp, sig) = parts(&s.path_until("tsk_1.mp4", past));
        assert!(!s.verify("tsk_1.mp4", &exp, &sig), "expired");
        assert!(!s.verify("tsk_1.mp4", "x", "zz"));
    }

    #[test]
    fn the_key_file_is_made_once_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let a = LinkSigner::load(dir.path(), None).unwrap();
        let b = LinkSigner::load(dir.path(), None).unwrap();
        let (exp, sig) = parts(&a.path("f.mp4"));
        assert!(b.verify("f.mp4", &exp, &sig));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(LinkSigner::load(dir.path(), Some("short")).is_err());
    }

    #[test]
    fn servers_starting_together_sign_alike() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let signers: Vec<LinkSigner> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| LinkSigner::load(dir.path(), None).unwrap()))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let (exp, sig) = parts(&signers[0].path("f.mp4"));
            for s in &signers {
                assert!(s.verify("f.mp4", &exp, &sig));
            }
            let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(names.len(), 1, "no temporary file is left");
        }
    }
}
