//! Named shared-memory objects: creation, opening, the common header, removal.
//!
//! Every object created here (POSIX shm object in `/dev/shm`, or a regular file for file-backed
//! regions) has the same shape:
//!
//! ```text
//! offset 0      ObjectHeader (48 bytes, rest of the first 4096-byte page reserved)
//!                 magic u64 = "FMQRSOBJ", layout version u32, kind u32, total size u64,
//!                 data offset u64 (= 4096), creator pid u32, creator euid u32, creation time ns u64
//! offset 4096   data area (allocator, management tables, region bytes, ...)
//! ```
//!
//! The header is written before the object becomes visible and never changes afterwards.
//! [`SharedObject::open`] validates magic, version, kind and size, so opening a foreign object,
//! an object of another fairmq-rs layout version or of another kind is a typed error
//! ([`Error::BadMagic`], [`Error::VersionMismatch`], [`Error::KindMismatch`],
//! [`Error::CorruptObject`]), never undefined behaviour.
//!
//! **Creation is atomic.** An object is built under a temporary name
//! (`fmq_<id>_tmp.<pid>.<n>.<suffix>`) created with `shm_open(O_CREAT|O_EXCL)`, its space is
//! reserved with `posix_fallocate` (never a bare `ftruncate`: a full `/dev/shm` is an
//! [`Error::InsufficientSpace`] at creation naming the bytes needed, the bytes free and the option
//! to change, instead of a SIGBUS on first touch), it is mapped, its header and contents are
//! initialised, and only then is it published under its final name with `link(2)`, which fails
//! if the name exists.
//!
//! **Sparse objects** ([`CreateOptions::sparse`], used by managed segments) are sized with
//! `ftruncate` but reserve only their header page at creation; whoever touches another page
//! first reserves it with [`SharedObject::commit`] (`posix_fallocate` of that range: on a shared
//! descriptor the reservation is visible to every process that maps the object). The rule that
//! makes this safe is that **no page is read or written before it was reserved**, so a full
//! filesystem is an error of the commit, never a SIGBUS on first touch. The managed segment's
//! allocator ([`crate::alloc`]) keeps track of what is reserved and upholds the rule. So an object that is visible under its final name is always complete;
//! a failed creation unlinks the temporary object and leaves nothing behind. While it is being
//! built the temporary object is `flock`ed, so a cleanup can tell an in-progress creation from one
//! whose creator died. This relies on glibc's (and musl's) `shm_open` keeping objects as files in
//! `/dev/shm` (Linux only).
//!
//! Objects are mapped whole and shared (`MAP_SHARED`) with memmap2's [`MmapRaw`]. Different
//! processes map an object at different addresses: everything inside refers to other places by
//! **offset from the object start**, never by pointer.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};

/// Where POSIX shared-memory objects live on Linux.
pub const SHM_DIR: &str = "/dev/shm";
/// Size of the header page at the start of every object; the data area starts here.
pub const HEADER_SIZE: u64 = 4096;
/// The first 8 bytes of every fairmq-rs object (`"FMQRSOBJ"` little-endian).
pub const OBJECT_MAGIC: u64 = u64::from_le_bytes(*b"FMQRSOBJ");
/// Version of the shared-memory layouts of this crate (header, allocator, management segment).
/// Processes of different layout versions refuse each other's objects.
/// Version 2: the allocator's heap header records how much of a managed segment is reserved.
pub const LAYOUT_VERSION: u32 = 2;
/// Default permission bits of created objects: the session's user only (FairMQ's 0644 let
/// every local user read every payload). See [`Access`].
pub const DEFAULT_MODE: u32 = 0o600;
/// Permission bits of the objects of a session shared with a group (`--shm-group`).
pub const GROUP_MODE: u32 = 0o660;

/// Who may open the objects of a session: its user only (mode 0600, the default), or its user
/// and one group (mode 0660, group ownership set with `fchown`). The creator of a session's
/// management segment decides (`--shm-group`); every later object of the session, created by
/// whichever process, takes the owner group and mode of the management segment, so a session
/// never mixes private and shared objects. The bits are set with `fchmod` (the umask does not
/// apply) before the object is published under its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Inherit from the session's management segment if the object belongs to a session whose
    /// management segment exists, else [`Access::Private`].
    #[default]
    Session,
    /// Mode 0600.
    Private,
    /// Mode 0660, owned by this group.
    Group(u32),
}

impl Access {
    /// The mode and group for an object at `loc` (see [`Access::Session`]).
    pub fn resolve(self, loc: &Location) -> (u32, Option<u32>) {
        match self {
            Access::Private => (DEFAULT_MODE, None),
            Access::Group(g) => (GROUP_MODE, Some(g)),
            Access::Session => session_access(loc).unwrap_or((DEFAULT_MODE, None)),
        }
    }
}

/// The access of the session that `loc` belongs to, read from its management segment.
fn session_access(loc: &Location) -> Option<(u32, Option<u32>)> {
    let file = loc.fs_path();
    let name = file.file_name()?.to_str()?;
    let (id, ty) = crate::ids::parse_object_name(name)?;
    if ty == crate::ids::ObjectType::Management {
        return None;
    }
    let meta = std::fs::metadata(Path::new(SHM_DIR).join(id.management_name())).ok()?;
    if meta.mode() & 0o060 != 0 {
        Some((GROUP_MODE, Some(meta.gid())))
    } else {
        Some((DEFAULT_MODE, None))
    }
}

