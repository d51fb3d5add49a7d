//! HTTP Basic authentication as Bitcoin Core does it: a `.cookie` file with a random
//! password for local tools, and/or a configured `rpcuser`/`rpcpassword` pair
//! (`src/httprpc.cpp` `RPCAuthorized`, `src/rpc/request.cpp` `GenerateAuthCookie`).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bitcoin::Network;
use rand::RngCore as _;

/// User name written into the cookie file, Core's `COOKIEAUTH_USER`.
pub const COOKIE_USER: &str = "__cookie__";

/// File name of the cookie, Core's `COOKIEAUTH_FILE`.
pub const COOKIE_FILE: &str = ".cookie";

/// Where the cookie lives for `datadir` and `network`, Core's layout
/// (`src/chainparamsbase.cpp` data directories): `<datadir>/.cookie` on mainnet,
/// `<datadir>/testnet3/.cookie`, `<datadir>/testnet4/.cookie`,
/// `<datadir>/signet/.cookie` and `<datadir>/regtest/.cookie` otherwise.
pub fn cookie_path(datadir: &Path, network: Network) -> PathBuf {
    match crate::settings::network_folder(network) {
        Some(sub) => datadir.join(sub).join(COOKIE_FILE),
        None => datadir.join(COOKIE_FILE),
    }
}

/// A cookie file written for this run: `__cookie__:<64 hex digits>` (32 random bytes),
/// readable by the owner only, deleted when dropped or by [`remove`](Self::remove).
///
/// As in Core, it is written to `<path>.tmp` first and renamed into place, so a client
/// never reads a half-written cookie.
#[derive(Debug)]
pub struct Cookie {
    path: PathBuf,
    password: String,
    removed: bool,
}

impl Cookie {
    /// Writes a fresh cookie to `path` (replacing any left by an earlier run), creating
    /// missing parent directories. On unix the file has mode 0600, as Core's umask 077
    /// gives it.
    ///
    /// # Errors
    /// Any I/O error creating the directories, writing the temporary file or renaming it.
    pub fn create(path: impl Into<PathBuf>) -> io::Result<Cookie> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();

        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        // The mode above applies only when the file is created; a stale `.tmp` from a
        // crashed run keeps its old mode unless it is set explicitly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        // No trailing newline: Core writes none, and some clients keep the whole file.
        file.write_all(format!("{COOKIE_USER}:{password}").as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        Ok(Cookie {
            path,
            password,
            removed: false,
        })
    }

    /// The cookie file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The user name, always [`COOKIE_USER`].
    pub fn user(&self) -> &str {
        COOKIE_USER
    }

    /// The random password: 64 lowercase hex digits.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Deletes the cookie file now (Core's `DeleteAuthCookie` at shutdown).
    ///
    /// # Errors
    /// An I/O error other than the file being gone already.
    pub fn remove(mut self) -> io::Result<()> {
        self.removed = true;
        remove_if_present(&self.path)
    }
}

impl Drop for Cookie {
    fn drop(&mut self) {
        if !self.removed {
            // Nothing to report to at drop time; a leftover cookie is overwritten by the
            // next run anyway.
            let _ = remove_if_present(&self.path);
        }
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The credentials the server accepts: any number of `user:password` pairs (the cookie's,
/// a configured `rpcuser`/`rpcpassword`, or both).
///
/// An empty set accepts nobody, like Core when it has neither a cookie nor a password.
#[derive(Clone, Default)]
pub struct RpcAuth {
    /// Each accepted credential as the `user:password` string Basic auth carries.
    credentials: Vec<Vec<u8>>,
}

impl std::fmt::Debug for RpcAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("RpcAuth")
            .field("credentials", &self.credentials.len())
            .finish()
    }
}

impl RpcAuth {
    /// Accepts nobody until credentials are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts the cookie's `__cookie__:<password>`.
    pub fn with_cookie(self, cookie: &Cookie) -> Self {
        self.with_user_password(cookie.user(), cookie.password())
    }

    /// Accepts `user`/`password` (Core's `-rpcuser`/`-rpcpassword`). Both empty is
    /// ignored, as in Core, so an unset pair never opens the server.
    pub fn with_user_password(mut self, user: &str, password: &str) -> Self {
        if !user.is_empty() || !password.is_empty() {
            self.credentials
                .push(format!("{user}:{password}").into_bytes());
        }
        self
    }

    /// Whether an `Authorization` header value grants access: `Basic ` (case-sensitive,
    /// as Core), then base64 of `user:password` (surrounding whitespace ignored), compared
    /// in constant time against each credential.
    pub(crate) fn authorizes(&self, header: &[u8]) -> bool {
        let Some(encoded) = header.strip_prefix(b"Basic ") else {
            return false;
        };
        let encoded = encoded.trim_ascii();
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        // Core refuses a decoded value without a colon before comparing anything.
        if !decoded.contains(&b':') {
            return false;
        }
        // Check every credential, without stopping early, so timing says nothing about
        // which (if any) matched.
        self.credentials.iter().fold(false, |ok, cred| {
            timing_resistant_equal(&decoded, cred) | ok
        })
    }
}

/// Core's `TimingResistantEqual`: the time taken depends only on `a`'s length.
fn timing_resistant_equal(a: &[u8], b: &[u8]) -> bool {
    if b.is_empty() {
        return a.is_empty();
    }
    let mut acc = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        acc |= usize::from(x ^ b[i % b.len()]);
    }
    acc == 0
}
