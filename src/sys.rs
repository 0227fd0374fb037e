//! The system calls nix does not wrap, each `unsafe` block justified. Everything else
//! goes through nix; this is the only module with `unsafe`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

/// `swapoff(2)`: nix has no wrapper for it.
pub fn swapoff(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a swap path holds a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call; swapoff reads it
    // and has no other memory-safety preconditions.
    if unsafe { libc::swapoff(c.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