/// Sets the mode and (if given) the group of a freshly created object.
pub(crate) fn apply_access(
    fd: libc::c_int,
    name: &str,
    (mode, group): (u32, Option<u32>),
) -> Result<()> {
    if let Some(g) = group {
        // SAFETY: fchown on a descriptor we own; uid -1 leaves the owner as it is.
        if unsafe { libc::fchown(fd, u32::MAX, g) } != 0 {
            return Err(Error::io(
                "fchown (--shm-group: is the user a member of that group?)",
                name,
                io::Error::last_os_error(),
            ));
        }
    }
    // SAFETY: fchmod on a descriptor we own.
    if unsafe { libc::fchmod(fd, mode as libc::mode_t) } != 0 {
        return Err(Error::io("fchmod", name, io::Error::last_os_error()));
    }
    Ok(())
}
/// The option named in [`Error::InsufficientSpace`] unless the caller says otherwise.
pub const DEFAULT_SIZE_OPTION: &str = "--shm-segment-size";

/// What an object holds; stored in its header and checked on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ObjectKind {
    /// `fmq_<id>_mng`: session info, counters, registries.
    Management = 1,
    /// `fmq_<id>_m_<n>`: a managed segment (allocator + message buffers).
    ManagedSegment = 2,
    /// `fmq_<id>_rg_<n>`: an unmanaged region.
    Region = 3,
    /// `fmq_<id>_rgq_<n>`: a region's acknowledgement queue.
    RegionQueue = 4,
    /// `fmq_<id>_rrc_<n>`: a region's reference-count segment.
    RegionRefCount = 5,
    /// `fmq_<id>_ms`: the monitor marker.
    MonitorMarker = 6,
}

impl ObjectKind {
    /// Every kind, in numeric order.
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Management,
        ObjectKind::ManagedSegment,
        ObjectKind::Region,
        ObjectKind::RegionQueue,
        ObjectKind::RegionRefCount,
        ObjectKind::MonitorMarker,
    ];

    /// The kind stored as `v`, if any.
    pub fn from_u32(v: u32) -> Option<ObjectKind> {
        Self::ALL.into_iter().find(|k| *k as u32 == v)
    }

    /// A human-readable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Management => "management segment",
            ObjectKind::ManagedSegment => "managed segment",
            ObjectKind::Region => "unmanaged region",
            ObjectKind::RegionQueue => "region queue",
            ObjectKind::RegionRefCount => "region reference count segment",
            ObjectKind::MonitorMarker => "monitor marker",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The on-shm header at offset 0 of every object.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawHeader {
    magic: u64,
    version: u32,
    kind: u32,
    total_size: u64,
    data_offset: u64,
    creator_pid: u32,
    creator_euid: u32,
    created_unix_ns: u64,
}

const _: () = assert!(std::mem::size_of::<RawHeader>() <= HEADER_SIZE as usize);

/// Writes the header of a new object of `kind` and `total_size` bytes, created by this
/// process now, at the start of `map`, which nobody else knows yet.
fn write_header(map: &MmapRaw, kind: ObjectKind, total_size: u64) {
    let header = RawHeader {
        magic: OBJECT_MAGIC,
        version: LAYOUT_VERSION,
        kind: kind as u32,
        total_size,
        data_offset: HEADER_SIZE,
        creator_pid: std::process::id(),
        creator_euid: crate::ids::effective_uid(),
        created_unix_ns: now_unix_ns(),
    };
    // SAFETY: every object's mapping is at least HEADER_SIZE bytes (the size of every object
    // includes its header), page-aligned and writable, and no other process knows the new
    // object yet.
    unsafe { std::ptr::write(map.as_mut_ptr() as *mut RawHeader, header) };
}

/// The header of an opened object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// What the object holds.
    pub kind: ObjectKind,
    /// Total size in bytes, header included.
    pub size: u64,
    /// Offset of the data area.
    pub data_offset: u64,
    /// Process id of the creator.
    pub creator_pid: u32,
    /// Effective user id of the creator.
    pub creator_euid: u32,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
}

/// Where an object lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// A POSIX shared-memory object, by name without the leading `/` (e.g. `fmq_<id>_mng`).
    Shm(String),
    /// A regular file (file-backed unmanaged regions), by path.
    File(PathBuf),
}

impl Location {
    /// A POSIX shared-memory object named `name` (no leading `/`).
    pub fn shm(name: impl Into<String>) -> Location {
        Location::Shm(name.into())
    }

