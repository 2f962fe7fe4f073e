//! The crate's error type.

use std::io;

/// Everything that can go wrong in the shared-memory layer.
///
/// Messages say what was wrong, on which object, and (where there is one) what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A shmId that is not 8 to 16 hex digits.
    #[error("invalid shmId '{id}': {reason}")]
    InvalidShmId {
        /// The rejected text.
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An argument outside its documented range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The named object does not exist (or was removed while being opened).
    #[error("shared memory object '{name}' does not exist")]
    NotFound {
        /// Object name or path.
        name: String,
    },

    /// An object with that name already exists (exclusive creation).
    #[error("shared memory object '{name}' already exists")]
    AlreadyExists {
        /// Object name or path.
        name: String,
    },

    /// The backing filesystem (normally `/dev/shm`) cannot hold the object. Nothing is left behind.
    #[error(
        "could not create shared memory object '{name}': not enough space in {dir}: \
         {needed} bytes needed, {free} bytes free. {}", space_advice(.option, .dir)
    )]
    InsufficientSpace {
        /// Object name or path.
        name: String,
        /// Directory whose filesystem is full.
        dir: String,
        /// Bytes requested.
        needed: u64,
        /// Bytes available (statvfs `f_bavail * f_frsize`).
        free: u64,
        /// The option that sets the size, e.g. `--shm-segment-size` (empty if none).
        option: String,
    },

    /// A managed segment larger than this machine's memory (RAM and swap) could ever back.
    #[error(
        "could not create shared memory segment '{name}': {needed} bytes needed, more than this \
         machine's {memory} bytes of RAM and swap could ever hold ({free} bytes free in {dir}). \
         Use a smaller {option}."
    )]
    LargerThanMemory {
        /// Segment name.
        name: String,
        /// The segment size.
        needed: u64,
        /// RAM plus swap in bytes.
        memory: u64,
        /// Bytes free in `dir`.
        free: u64,
        /// Directory whose filesystem holds the segment.
        dir: String,
        /// The option that sets the size.
        option: String,
    },

    /// A managed segment reserves its memory as it is used, and the filesystem holding it
    /// (normally `/dev/shm`) could not supply what an allocation needed. The heap is unchanged.
    #[error(
        "{}: '{name}' could not reserve the {needed} more bytes of shared memory it needs ({source}); \
         {free} bytes free in {dir}. The segment reserves memory as it is used and holds {committed} \
         of its {segment_size} bytes so far. {}",
        commit_purpose(*.requested), space_advice(.option, .dir)
    )]
    CommitFailed {
        /// Segment name.
        name: String,
        /// Bytes requested (0: the whole segment, for zeroing or mlock).
        requested: u64,
        /// Bytes that would have had to be reserved.
        needed: u64,
        /// Bytes free in `dir` after the failure.
        free: u64,
        /// Directory whose filesystem is full.
        dir: String,
        /// Bytes of the segment reserved so far.
        committed: u64,
        /// Segment size in bytes.
        segment_size: u64,
        /// The option that sets the segment size.
        option: &'static str,
        /// The error of `posix_fallocate` (ENOSPC when the filesystem is full).
        #[source]
        source: io::Error,
    },

    /// The object does not start with the fairmq-rs magic.
    #[error("'{name}' is not a fairmq-rs shared memory object (found magic {found:#018x}); it was created by another program or another FairMQ implementation")]
    BadMagic {
        /// Object name or path.
        name: String,
        /// The value found where the magic should be.
        found: u64,
    },

    /// The object was created with another layout version.
    #[error("'{name}' has layout version {found}, but this build of fairmq-rs uses version {expected}; all processes of a session must use the same fairmq-rs version (clean the session up with `fairmq-shmmonitor --cleanup`)")]
    VersionMismatch {
        /// Object name or path.
        name: String,
        /// Version stored in the object.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },

    /// The object is of another kind than requested.
    #[error("'{name}' is a {found} object, expected a {expected} object")]
    KindMismatch {
        /// Object name or path.
        name: String,
        /// Kind stored in the object.
        found: String,
        /// Kind requested.
        expected: &'static str,
    },

    /// The object's header or layout is inconsistent.
    #[error("shared memory object '{name}' is corrupt: {reason}")]
    CorruptObject {
        /// Object name or path.
        name: String,
        /// What is inconsistent.
        reason: String,
    },

    /// A system call failed.
    #[error("{op} '{name}' failed: {source}")]
    Io {
        /// The operation (e.g. `shm_open`).
        op: &'static str,
        /// Object name or path.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Locking the object's memory (mlock) failed.
    #[error("could not lock the memory of '{name}' (mlock): {source}")]
    MemoryLock {
        /// Object name or path.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// An allocation larger than the whole segment.
    #[error(
        "Requested message size ({requested}) exceeds segment size ({segment_size}) of '{name}'"
    )]
    TooLarge {
        /// Segment name.
        name: String,
        /// Bytes requested.
        requested: u64,
        /// Segment size in bytes.
        segment_size: u64,
    },

    /// No free block is large enough right now.
    #[error("could not allocate {requested} bytes (alignment {align}) in '{name}': out of memory, free memory: {free} bytes")]
    OutOfMemory {
        /// Segment name.
        name: String,
        /// Bytes requested.
        requested: u64,
        /// Alignment requested.
        align: u64,
        /// Free bytes at the time of the failure.
        free: u64,
    },

    /// A blocking allocation's deadline passed.
    #[error("could not allocate {requested} bytes in '{name}' before the timeout, free memory: {free} bytes")]
    Timeout {
        /// Segment name.
        name: String,
        /// Bytes requested.
        requested: u64,
        /// Free bytes at the time of the failure.
        free: u64,
    },

    /// A blocking allocation was interrupted through its interrupt flag.
    #[error("allocation of {requested} bytes in '{name}' interrupted")]
    Interrupted {
        /// Segment name.
        name: String,
        /// Bytes requested.
        requested: u64,
    },

    /// An alignment that is not a power of two.
    #[error("invalid alignment {0}: must be a power of two")]
    InvalidAlignment(u64),

    /// An offset from outside (a received descriptor) that names no live allocation.
    #[error("offset {offset} (length {len}) in '{name}' is not a live allocation: {reason}")]
    NotAllocated {
        /// Segment name.
        name: String,
        /// The offset given.
        offset: u64,
        /// The length that should fit.
        len: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Freeing an offset that is not a live allocation.
    #[error("invalid free of offset {offset} in '{name}': {reason}")]
    InvalidFree {
        /// Segment name.
        name: String,
        /// The offset passed.
        offset: u64,
        /// Why it is not a live allocation.
        reason: &'static str,
    },

    /// An offset outside the segment.
    #[error("offset {offset} (+{len} bytes) is outside of '{name}'")]
    OutOfBounds {
        /// Segment name.
        name: String,
        /// The offset.
        offset: u64,
        /// The length.
        len: u64,
    },

    /// The allocator's block chain is damaged (e.g. a buffer overrun into a block header) and could
    /// not be repaired. The session has to be cleaned up.
    #[error("heap of '{name}' is corrupted: {reason}; clean the session up (fairmq-shmmonitor --cleanup)")]
    HeapCorrupted {
        /// Segment name.
        name: String,
        /// What is inconsistent.
        reason: String,
    },

    /// A mutating operation on an object opened read-only.
    #[error("'{name}' is opened read-only")]
    ReadOnly {
        /// Object name.
        name: String,
    },

    /// The robust process-shared lock of an object is unusable.
    #[error("lock of '{name}' failed: {reason}")]
    Lock {
        /// Object name.
        name: String,
        /// Why.
        reason: String,
    },

    /// An allocation-algorithm name that is not supported.
    #[error("Provided shared memory allocation algorithm '{0}' is not supported. Supported are 'rbtree_best_fit'/'simple_seq_fit'")]
    InvalidAlgorithm(String),

    /// A fixed-capacity table in the management segment is full.
    #[error("the {table} table of '{name}' is full ({capacity} entries)")]
    RegistryFull {
        /// Management segment name.
        name: String,
        /// Which table.
        table: &'static str,
        /// Its capacity.
        capacity: usize,
    },

    /// A region id that is already registered.
    #[error("Unmanaged Region with id {0} has already been registered. Only unique IDs per session are allowed.")]
    RegionAlreadyRegistered(u16),

    /// A live monitor already holds the session's `_ms` marker.
    #[error("fairmq-shmmonitor for shm id {0} is already running. Try `fairmq-shmmonitor --cleanup --shmid {0}`")]
    MonitorRunning(String),

    /// Monitor: the session has no management segment (spec §6.7 `MonitorError`).
    #[error("Could not find management segment for shmid '{0}'")]
    NoManagementSegment(String),

    /// Monitor: a managed segment id that is not registered in the session, or whose object is
    /// missing (spec §6.7 `MonitorError`).
    #[error("Could not find segment id '{segment}' (shmid '{shm_id}')")]
    UnknownSegment {
        /// The session's shmId.
        shm_id: String,
        /// The segment id asked for.
        segment: u16,
    },

    /// Monitor: a cleanup of a session that processes still hold open, without force.
    #[error("the session with shmid '{0}' is alive (processes still hold its management segment open); refusing to remove it. Stop its devices first, or force the removal (fairmq-shmmonitor --force)")]
    SessionAlive(String),

    /// Monitor: a cleanup of a session whose objects belong to another user, without force.
    #[error("the session with shmid '{shm_id}' belongs to user {owner} ('{object}' is theirs), not to this user ({me}); refusing to remove it, also as root. Force the removal with fairmq-shmmonitor --cleanup --force")]
    ForeignSession {
        /// The session's shmId.
        shm_id: String,
        /// The uid owning the object.
        owner: u32,
        /// This process's effective uid.
        me: u32,
        /// The first object found that belongs to `owner`.
        object: String,
    },
}

fn commit_purpose(requested: u64) -> String {
    if requested == 0 {
        "could not reserve the whole segment (to zero or lock it)".to_owned()
    } else {
        format!("could not allocate {requested} bytes")
    }
}

fn space_advice(option: &str, dir: &str) -> String {
    if option.is_empty() {
        format!("Free up or enlarge {dir}.")
    } else {
        format!("Use a smaller {option}, or free up or enlarge {dir}.")
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, name: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            op,
            name: name.into(),
            source,
        }
    }
}