    /// A regular file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Location {
        Location::File(path.into())
    }

    /// The name (shm objects) or path (files) used in messages.
    pub fn display_name(&self) -> String {
        match self {
            Location::Shm(n) => n.clone(),
            Location::File(p) => p.display().to_string(),
        }
    }

    /// The object's path in the filesystem (`/dev/shm/<name>` for shm objects).
    pub fn fs_path(&self) -> PathBuf {
        match self {
            Location::Shm(n) => Path::new(SHM_DIR).join(n),
            Location::File(p) => p.clone(),
        }
    }

    /// The directory whose filesystem holds the object.
    pub fn dir(&self) -> PathBuf {
        match self {
            Location::Shm(_) => PathBuf::from(SHM_DIR),
            Location::File(p) => match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            Location::Shm(n) if n.is_empty() || n.contains('/') || n.len() > 250 => {
                Err(Error::InvalidArgument(format!(
                    "invalid shared memory object name '{n}': must be 1 to 250 characters without '/'"
                )))
            }
            Location::File(p) if p.file_name().is_none() => Err(Error::InvalidArgument(format!(
                "invalid file path '{}' for a shared memory object",
                p.display()
            ))),
            _ => Ok(()),
        }
    }

    /// A unique temporary sibling used while building the object.
    fn tmp_sibling(&self) -> Location {
        use std::sync::atomic::AtomicU64 as Counter;
        static COUNTER: Counter = Counter::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tmp_name = |name: &str| -> String {
            // fmq_<id>_<suffix> → fmq_<id>_tmp.<pid>.<n>.<suffix>, so that it is recognisably
            // an object of the same session (and removed by its cleanup).
            if let Some(rest) = name.strip_prefix("fmq_") {
                if let Some((id, suffix)) = rest.split_once('_') {
                    return format!("fmq_{id}_tmp.{pid}.{n}.{suffix}");
                }
            }
            format!("{name}.tmp.{pid}.{n}")
        };
        match self {
            Location::Shm(name) => Location::Shm(tmp_name(name)),
            Location::File(p) => {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Location::File(p.with_file_name(tmp_name(&name)))
            }
        }
    }

    fn c_path(&self) -> Result<CString> {
        let bytes = match self {
            Location::Shm(n) => format!("/{n}").into_bytes(),
            Location::File(p) => p.as_os_str().as_bytes().to_vec(),
        };
        CString::new(bytes).map_err(|_| {
            Error::InvalidArgument(format!("'{}' contains a NUL byte", self.display_name()))
        })
    }
}

/// How a process holds an object's `flock` for as long as it keeps the object open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlockMode {
    /// `LOCK_SH`: one of possibly many users (liveness of a session).
    Shared,
    /// `LOCK_EX`: the only user (e.g. the running monitor's marker).
    Exclusive,
}

impl FlockMode {
    fn op(self) -> libc::c_int {
        match self {
            FlockMode::Shared => libc::LOCK_SH,
            FlockMode::Exclusive => libc::LOCK_EX,
        }
    }
}

/// Options for [`SharedObject::create`].
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Total size in bytes, header included (at least [`HEADER_SIZE`]).
    pub size: u64,
    /// Who may open the object (see [`Access`]).
    pub access: Access,
    /// mlock the mapping after creation.
    pub lock_memory: bool,
    /// Zero the data area after creation (tmpfs hands out zeroed pages anyway; this also touches
    /// every page).
    pub zero: bool,
    /// Keep this flock on the object for as long as it is open (`None`: no lock after creation).
    pub flock: Option<FlockMode>,
    /// The option that sets the size, named in [`Error::InsufficientSpace`].
    pub size_option: String,
    /// Compare the size against the free space (statvfs) before reserving it. `posix_fallocate`
    /// detects a full filesystem too, but only after it has taken all the remaining space; the
    /// pre-check fails fast. Disable only to exercise the fallocate path. Not used for sparse
    /// objects, which reserve nothing but their header at creation.
    pub space_precheck: bool,
    /// Reserve only the header page at creation (`ftruncate` to the size, `posix_fallocate` of
    /// the first [`HEADER_SIZE`] bytes): `init` and every later user must [`SharedObject::commit`]
    /// a range before touching it (see the module documentation). Ignored (everything is
    /// reserved) when `zero` or `lock_memory` is set, which touch every page.
    pub sparse: bool,
}

impl CreateOptions {
    /// Defaults for an object of `size` bytes: the session's access (0600 unless the session
    /// is shared with a group), no mlock, no zeroing, no flock,
    /// size option `--shm-segment-size`, space pre-check on, everything reserved at creation.
    pub fn new(size: u64) -> CreateOptions {
        CreateOptions {
            size,
            access: Access::Session,
            lock_memory: false,
            zero: false,
            flock: None,
            size_option: DEFAULT_SIZE_OPTION.to_owned(),
            space_precheck: true,
            sparse: false,
        }
    }

    /// Whether creation reserves only the header page (see [`CreateOptions::sparse`]).
    fn reserves_lazily(&self) -> bool {
        self.sparse && !self.zero && !self.lock_memory
    }
}

/// Options for [`SharedObject::open`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Map read-only (observers such as the monitor's view mode). Writes are refused by the
    /// higher-level APIs.
    pub read_only: bool,
    /// mlock the mapping after opening.
    pub lock_memory: bool,
    /// Take this flock (blocking) and keep it while the object is open. Opening fails with
    /// [`Error::NotFound`] if the object was removed while waiting for the lock.
    pub flock: Option<FlockMode>,
}

/// A mapped, validated shared-memory object (see the module documentation).
///
/// Dropping it unmaps the object and closes its descriptor (releasing its flock); it does not
/// remove the object: use [`SharedObject::remove`].
pub struct SharedObject {
    location: Location,
    name: String,
    file: File,
    map: MmapRaw,
    kind: ObjectKind,
    size: u64,
    read_only: bool,
    created: bool,
}

impl std::fmt::Debug for SharedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedObject")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("size", &self.size)
            .field("read_only", &self.read_only)
            .field("created", &self.created)
            .finish()
    }
}

/// Removes a (temporary) object when dropped, unless disarmed.
struct UnlinkOnDrop(Option<Location>);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        if let Some(loc) = self.0.take() {
            let _ = sys_unlink(&loc);
        }
    }
}

fn sys_open(loc: &Location, flags: libc::c_int, mode: u32) -> Result<OwnedFd, io::Error> {
    let path = loc
        .c_path()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let fd = match loc {
        // SAFETY: path is a valid NUL-terminated string that outlives the call.
        Location::Shm(_) => unsafe {
            libc::shm_open(path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::mode_t)
        },
        // SAFETY: as above; open with O_CREAT reads the mode argument.
        Location::File(_) => unsafe {
            libc::open(
                path.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                mode as libc::c_uint,
            )
        },
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly opened descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sys_unlink(loc: &Location) -> Result<(), io::Error> {
    let path = loc
        .c_path()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let rc = match loc {
        // SAFETY: path is a valid NUL-terminated string.
        Location::Shm(_) => unsafe { libc::shm_unlink(path.as_ptr()) },
        // SAFETY: path is a valid NUL-terminated string.
        Location::File(_) => unsafe { libc::unlink(path.as_ptr()) },
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `flock(fd, op)`, retried on EINTR.
pub(crate) fn flock_fd(fd: RawFd, op: libc::c_int) -> Result<(), io::Error> {
    loop {
        // SAFETY: flock has no memory-safety preconditions; fd is a descriptor we own.
        let rc = unsafe { libc::flock(fd, op) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// `posix_fallocate(fd, start, end - start)`, retried on EINTR. On tmpfs a failed call releases
/// the pages it had reserved itself.
fn fallocate(file: &File, start: u64, end: u64) -> Result<(), io::Error> {
    let too_large = || io::Error::from_raw_os_error(libc::EFBIG);
    let off = libc::off_t::try_from(start).map_err(|_| too_large())?;
    let len = libc::off_t::try_from(end - start).map_err(|_| too_large())?;
    loop {
        // SAFETY: posix_fallocate only operates on the descriptor, which `file` owns.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), off, len) } {
            0 => return Ok(()),
            libc::EINTR => continue,
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Whether a failed `posix_fallocate` means that the filesystem has no room.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EFBIG))
}

/// Bytes available to unprivileged users in the filesystem holding `dir` (statvfs).
pub fn free_space(dir: &Path) -> Result<u64, io::Error> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: path is NUL-terminated; st is valid for writes of a statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so it initialised st.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl SharedObject {
    /// Creates a new object (fails with [`Error::AlreadyExists`] if the name is taken).
    pub fn create(loc: &Location, kind: ObjectKind, opts: &CreateOptions) -> Result<SharedObject> {
        Self::create_with(loc, kind, opts, |_| Ok(()))
    }

    /// Creates a new object, running `init` on the mapped, headed object before it is published
    /// under its final name: no other process can observe the object before `init` returned.
    /// If `init` fails, nothing is left behind.
    pub fn create_with<F>(
        loc: &Location,
        kind: ObjectKind,
        opts: &CreateOptions,
        init: F,
    ) -> Result<SharedObject>
    where
        F: FnOnce(&SharedObject) -> Result<()>,
    {
        loc.validate()?;
        let name = loc.display_name();
        if opts.size < HEADER_SIZE {
            return Err(Error::InvalidArgument(format!(
                "size {} of '{name}' is smaller than the {HEADER_SIZE}-byte object header",
                opts.size
            )));
        }
        let len = usize::try_from(opts.size).map_err(|_| {
            Error::InvalidArgument(format!("size {} of '{name}' is too large", opts.size))
        })?;
        let off_len = libc::off_t::try_from(opts.size).map_err(|_| {
            Error::InvalidArgument(format!("size {} of '{name}' is too large", opts.size))
        })?;

        let tmp = loc.tmp_sibling();
        let fd = sys_open(
            &tmp,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            DEFAULT_MODE,
        )
        .map_err(|e| Error::io("create", tmp.display_name(), e))?;
        let mut guard = UnlinkOnDrop(Some(tmp.clone()));
        let file = File::from(fd);
        apply_access(file.as_raw_fd(), &name, opts.access.resolve(loc))?;
        let lock = opts.flock.unwrap_or(FlockMode::Shared).op();
        flock_fd(file.as_raw_fd(), lock | libc::LOCK_NB)
            .map_err(|e| Error::io("flock", tmp.display_name(), e))?;

        let dir = loc.dir();
        let space_error = |free: u64| Error::InsufficientSpace {
            name: name.clone(),
            dir: dir.display().to_string(),
            needed: opts.size,
            free,
            option: opts.size_option.clone(),
        };
        let lazy = opts.reserves_lazily();
        if opts.space_precheck && !lazy {
            let free =
                free_space(&dir).map_err(|e| Error::io("statvfs", dir.display().to_string(), e))?;
            if opts.size > free {
                return Err(space_error(free));
            }
        }
        let reserved = if lazy {
            // SAFETY: ftruncate only operates on the descriptor we own.
            if unsafe { libc::ftruncate(file.as_raw_fd(), off_len) } != 0 {
                return Err(Error::io(
                    "ftruncate",
                    name.clone(),
                    io::Error::last_os_error(),
                ));
            }
            HEADER_SIZE
        } else {
            opts.size
        };
        match fallocate(&file, 0, reserved) {
            Ok(()) => {}
            Err(e) if is_no_space(&e) => {
                // The kernel releases what it reserved; report the free space after that.
                let mut err = space_error(free_space(&dir).unwrap_or(0));
                if let Error::InsufficientSpace { needed, .. } = &mut err {
                    *needed = reserved;
                }
                return Err(err);
            }
            Err(e) => return Err(Error::io("posix_fallocate", name.clone(), e)),
        }
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| Error::io("mmap", name.clone(), e))?;
        write_header(&map, kind, opts.size);
        let mut obj = SharedObject {
            location: tmp.clone(),
            name: name.clone(),
            file,
            map,
            kind,
            size: opts.size,
            read_only: false,
            created: true,
        };
        if opts.zero {
            // SAFETY: the object is not published yet; nobody else uses its data area.
            unsafe { obj.zero_data() };
        }
        init(&obj)?;
        if opts.lock_memory {
            obj.lock_memory()?;
        }
        // Publish: link(2) fails with EEXIST instead of replacing an existing object.
        let from = CString::new(tmp.fs_path().as_os_str().as_bytes()).map_err(|_| {
            Error::InvalidArgument(format!("'{}' contains a NUL byte", tmp.display_name()))
        })?;
        let to = CString::new(loc.fs_path().as_os_str().as_bytes())
            .map_err(|_| Error::InvalidArgument(format!("'{name}' contains a NUL byte")))?;
        // SAFETY: both paths are valid NUL-terminated strings.
        let rc = unsafe { libc::link(from.as_ptr(), to.as_ptr()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EEXIST) {
                Error::AlreadyExists { name }
            } else {
                Error::io("link", name, e)
            });
        }
        guard.0 = None;
        let _ = sys_unlink(&tmp);
        obj.location = loc.clone();
        if opts.flock.is_none() {
            flock_fd(obj.file.as_raw_fd(), libc::LOCK_UN)
                .map_err(|e| Error::io("flock", obj.name.clone(), e))?;
        }
        Ok(obj)
    }

    /// An object of `kind` in plain process memory: an anonymous `memfd` (no name in
    /// `/dev/shm`, nothing to clean up, gone with the last handle), with the same header, sizes
    /// and reservation rules as [`SharedObject::create_with`] (`opts.sparse` reserves lazily;
    /// [`SharedObject::commit`] works on it). For tests, property tests and models of the
    /// structures that live in shared memory, which then need no `/dev/shm`. `name` only
    /// appears in messages (as `memfd:<name>`).
    pub fn in_memory(
        name: &str,
        kind: ObjectKind,
        opts: &CreateOptions,
        init: impl FnOnce(&SharedObject) -> Result<()>,
    ) -> Result<SharedObject> {
        let shown = format!("memfd:{name}");
        if opts.size < HEADER_SIZE {
            return Err(Error::InvalidArgument(format!(
                "size {} of '{shown}' is smaller than the {HEADER_SIZE}-byte object header",
                opts.size
            )));
        }
        let too_large =
            || Error::InvalidArgument(format!("size {} of '{shown}' is too large", opts.size));
        let len = usize::try_from(opts.size).map_err(|_| too_large())?;
        let off_len = libc::off_t::try_from(opts.size).map_err(|_| too_large())?;
        let cname = CString::new(name)
            .map_err(|_| Error::InvalidArgument(format!("'{name}' contains a NUL byte")))?;
        // SAFETY: a valid NUL-terminated name; memfd_create returns a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io("memfd_create", shown, io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: ftruncate only operates on the descriptor we own.
        if unsafe { libc::ftruncate(file.as_raw_fd(), off_len) } != 0 {
            return Err(Error::io("ftruncate", shown, io::Error::last_os_error()));
        }
        let reserved = if opts.reserves_lazily() {
            HEADER_SIZE
        } else {
            opts.size
        };
        fallocate(&file, 0, reserved).map_err(|e| Error::io("posix_fallocate", &shown, e))?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| Error::io("mmap", shown.clone(), e))?;
        write_header(&map, kind, opts.size);
        let obj = SharedObject {
            location: Location::File(PathBuf::from(&shown)),
            name: shown,
            file,
            map,
            kind,
            size: opts.size,
            read_only: false,
            created: true,
        };
        if opts.zero {
            // SAFETY: nobody else uses the object.
            unsafe { obj.zero_data() };
        }
        init(&obj)?;
        Ok(obj)
    }

    /// Opens and validates an existing object of `kind`.
    pub fn open(loc: &Location, kind: ObjectKind, opts: &OpenOptions) -> Result<SharedObject> {
        loc.validate()?;
        let name = loc.display_name();
        let flags = if opts.read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        };
        let fd = sys_open(loc, flags, 0).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound { name: name.clone() },
            _ => Error::io("open", name.clone(), e),
        })?;
        let file = File::from(fd);
        if let Some(mode) = opts.flock {
            flock_fd(file.as_raw_fd(), mode.op())
                .map_err(|e| Error::io("flock", name.clone(), e))?;
            let meta = file
                .metadata()
                .map_err(|e| Error::io("fstat", name.clone(), e))?;
            if meta.nlink() == 0 {
                // Removed while we waited for the lock.
                return Err(Error::NotFound { name });
            }
        }
        let len = file
            .metadata()
            .map_err(|e| Error::io("fstat", name.clone(), e))?
            .len();
        if len < HEADER_SIZE {
            return Err(Error::CorruptObject {
                name,
                reason: format!(
                    "its size ({len} bytes) is smaller than the {HEADER_SIZE}-byte header"
                ),
            });
        }
        let map_len = usize::try_from(len).map_err(|_| Error::CorruptObject {
            name: name.clone(),
            reason: format!("its size ({len} bytes) cannot be mapped"),
        })?;
        let mut mo = MmapOptions::new();
        mo.len(map_len);
        let map = if opts.read_only {
            mo.map_raw_read_only(&file)
        } else {
            mo.map_raw(&file)
        }
        .map_err(|e| Error::io("mmap", name.clone(), e))?;
        // SAFETY: the mapping holds at least HEADER_SIZE bytes, is page-aligned, RawHeader
        // consists of plain integers (every bit pattern is valid), and the header is immutable
        // after publication.
        let h = unsafe { std::ptr::read(map.as_ptr() as *const RawHeader) };
        if h.magic != OBJECT_MAGIC {
            return Err(Error::BadMagic {
                name,
                found: h.magic,
            });
        }
        if h.version != LAYOUT_VERSION {
            return Err(Error::VersionMismatch {
                name,
                found: h.version,
                expected: LAYOUT_VERSION,
            });
        }
        let found = ObjectKind::from_u32(h.kind);
        if found != Some(kind) {
            return Err(Error::KindMismatch {
                name,
                found: found
                    .map(|k| k.as_str().to_owned())
                    .unwrap_or_else(|| format!("unknown (kind {})", h.kind)),
                expected: kind.as_str(),
            });
        }
        if h.total_size != len || h.data_offset != HEADER_SIZE {
            return Err(Error::CorruptObject {
                name,
                reason: format!(
                    "header says {} bytes with data at {}, but the object has {len} bytes",
                    h.total_size, h.data_offset
                ),
            });
        }
        let obj = SharedObject {
            location: loc.clone(),
            name,
            file,
            map,
            kind,
            size: len,
            read_only: opts.read_only,
            created: false,
        };
        if opts.lock_memory {
            obj.lock_memory()?;
        }
        Ok(obj)
    }

    /// Opens the object, or creates it (with `init`) if it does not exist. Returns whether this
    /// call created it. Races between processes are resolved by the atomic publication: exactly
    /// one creator wins, the others open its object.
    pub fn open_or_create_with<F>(
        loc: &Location,
        kind: ObjectKind,
        create: &CreateOptions,
        open: &OpenOptions,
        mut init: F,
    ) -> Result<(SharedObject, bool)>
    where
        F: FnMut(&SharedObject) -> Result<()>,
    {
        let mut last = None;
        for _ in 0..100 {
            match Self::open(loc, kind, open) {
                Ok(o) => return Ok((o, false)),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            match Self::create_with(loc, kind, create, &mut init) {
                Ok(o) => return Ok((o, true)),
                Err(e @ Error::AlreadyExists { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NotFound {
            name: loc.display_name(),
        }))
    }

    /// Removes the object's name. Returns `Ok(false)` if it did not exist. Processes that have
    /// it mapped keep their mapping (no SIGBUS); the memory is freed when the last one unmaps.
    pub fn remove(loc: &Location) -> Result<bool> {
        loc.validate()?;
        match sys_unlink(loc) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(Error::io("unlink", loc.display_name(), e)),
        }
    }

    /// Whether an object with this name exists.
    pub fn exists(loc: &Location) -> bool {
        std::fs::symlink_metadata(loc.fs_path()).is_ok()
    }

    /// Name (shm objects) or path (files).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the object lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// What it holds.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// Total size in bytes, header included.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Offset of the data area (= [`HEADER_SIZE`]).
    pub fn data_offset(&self) -> u64 {
        HEADER_SIZE
    }

    /// Size of the data area.
    pub fn data_len(&self) -> u64 {
        self.size - HEADER_SIZE
    }

    /// Whether the mapping is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether this handle created the object.
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// Start of the mapping in this process. Addresses differ between processes: store offsets.
    /// Writing through it is only allowed if the mapping is not read-only, and only under the
    /// protocol of the object's kind.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Start of the data area in this process.
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: HEADER_SIZE <= size, so the result stays inside the mapping.
        unsafe { self.as_ptr().add(HEADER_SIZE as usize) }
    }

    /// The object's header.
    pub fn info(&self) -> ObjectInfo {
        // SAFETY: see `open`: in bounds, aligned, plain integers, immutable.
        let h = unsafe { std::ptr::read(self.map.as_ptr() as *const RawHeader) };
        ObjectInfo {
            kind: self.kind,
            size: h.total_size,
            data_offset: h.data_offset,
            creator_pid: h.creator_pid,
            creator_euid: h.creator_euid,
            created_unix_ns: h.created_unix_ns,
        }
    }

    /// The open descriptor (e.g. for `flock`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Reserves the pages of `[start, end)` (clamped to the object) in the backing filesystem
    /// with `posix_fallocate`, so that touching them can never SIGBUS. Idempotent and cheap for
    /// pages already reserved; on a shared descriptor the reservation is visible to every
    /// process that maps the object. Fails with `ENOSPC` when the filesystem is full, reserving
    /// nothing.
    pub fn commit(&self, start: u64, end: u64) -> Result<(), io::Error> {
        let end = end.min(self.size);
        if start >= end {
            return Ok(());
        }
        fallocate(&self.file, start, end)
    }

    /// Bytes the object occupies in its filesystem (`st_blocks * 512`): what has been reserved
    /// or touched, not its size.
    pub fn allocated_bytes(&self) -> Result<u64> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| Error::io("fstat", self.name.clone(), e))?;
        Ok(meta.blocks() * 512)
    }

    /// Locks the whole mapping in RAM (mlock).
    pub fn lock_memory(&self) -> Result<()> {
        self.map.lock().map_err(|source| Error::MemoryLock {
            name: self.name.clone(),
            source,
        })
    }

    /// Fills the data area with zeros.
    ///
    /// # Safety
    /// No other thread or process may be using the data area (e.g. before publication, or for an
    /// unmanaged region that nobody uses yet). The mapping must not be read-only.
    pub unsafe fn zero_data(&self) {
        // SAFETY: the data area lies inside the writable mapping; the caller guarantees that
        // nobody else accesses it concurrently.
        unsafe { std::ptr::write_bytes(self.data_ptr(), 0, self.data_len() as usize) };
    }

    /// A reference to a `T` at `offset` in the mapping.
    ///
    /// # Safety
    /// Every bit pattern must be a valid `T`, and `T` must only be accessed through atomic or
    /// interior-mutable operations that are sound under concurrent access from other processes
    /// (atomics, [`crate::sync::RawRobustMutex`], or structs of those). Panics if the range is out
    /// of bounds or misaligned.
    pub(crate) unsafe fn ref_at<T>(&self, offset: u64) -> &T {
        let size = std::mem::size_of::<T>() as u64;
        let align = std::mem::align_of::<T>() as u64;
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.size)
                && offset.is_multiple_of(align),
            "internal error: access of {size} bytes at offset {offset} outside of '{}' ({} bytes) or misaligned",
            self.name,
            self.size
        );
        // SAFETY: in bounds and aligned (checked above; the mapping is page-aligned); validity of
        // the bit pattern and concurrency are the caller's contract. The mapping outlives &self.
        unsafe { &*(self.as_ptr().add(offset as usize) as *const T) }
    }

    /// The 64-bit atomic at `offset` (8-aligned, in bounds, else panic).
    pub(crate) fn atomic_u64(&self, offset: u64) -> &AtomicU64 {
        // SAFETY: every bit pattern is a valid AtomicU64 and atomics are sound across processes.
        unsafe { self.ref_at::<AtomicU64>(offset) }
    }

    /// The 32-bit atomic at `offset` (4-aligned, in bounds, else panic).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn atomic_u32(&self, offset: u64) -> &AtomicU32 {
        // SAFETY: every bit pattern is a valid AtomicU32 and atomics are sound across processes.
        unsafe { self.ref_at::<AtomicU32>(offset) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestSession;

    #[test]
    fn create_open_roundtrip() {
        let s = TestSession::new("seg-roundtrip");
        let loc = Location::shm(s.id.region_name(1));
        let mut opts = CreateOptions::new(HEADER_SIZE + 8192);
        opts.zero = true;
        opts.lock_memory = true;
        let a = SharedObject::create_with(&loc, ObjectKind::Region, &opts, |o| {
            o.atomic_u64(HEADER_SIZE).store(42, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert!(a.was_created());
        assert_eq!(a.size(), HEADER_SIZE + 8192);
        assert_eq!(a.data_len(), 8192);
        assert_eq!(a.kind(), ObjectKind::Region);
        let info = a.info();
        assert_eq!(info.creator_pid, std::process::id());
        assert_eq!(info.creator_euid, crate::ids::effective_uid());
        // no temporary object left
        assert_eq!(s.objects(), vec![s.id.region_name(1)]);

        let b = SharedObject::open(&loc, ObjectKind::Region, &OpenOptions::default()).unwrap();
        assert!(!b.was_created());
        assert_ne!(
            a.as_ptr(),
            b.as_ptr(),
            "two mappings at different addresses"
        );
        assert_eq!(b.atomic_u64(HEADER_SIZE).load(Ordering::Relaxed), 42);
        b.atomic_u64(HEADER_SIZE + 8).store(7, Ordering::Relaxed);
        assert_eq!(a.atomic_u64(HEADER_SIZE + 8).load(Ordering::Relaxed), 7);
        let ro = SharedObject::open(
            &loc,
            ObjectKind::Region,
            &OpenOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(ro.is_read_only());
        assert_eq!(ro.atomic_u64(HEADER_SIZE + 8).load(Ordering::Relaxed), 7);

        let err = SharedObject::create(&loc, ObjectKind::Region, &opts).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert!(SharedObject::remove(&loc).unwrap());
        assert!(!SharedObject::remove(&loc).unwrap());
        let err =
            SharedObject::open(&loc, ObjectKind::Region, &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        // the mappings survive removal
        assert_eq!(a.atomic_u64(HEADER_SIZE).load(Ordering::Relaxed), 42);
        drop((a, b, ro));
        s.assert_clean();
    }

    #[test]
    fn failed_init_leaves_nothing() {
        let s = TestSession::new("seg-init-fail");
        let loc = Location::shm(s.id.segment_name(0));
        let err = SharedObject::create_with(
            &loc,
            ObjectKind::ManagedSegment,
            &CreateOptions::new(HEADER_SIZE * 2),
            |_| Err(Error::InvalidArgument("boom".into())),
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        s.assert_clean();
    }

    #[test]
    fn header_mismatches_are_typed_errors() {
        let s = TestSession::new("seg-mismatch");
        let loc = Location::shm(s.id.region_queue_name(3));
        let obj = SharedObject::create(
            &loc,
            ObjectKind::RegionQueue,
            &CreateOptions::new(HEADER_SIZE * 2),
        )
        .unwrap();
        let err = SharedObject::open(&loc, ObjectKind::ManagedSegment, &OpenOptions::default())
            .unwrap_err();
        assert!(matches!(err, Error::KindMismatch { .. }), "{err}");
        assert!(err.to_string().contains("region queue"), "{err}");

        // Another layout version.
        obj.atomic_u32(8)
            .store(LAYOUT_VERSION + 1, Ordering::Relaxed);
        let err =
            SharedObject::open(&loc, ObjectKind::RegionQueue, &OpenOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::VersionMismatch { found, .. } if found == LAYOUT_VERSION + 1),
            "{err}"
        );
        // A foreign object.
        obj.atomic_u64(0).store(0x1234, Ordering::Relaxed);
        let err =
            SharedObject::open(&loc, ObjectKind::RegionQueue, &OpenOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::BadMagic { found: 0x1234, .. }),
            "{err}"
        );
        // Restored header, but a wrong size in it.
        obj.atomic_u64(0).store(OBJECT_MAGIC, Ordering::Relaxed);
        obj.atomic_u32(8).store(LAYOUT_VERSION, Ordering::Relaxed);
        obj.atomic_u64(16).store(HEADER_SIZE * 3, Ordering::Relaxed);
        let err =
            SharedObject::open(&loc, ObjectKind::RegionQueue, &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, Error::CorruptObject { .. }), "{err}");
        drop(obj);
        SharedObject::remove(&loc).unwrap();

        // An object too small to hold a header (created by someone else with ftruncate).
        let raw = Location::shm(s.id.region_name(4));
        let fd = sys_open(&raw, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600).unwrap();
        // SAFETY: fd is a valid descriptor we own.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), 100) }, 0);
        let err =
            SharedObject::open(&raw, ObjectKind::Region, &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, Error::CorruptObject { .. }), "{err}");
        // A large foreign object full of zeros.
        // SAFETY: as above.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), 65536) }, 0);
        let err =
            SharedObject::open(&raw, ObjectKind::Region, &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, Error::BadMagic { found: 0, .. }), "{err}");
        SharedObject::remove(&raw).unwrap();
        s.assert_clean();
    }

    #[test]
    fn larger_than_free_space_is_a_typed_error() {
        let s = TestSession::new("seg-nospace");
        let loc = Location::shm(s.id.segment_name(0));
        let free = free_space(Path::new(SHM_DIR)).unwrap();
        let size = free + (1 << 30);
        let err = SharedObject::create(&loc, ObjectKind::ManagedSegment, &CreateOptions::new(size))
            .unwrap_err();
        match &err {
            Error::InsufficientSpace {
                needed,
                free: f,
                option,
                dir,
                ..
            } => {
                assert_eq!(*needed, size);
                assert!(*f < size);
                assert_eq!(option, "--shm-segment-size");
                assert_eq!(dir, SHM_DIR);
            }
            other => panic!("unexpected error {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&size.to_string()) && msg.contains("--shm-segment-size"),
            "{msg}"
        );
        s.assert_clean();
    }

    #[test]
    fn file_backed_objects() {
        let s = TestSession::new("seg-file");
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::file(dir.path().join(s.id.region_name(1024)));
        let a = SharedObject::create(
            &loc,
            ObjectKind::Region,
            &CreateOptions::new(HEADER_SIZE * 2),
        )
        .unwrap();
        a.atomic_u64(HEADER_SIZE).store(5, Ordering::Relaxed);
        let b = SharedObject::open(&loc, ObjectKind::Region, &OpenOptions::default()).unwrap();
        assert_eq!(b.atomic_u64(HEADER_SIZE).load(Ordering::Relaxed), 5);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![s.id.region_name(1024)]);
        assert!(SharedObject::remove(&loc).unwrap());
        s.assert_clean();
    }

    #[test]
    fn invalid_names_and_sizes() {
        let err = SharedObject::create(
            &Location::shm("a/b"),
            ObjectKind::Region,
            &CreateOptions::new(HEADER_SIZE),
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let s = TestSession::new("seg-small");
        let err = SharedObject::create(
            &Location::shm(s.id.region_name(0)),
            ObjectKind::Region,
            &CreateOptions::new(100),
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        s.assert_clean();
    }
}
